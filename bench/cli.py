"""The benchmark's command line: ``bench/run.py [--profile NAME ...] [--runs N] [--smoke]``.

Everything lives in one temporary directory that Dovecot's mail user can
reach (created mode 0711, removed at the end): the private Dovecot, and every
client's working directory. The report goes to stdout and, with the raw
numbers as JSON, into ``bench/results/`` (ignored by git).
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.clients import BENCH_DIR, Server
from bench.harness import Bench, ClientResult, ProfileResult, Settings
from bench.profiles import FULL, SMOKE, Profile
from bench.report import machine_info, render, write_json
from bench.startup import measure_startup
from fetchd.testing.dovecot import Dovecot

__all__ = ["main"]

USER = "bench"
SMOKE_TIMEOUT = 60.0
FULL_TIMEOUT = 3600.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description="Benchmark fetchd against mpop, fetchmail and getmail6 on a private Dovecot.",
    )
    parser.add_argument(
        "--profile",
        action="append",
        choices=list(FULL),
        metavar="NAME",
        help=f"run only this profile (repeatable): {', '.join(FULL)}",
    )
    parser.add_argument(
        "--runs", type=int, help="timed runs per client (default 3; 1 with --smoke)"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny mailboxes, one run: checks the harness works"
    )
    parser.add_argument(
        "--client",
        action="append",
        metavar="NAME",
        help="run only clients whose name starts with NAME (repeatable): fetchd, mpop, "
        "fetchmail, getmail6, wire-limit",
    )
    parser.add_argument(
        "--cprofile",
        action="store_true",
        help="also run fetchd once per profile under cProfile; stats go to the results dir",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="where to make the temporary directory (default: the system temp dir); "
        "its file system is the one the clients write to",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=BENCH_DIR / "results",
        help="where the Markdown report and JSON go (default: bench/results)",
    )
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    table = SMOKE if args.smoke else FULL
    names = args.profile or [name for name, profile in table.items() if not profile.on_request]
    profiles = [table[name] for name in names]
    runs = args.runs or (1 if args.smoke else 3)
    if runs < 1:
        _parser().error("--runs must be at least 1")
    stamp = time.strftime("%Y%m%d-%H%M%S") + ("-smoke" if args.smoke else "")
    results_dir: Path = args.results_dir
    workroot = Path(tempfile.mkdtemp(prefix="fetchd-bench-", dir=args.workdir))
    workroot.chmod(0o711)  # Dovecot's mail processes run as nobody
    try:
        machine = machine_info(workroot)
        startup_dir = workroot / "startup"
        startup_dir.mkdir()
        timeout = SMOKE_TIMEOUT if args.smoke else FULL_TIMEOUT
        startup = measure_startup(startup_dir, 3 if args.smoke else 10, timeout)
        settings = Settings(
            runs=runs,
            timeout=timeout,
            workroot=workroot / "runs",
            cprofile_dir=results_dir / f"{stamp}-cprofile" if args.cprofile else None,
            clients=tuple(args.client or ()),
        )
        if settings.cprofile_dir is not None:
            settings.cprofile_dir.mkdir(parents=True, exist_ok=True)
        results = _run_profiles(workroot, profiles, settings)
    finally:
        shutil.rmtree(workroot, ignore_errors=True)
    report = render(machine, startup, results, runs)
    print(report)
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{stamp}.md").write_text(report + "\n")
    write_json(
        results_dir / f"{stamp}.json",
        {
            "machine": machine,
            "runs": runs,
            "smoke": args.smoke,
            "startup": startup,
            "profiles": results,
        },
    )
    print(f"\nwritten: {results_dir / stamp}.md and .json", file=sys.stderr)
    return 0


def _run_profiles(
    workroot: Path, profiles: list[Profile], settings: Settings
) -> list[ProfileResult]:
    # A fresh random password per benchmark: the config files hold it in clear text.
    password = secrets.token_urlsafe(16)
    with Dovecot(workroot / "dovecot", users=[(USER, password)]) as dovecot:
        server = Server(
            "127.0.0.1", dovecot.pop3_port, dovecot.pop3s_port, dovecot.ca_file, USER, password
        )
        bench = Bench(dovecot, server, settings)
        results = []
        for profile in profiles:
            try:
                results.append(bench.run_profile(profile))
            except Exception as exc:  # one broken profile must not hide the rest
                bench.say(f"{profile.name}: profile failed: {exc!r}")
                results.append(
                    ProfileResult(
                        profile.name,
                        profile.description,
                        0,
                        0,
                        [ClientResult("all clients", "", error=f"profile failed: {exc!r}")],
                    )
                )
        return results
