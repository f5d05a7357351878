"""The systemd units: hardened enough, and valid to systemd's own checker.

``systemd-analyze verify`` insists that ExecStart= names an existing
executable, and /usr/local/bin/fetchd (the unit's default) is not there in a
source checkout; the tests verify a copy whose ExecStart= runs this Python
with ``-m fetchd`` instead, and change nothing else.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "systemd"
MAX_EXPOSURE = 2.0


@pytest.fixture(scope="module")
def analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd")
    return found


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False, env=env)


def with_exec_start(unit: Path, binary: str, target: Path) -> Path:
    text = unit.read_text()
    assert binary in text
    target.write_text(text.replace(binary, f"{sys.executable} -m fetchd"))
    return target


def test_the_system_unit_is_exposed_at_most_2_0(analyze: str) -> None:
    done = run(analyze, "security", "--offline=true", str(UNITS / "fetchd.service"))
    assert done.returncode == 0, done.stderr
    match = re.search(r"Overall exposure level for fetchd\.service: (\d+\.\d+)", done.stdout)
    assert match, done.stdout
    assert float(match.group(1)) <= MAX_EXPOSURE, done.stdout


def test_the_system_unit_verifies(analyze: str, tmp_path: Path) -> None:
    unit = with_exec_start(
        UNITS / "fetchd.service", "/usr/local/bin/fetchd", tmp_path / "fetchd.service"
    )
    done = run(analyze, "verify", str(unit))
    assert (done.returncode, done.stderr, done.stdout) == (0, "", "")


def test_the_user_unit_verifies(analyze: str, tmp_path: Path) -> None:
    unit = with_exec_start(
        UNITS / "fetchd-user.service", "%h/.local/bin/fetchd", tmp_path / "fetchd.service"
    )
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    # A user manager needs $XDG_RUNTIME_DIR, which a CI shell has no session for.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(runtime)}
    done = run(analyze, "--user", "verify", str(unit), env=env)
    assert (done.returncode, done.stderr, done.stdout) == (0, "", "")


@pytest.mark.parametrize("name", ["fetchd.service", "fetchd-user.service"])
def test_the_units_are_notify_services_that_reload_with_sighup(name: str) -> None:
    lines = set((UNITS / name).read_text().splitlines())
    assert {"Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "Restart=on-failure"} <= lines
    assert any(line.startswith("WatchdogSec=") for line in lines)
