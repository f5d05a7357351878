"""The destinations benchmark works end to end: ``bench/destinations.py`` on 20 messages.

Each destination's row must be there with its count; the script itself checks
that every message arrived once (it exits non-zero otherwise). It says nothing
about speed: the machine is shared.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(120)
def test_every_destination_gets_a_checked_row() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "destinations.py"), "--count", "20", "--runs", "1"],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = re.findall(r"^\| (own|maildir|mda|lmtp) \| 20 \| [\d.]+ \| \d+ \|$", done.stdout, re.M)
    assert rows == ["own", "maildir", "mda", "lmtp"], done.stdout
