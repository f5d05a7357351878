"""The daemon benchmark works end to end: ``bench/daemon.py`` on 100 accounts for 20 s.

Every account must be polled at least once and the daemon must stop cleanly
with no error logged. It says nothing about speed: the machine is shared.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(120)
def test_every_account_is_polled_and_nothing_crashes() -> None:
    done = subprocess.run(
        [
            *(sys.executable, str(REPO / "bench" / "daemon.py"), "--json"),
            *("--accounts", "100", "--interval", "10", "--seconds", "20", "--sample", "5"),
        ],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    assert results["exit_code"] == 0
    assert results["never_polled"] == []
    assert results["polls_per_account"]["min"] >= 1
    assert results["errors"] == []
    assert len(results["samples"]) >= 4
    # Never more poll threads than max_parallel (4), plus the scheduler's few.
    assert max(sample["threads"] for sample in results["samples"]) <= 4 + 5
