"""What a command imports before it does anything: start-up is paid on every run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _imported_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_version_imports_neither_config_nor_logging_nor_sockets() -> None:
    modules = _imported_after(
        "from fetchd.cli import main\ntry:\n    main(['--version'])\nexcept SystemExit:\n    pass"
    )
    assert not {"pydantic", "structlog", "sqlite3", "socket", "fetchd.signals"} & modules


@pytest.mark.parametrize("command", ["fetch", "list", "status"])
def test_mail_commands_leave_out_what_they_do_not_use(command: str) -> None:
    modules = _imported_after(f"from fetchd.cli import _handler\n_handler({command!r})")
    # rich, colorama: optional extras of structlog that fetchd does not use (fetchd.log).
    assert not {"apscheduler", "rich", "colorama", "fetchd.daemon"} & modules
    # The HTTP stack is for OAuth2 accounts, imported when one logs in.
    assert not {"urllib.request", "fetchd.oauth"} & modules
    if command == "fetch":  # the MIME code is imported once a message arrives
        assert not {name for name in modules if name.startswith("fetchd.mime")}


def test_the_hidden_extras_import_as_usual_afterwards() -> None:
    modules = _imported_after("import fetchd.log")
    assert "structlog" in modules
    assert "rich" not in modules
    # Hidden only while structlog loaded: no None entry is left to stop a later import.
    code = "import sys, fetchd.log\nassert None not in sys.modules.values()"
    subprocess.run([sys.executable, "-c", code], check=True)
