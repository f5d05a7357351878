"""Run one child process and measure it: wall time, CPU time and peak memory.

CPU time comes from ``os.wait4``: the child's user and system time, which on
Linux include every descendant it waited for (fetchmail's MDA, getmail's
delivery processes), so a client that forks per message pays for its forks.
The server's CPU time is not included: Dovecot serves every client the same.

Peak RSS cannot come from that same ``wait4``: Linux carries the RSS of the
image a process had before ``exec`` into its ``ru_maxrss``, and a child forked
from this harness starts as a copy of it (tens or hundreds of MB while a big
mailbox is in memory). So the child is started through GNU time
(``/usr/bin/time``), a process of about 2 MB, whose ``%M`` is the peak RSS of
the client and its waited-for descendants alone. Without GNU time the
``wait4`` value is reported and marked as an upper bound.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Measurement", "rss_method", "run_measured"]

_GNU_TIME = Path("/usr/bin/time")


def _gnu_time() -> Path | None:
    """/usr/bin/time if it is GNU time (it understands ``-f`` and ``-o``)."""
    if not _GNU_TIME.is_file():
        return None
    try:
        done = subprocess.run(
            [_GNU_TIME, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return _GNU_TIME if "GNU" in done.stdout + done.stderr else None


_TIME = _gnu_time()


def rss_method() -> str:
    """How peak RSS is measured here, for the report."""
    if _TIME is not None:
        return "GNU time %M: the client and the children it waited for, nothing of the harness"
    return (
        "wait4 ru_maxrss, an UPPER BOUND: it includes the harness image the child was forked "
        "from (install GNU time, package 'time', for exact values)"
    )


@dataclass(frozen=True)
class Measurement:
    """One run of one child process."""

    wall: float
    user: float
    system: float
    max_rss_kib: int
    exit_code: int
    timed_out: bool = False

    @property
    def cpu(self) -> float:
        return self.user + self.system


def run_measured(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    log_prefix: Path,
    timeout: float,
) -> Measurement:
    """Run ``argv`` to completion; stdout and stderr go to ``log_prefix``.out/.err.

    The wall clock starts before the fork and stops when ``wait4`` returns, so
    it includes the interpreter's or binary's start-up. A child that outlives
    ``timeout`` is killed with its whole process group.
    """
    rss_file = log_prefix.with_suffix(".rss")
    command = list(argv)
    if _TIME is not None:
        command = [str(_TIME), "-o", str(rss_file), "-f", "%M", *command]
    with (
        log_prefix.with_suffix(".out").open("wb") as out,
        log_prefix.with_suffix(".err").open("wb") as err,
    ):
        started = time.perf_counter()
        process = subprocess.Popen(
            command,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        killed = threading.Event()
        timer = threading.Timer(timeout, _kill_group, (process.pid, killed))
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - started
    # wait4 reaped the child itself: tell Popen, so it does not wait for it again.
    process.returncode = os.waitstatus_to_exitcode(status)
    return Measurement(
        wall=wall,
        user=usage.ru_utime,
        system=usage.ru_stime,
        max_rss_kib=_read_rss(rss_file) if _TIME is not None else usage.ru_maxrss,
        exit_code=process.returncode,
        timed_out=killed.is_set(),
    )


def _read_rss(path: Path) -> int:
    """GNU time's %M (KiB) from the last line of its output file; 0 if it wrote none."""
    try:
        lines = path.read_text().split()
    except OSError:
        return 0
    return int(lines[-1]) if lines and lines[-1].isdigit() else 0


def _kill_group(pid: int, killed: threading.Event) -> None:
    killed.set()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
