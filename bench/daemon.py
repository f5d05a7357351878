"""How ``fetchd run`` holds up with many accounts: fairness, CPU, memory, threads.

Runs the daemon as its own process with N accounts on one fake POP3 server
(``bench/bigbox_server.py`` with an empty mailbox, another process: its CPU is
not counted) for T seconds,
then stops it with SIGTERM and reports from its JSON log and ``/proc``:

- polls per account (min / median / max) and the accounts never polled;
- achieved polls per minute against what the schedule asks for;
- the daemon's CPU seconds (and per poll), RSS and threads every ``--sample`` s;
- the overload warnings, and log bytes per poll.

    python3 bench/daemon.py --accounts 1000 --interval 10 --seconds 180
    python3 bench/daemon.py --accounts 100 --history 1000000   # one big account in the state
    python3 bench/daemon.py --accounts 100 --seconds 20 --json  # what the smoke test runs

``--history N`` puts N messages of an account that is not configured into
the state first, all fetched today: a per-poll query that reads history
shows up as CPU per poll. ``--fetchd DIR`` runs another checkout's fetchd.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO))

from bench.interpreter import FETCHD_PYTHON  # noqa: E402  (after the path is set)

_TICK = os.sysconf("SC_CLK_TCK")


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between polls")
    parser.add_argument("--seconds", type=float, default=180.0, help="how long the daemon runs")
    parser.add_argument("--max-parallel", type=int, default=4)
    parser.add_argument("--delay", type=float, default=0.0, help="the server's greeting delay")
    parser.add_argument("--history", type=int, default=0, help="messages already in the state")
    parser.add_argument("--transcript", action="store_true", help="log POP3 transcripts")
    parser.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--fetchd", type=Path, default=REPO, help="the checkout to run")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser.parse_args(argv)


def _config(work: Path, args: argparse.Namespace, port: int) -> Path:
    lines = [
        "[daemon]",
        f'data_dir = "{work / "data"}"',
        f'interval = "{args.interval}s"',
        f"max_parallel = {args.max_parallel}",
        f"transcript = {'true' if args.transcript else 'false'}",
        'log_format = "json"',
    ]
    for index in range(args.accounts):
        lines += [
            f"[accounts.a{index:04d}]",
            'host = "127.0.0.1"',
            f"port = {port}",
            'security = "plain"',
            f'username = "u{index}"',
            'password_env = "BENCH_PASSWORD"',
            "timeout = 60",
        ]
    path = work / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _fill_history(work: Path, args: argparse.Namespace, env: dict[str, str]) -> None:
    """``--history`` rows of an unconfigured account, through the checkout's own schema."""
    create = (
        "import sys; from pathlib import Path; from fetchd.store.state import State, state_path;"
        " State(state_path(Path(sys.argv[1]))).close()"
    )
    subprocess.run(
        [FETCHD_PYTHON, "-c", create, str(work / "data")], env=env, cwd=args.fetchd, check=True
    )
    now = time.time()
    rows = ((b"big", str(i).encode(), "stored", now, 4000, f"p{i}") for i in range(args.history))
    with sqlite3.connect(work / "data" / "state.sqlite3") as db:
        db.executemany(
            "INSERT INTO messages (account, uid, status, fetched_at, size, path)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            ((a.decode(), *rest) for a, *rest in rows),
        )


def _proc(pid: int) -> dict[str, float]:
    """CPU seconds (user + system), RSS in MiB and threads of a running process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return {
        "cpu": (int(fields[11]) + int(fields[12])) / _TICK,
        "rss_mib": int(status["VmRSS"].split()[0]) / 1024,
        "threads": int(status["Threads"]),
    }


def _run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(args.fetchd), "BENCH_PASSWORD": "x"}
    server = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "bigbox_server.py"), "--delay", str(args.delay)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        config = _config(work, args, port)
        if args.history:
            _fill_history(work, args, env)
        return _measure(args, config, env)
    finally:
        server.terminate()
        server.wait()


def _measure(args: argparse.Namespace, config: Path, env: dict[str, str]) -> dict[str, Any]:
    log_path = config.parent / "daemon.log"
    with log_path.open("wb") as log:
        daemon = subprocess.Popen(
            [FETCHD_PYTHON, "-m", "fetchd", "-c", str(config), "run"],
            env=env,
            cwd=args.fetchd,  # python -m looks there first
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    started = time.monotonic()
    samples = []
    try:
        while (elapsed := time.monotonic() - started) < args.seconds:
            if daemon.poll() is not None:
                raise SystemExit(f"fetchd run exited early:\n{log_path.read_text()[-3000:]}")
            samples.append({"t": round(elapsed, 1), **_proc(daemon.pid)})
            time.sleep(min(args.sample, args.seconds - elapsed))
        samples.append({"t": round(time.monotonic() - started, 1), **_proc(daemon.pid)})
        ran = time.monotonic() - started
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=60)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    return _results(args, log_path, samples, ran, code)


def _results(
    args: argparse.Namespace,
    log_path: Path,
    samples: list[dict[str, float]],
    ran: float,
    code: int,
) -> dict[str, Any]:
    events = []
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            events.append({"event": "unparsed", "text": line})
    names = [f"a{index:04d}" for index in range(args.accounts)]
    polls = dict.fromkeys(names, 0)
    for event in events:
        if event.get("event") == "poll" and event.get("account") in polls:
            polls[event["account"]] += 1
    counts = sorted(polls.values())
    total = sum(counts)
    cpu = samples[-1]["cpu"] - samples[0]["cpu"]
    return {
        "accounts": args.accounts,
        "interval": args.interval,
        "seconds": round(ran, 1),
        "max_parallel": args.max_parallel,
        "history": args.history,
        "exit_code": code,
        "polls": total,
        "polls_per_account": {
            "min": counts[0],
            "median": statistics.median(counts),
            "max": counts[-1],
        },
        "never_polled": [name for name, count in polls.items() if count == 0],
        "polls_per_minute": round(total * 60 / ran, 1),
        "configured_per_minute": round(args.accounts * 60 / args.interval, 1),
        "cpu_seconds": round(cpu, 2),
        "cpu_ms_per_poll": round(cpu * 1000 / total, 2) if total else None,
        "log_bytes_per_poll": round(log_path.stat().st_size / total) if total else None,
        "overload_warnings": sum(e.get("event") == "overloaded: polls run late" for e in events),
        "errors": [e for e in events if e.get("level") in ("error", "critical")][:5],
        "samples": samples,
    }


def _print(results: dict[str, Any]) -> None:
    per = results["polls_per_account"]
    print(
        f"{results['accounts']} accounts every {results['interval']} s, "
        f"max_parallel {results['max_parallel']}, {results['history']} messages of history, "
        f"{results['seconds']} s (exit code {results['exit_code']})"
    )
    print(f"polls per account: min {per['min']}, median {per['median']}, max {per['max']}")
    print(f"accounts never polled: {len(results['never_polled'])}")
    print(
        f"polls per minute: {results['polls_per_minute']} achieved, "
        f"{results['configured_per_minute']} configured"
    )
    print(f"CPU: {results['cpu_seconds']} s, {results['cpu_ms_per_poll']} ms per poll")
    print(f"log: {results['log_bytes_per_poll']} bytes per poll")
    print(f"overload warnings: {results['overload_warnings']}; errors: {len(results['errors'])}")
    print("   t (s)   CPU (s)  RSS (MiB)  threads")
    for sample in results["samples"]:
        print(
            f"{sample['t']:8.1f}  {sample['cpu']:8.2f}  {sample['rss_mib']:9.1f}  "
            f"{sample['threads']:7d}"
        )


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    with tempfile.TemporaryDirectory(prefix="fetchd-bench-daemon-") as work:
        results = _run(args, Path(work))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        _print(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
