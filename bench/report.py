"""The benchmark's output: the machine it ran on, Markdown tables, and JSON.

Each profile gets one table: the median wall time of the runs (and their
range), the median CPU time (user + system of the child and the children it
waited for) and its user part alone (system time is mostly the file system's
work), the largest peak RSS of any run, and each client's wall time relative
to mpop and to the wire limit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.clients import all_clients
from bench.harness import ClientResult, ProfileResult
from bench.interpreter import FETCHD_PYTHON
from bench.measure import rss_method
from bench.startup import StartupResult

__all__ = ["machine_info", "render", "write_json"]

_COMPARED = (
    "Before a run counts, its output is checked: every stored message, with CRLF turned "
    "into LF and the header lines the client prepends removed (listed per profile), must "
    "have the sha256 of one delivered message, with nothing missing, extra or twice; for "
    "fetchd every attachment must also be extracted byte-identical. The wire limit in "
    "discard mode and the UIDL-only pass are checked by the number of messages they read. "
    "Times are whole-process: start-up, login, transfer, storage and exit. Dovecot's own "
    "CPU time is not counted."
)


def _command_line(argv: Sequence[str]) -> str:
    if shutil.which(argv[0]) is None:
        return "not installed"
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    for line in (done.stdout + "\n" + done.stderr).splitlines():
        if line.strip() and "running as root" not in line.lower():
            return line.strip()
    return "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _fs_type(path: Path) -> str:
    """The file system type of the mount holding ``path``, from /proc/mounts."""
    best, fs_type = "", "unknown"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return fs_type
    target = str(path.resolve())
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount = fields[1].replace("\\040", " ")
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, fs_type = mount, fields[2]
    return fs_type


def _file_creation_ms(directory: Path, count: int = 500) -> float:
    """Milliseconds to create one empty file: what one-file-per-message costs here."""
    probe = directory / "create-probe"
    probe.mkdir()
    started = time.perf_counter()
    for number in range(count):
        os.close(os.open(probe / f"{number}", os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600))
    elapsed = time.perf_counter() - started
    shutil.rmtree(probe)
    return elapsed / count * 1000


def machine_info(workroot: Path) -> dict[str, str]:
    """What the numbers depend on besides the code."""
    dovecot = shutil.which("dovecot") or shutil.which("dovecot", path="/usr/sbin:/sbin")
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "cpu": _cpu_model(),
        "kernel": f"{platform.system()} {platform.release()}",
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "dovecot": _command_line([dovecot, "--version"]) if dovecot else "not installed",
        "python": platform.python_version(),
        "fetchd runs under": FETCHD_PYTHON,
        "mpop": _command_line(["mpop", "--version"]),
        "fetchmail": _command_line(["fetchmail", "--version"]),
        "getmail6": _command_line(["getmail", "--version"]),
        "data dir": f"{workroot} ({_fs_type(workroot)})",
        "file creation in the data dir": f"{_file_creation_ms(workroot):.3f} ms per empty file",
        "peak RSS": rss_method(),
    }


def _median_wall(result: ClientResult) -> float | None:
    return (
        statistics.median(m.wall for m in result.runs) if result.runs and not result.error else None
    )


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "-"
    return f"{value / base:.2f}x"


def _row(result: ClientResult, mpop: float | None, wire: float | None) -> str:
    if result.error is not None:
        error = " ".join(result.error.split()).replace("|", "\\|")
        return f"| {result.client} | FAILED: {error} | | | | | | | |"
    walls = [m.wall for m in result.runs]
    wall = statistics.median(walls)
    cpu = statistics.median(m.cpu for m in result.runs)
    user = statistics.median(m.user for m in result.runs)
    rss = max(m.max_rss_kib for m in result.runs) / 1024
    spread = f"{min(walls):.3f}-{max(walls):.3f}"
    notes = ""
    if result.failures:
        detail = " ".join("; ".join(result.failures).split()).replace("|", "\\|")
        notes = f"failed: {detail}"
    return (
        f"| {result.client} | {wall:.3f} | {spread} | {cpu:.3f} | {user:.3f} | {rss:.1f} | "
        f"{_ratio(wall, mpop)} | {_ratio(wall, wire)} | {notes} |"
    )


def _profile_section(profile: ProfileResult, runs: int) -> list[str]:
    by_name = {result.client: result for result in profile.clients}
    mpop = _median_wall(by_name["mpop"]) if "mpop" in by_name else None
    wires = [r for r in profile.clients if r.client.startswith("wire-limit")]
    wire = _median_wall(wires[-1]) if wires else None
    lines = [
        f"### {profile.name}: {profile.description}",
        "",
        f"{profile.messages} messages, {profile.octets / 1e6:.1f} MB on the server; "
        f"median of {runs} run(s). The x columns divide each client's wall time by "
        f"mpop's and by {wires[-1].client if wires else 'the wire limit'}'s.",
        "",
        "| client | wall median (s) | wall range (s) | CPU (s) | user CPU (s) | peak RSS (MiB) "
        "| x mpop | x wire | notes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        *(_row(result, mpop, wire) for result in profile.clients),
        "",
    ]
    fetchd = _median_wall(by_name["fetchd"]) if "fetchd" in by_name else None
    ratios = [f"fetchd/mpop = {_ratio(fetchd, mpop)}"]
    ratios += [f"fetchd/{w.client} = {_ratio(fetchd, _median_wall(w))}" for w in wires]
    lines.append("Ratios: " + "; ".join(ratios) + ".")
    passes = by_name["fetchd"].in_process if "fetchd" in by_name else []
    if passes:
        seconds = statistics.median(passes)
        lines.append(
            f"fetchd's poll pass inside a running process (what the daemon pays per poll, "
            f"start-up excluded; median of {len(passes)}): {seconds * 1000:.1f} ms, "
            f"{_ratio(seconds, mpop)} mpop's whole process."
        )
    prepended = [f"{r.client}: {', '.join(r.prepended)}" for r in profile.clients if r.prepended]
    if prepended:
        lines.append("Headers stripped before comparing: " + "; ".join(prepended) + ".")
    lines += [f"Note: {note}" for note in profile.notes]
    return [*lines, ""]


def render(
    machine: dict[str, str],
    startup: list[StartupResult],
    profiles: list[ProfileResult],
    runs: int,
) -> str:
    """The whole report as Markdown."""
    lines = ["# fetchd benchmark", ""]
    lines += [f"- {key}: {value}" for key, value in machine.items()]
    lines += ["", _COMPARED, "", "Clients:", ""]
    for client in [*all_clients(poll=False), *all_clients(poll=True)[-1:]]:
        lines.append(f"- {client.name}: {client.stores}")
    lines += ["", "## Start-up", "", "| command | wall median (s) | CPU (s) | peak RSS (MiB) |"]
    lines.append("|---|---:|---:|---:|")
    for item in startup:
        if item.error:
            lines.append(f"| `{item.command}` | FAILED: {item.error} | | |")
        else:
            lines.append(
                f"| `{item.command}` | {item.wall:.3f} | {item.cpu:.3f} | {item.max_rss_mib:.1f} |"
            )
    lines += ["", "## Profiles", ""]
    for profile in profiles:
        lines += _profile_section(profile, runs)
    lines += _scaling_section(profiles)
    return "\n".join(lines)


def _scaling_section(profiles: list[ProfileResult]) -> list[str]:
    """Per-message cost of the small mailbox at two sizes: equal costs mean linear growth."""
    by_name = {profile.name: profile for profile in profiles}
    small, larger = by_name.get("small"), by_name.get("small-20k")
    if small is None or larger is None:
        return []
    lines = [
        "## Scaling",
        "",
        f"Wall and CPU time per message, fetching {small.messages} and then "
        f"{larger.messages} small messages; the last column is the larger mailbox's "
        "wall time per message over the smaller one's (1.00 = linear).",
        "",
        f"| client | wall µs/msg at {small.messages} | wall µs/msg at {larger.messages} "
        f"| CPU µs/msg at {small.messages} | CPU µs/msg at {larger.messages} | growth |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    small_clients = {result.client: result for result in small.clients}
    for result in larger.clients:
        before = small_clients.get(result.client)
        if before is None or not _measured(before) or not _measured(result):
            continue
        wall_before = _per_message(before, small.messages, "wall")
        wall_after = _per_message(result, larger.messages, "wall")
        lines.append(
            f"| {result.client} | {wall_before:.0f} | {wall_after:.0f} "
            f"| {_per_message(before, small.messages, 'cpu'):.0f} "
            f"| {_per_message(result, larger.messages, 'cpu'):.0f} "
            f"| {wall_after / wall_before:.2f} |"
        )
    return [*lines, ""]


def _measured(result: ClientResult) -> bool:
    return bool(result.runs) and result.error is None


def _per_message(result: ClientResult, messages: int, what: str) -> float:
    """Median microseconds per message of one client's runs (``what``: wall or cpu)."""
    return statistics.median(getattr(run, what) for run in result.runs) / messages * 1e6


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write the raw results (every run of every client) for later comparison."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")


def _jsonable(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
