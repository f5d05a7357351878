"""Start-up cost: how long a client takes to do nothing.

A daemon pays start-up once, but ``fetchd fetch`` from cron or a timer pays it
on every pass, and in the poll profile it is most of the time. The bare
interpreter is measured too, as the floor for anything written in Python.
"""

from __future__ import annotations

import os
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path

from bench.clients import REPO
from bench.interpreter import FETCHD_PYTHON
from bench.measure import Measurement, run_measured

__all__ = ["StartupResult", "measure_startup"]


@dataclass(frozen=True)
class StartupResult:
    """The median of several runs of one command."""

    command: str
    wall: float = 0.0
    cpu: float = 0.0
    max_rss_mib: float = 0.0
    error: str | None = None


def _commands() -> list[tuple[str, list[str]]]:
    python = FETCHD_PYTHON
    return [
        ("python3 -c pass", [python, "-c", "pass"]),
        ("python3 -m fetchd --version", [python, "-m", "fetchd", "--version"]),
        ("mpop --version", ["mpop", "--version"]),
        ("getmail --version", ["getmail", "--version"]),
    ]


def measure_startup(workdir: Path, repeats: int, timeout: float) -> list[StartupResult]:
    """Median wall and CPU time over ``repeats`` runs of each command."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(REPO),
    }
    results = []
    for label, argv in _commands():
        if shutil.which(argv[0]) is None:
            results.append(StartupResult(label, error=f"{argv[0]} is not installed"))
            continue
        runs: list[Measurement] = []
        for _ in range(repeats):
            run = run_measured(
                argv, env=env, cwd=workdir, log_prefix=workdir / "startup", timeout=timeout
            )
            if run.exit_code != 0 or run.timed_out:
                err = (workdir / "startup.err").read_text(errors="replace").strip()[-300:]
                results.append(StartupResult(label, error=f"exit {run.exit_code}: {err}"))
                break
            runs.append(run)
        else:
            results.append(
                StartupResult(
                    label,
                    wall=statistics.median(r.wall for r in runs),
                    cpu=statistics.median(r.cpu for r in runs),
                    max_rss_mib=max(r.max_rss_kib for r in runs) / 1024,
                )
            )
    return results
