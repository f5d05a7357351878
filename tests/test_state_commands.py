"""``fetchd status`` on failing messages, ``fetchd check`` and ``fetchd state check|rebuild``.

Rebuilding is driven here with a stand-in for ``fetchd.recovery.recover_account``
(the real one, against Dovecot, is in ``test_state_rebuild.py``): these tests
are about the file handling around it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fetchd.cli import EXIT_STORAGE, EXIT_USAGE, main
from fetchd.commands.state import rebuild
from fetchd.config import AccountConfig, load_config
from fetchd.errors import NetworkError
from fetchd.poll import PollResult
from fetchd.pop3.client import Transcript
from fetchd.store.state import Fetched, State, integrity_problems, state_path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[daemon]\ndata_dir = "{tmp_path / "data"}"\nlog_level = "error"\n'
        '[accounts.a]\nhost = "h"\nusername = "u"\npassword = "p"\n'
        '[accounts.b]\nhost = "h"\nusername = "u"\npassword = "p"\n'
    )
    path.chmod(0o600)
    return path


def data(config: Path) -> Path:
    return config.parent / "data"


def damage(path: Path) -> None:
    """Overwrite pages in the middle of a database (a disk error, a bad copy)."""
    with path.open("r+b") as file:
        file.seek(4096 * 2)
        file.write(os.urandom(4096 * 4))


def filled(config: Path) -> Path:
    path = state_path(data(config))
    state = State(path)
    state.record("a", [Fetched(f"uid-{i:05}", "stored", i, f"a/{i}") for i in range(3000)])
    state.close()
    return path


# -- status ----------------------------------------------------------------------


def test_status_shows_failing_messages_with_odd_uids_told_apart(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = State(state_path(data(config)))
    state.record_failure("a", "u\udcff", "RETR 3: -ERR cannot read \x1b[31mmessage")
    state.record_failure("a", "u\udcfe", "disk full")
    state.record_failure("a", "u\udcfe", "disk full")
    state.close()

    assert main(["-c", str(config), "status", "--json"]) == 0
    a, b = json.loads(capsys.readouterr().out)["accounts"]
    assert (a["failing_messages"], b["failing_messages"], b["failing"]) == (2, 0, [])
    by_uid = {f["uid"]: f for f in a["failing"]}
    assert set(by_uid) == {"u\\xff", "u\\xfe"}
    assert (by_uid["u\\xfe"]["count"], by_uid["u\\xfe"]["error"]) == (2, "disk full")
    assert by_uid["u\\xff"]["count"] == 1
    assert by_uid["u\\xfe"]["next_attempt"] > by_uid["u\\xff"]["next_attempt"]

    assert main(["-c", str(config), "status"]) == 0
    out = capsys.readouterr().out
    assert "FAILING MSGS" in out.splitlines()[0]
    assert "a: message u\\xfe failed 2 times (next attempt " in out
    assert "a: message u\\xff failed 1 time (next attempt " in out
    assert "\x1b" not in out  # the error text cannot drive the terminal


# -- check ---------------------------------------------------------------------


def test_check_reports_a_damaged_state_database(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-c", str(config), "check"]) == 0
    assert "state: ok: no database" in capsys.readouterr().out
    path = filled(config)
    assert main(["-c", str(config), "check"]) == 0
    assert f"state: ok: {path}" in capsys.readouterr().out
    damage(path)
    for command in (["check"], ["state", "check"]):
        assert main(["-c", str(config), *command]) == 1
        out = capsys.readouterr().out
        assert f"state: FAILED: the state database {path} is damaged" in out
        assert "fetchd state rebuild" in out


def test_state_check_of_a_sound_database(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    filled(config)
    assert main(["-c", str(config), "state", "check"]) == 0
    assert "state: ok" in capsys.readouterr().out


# -- rebuild (around recover_account) -----------------------------------------------


class FakeRecover:
    """Records the calls; account "b" fails as an unreachable server would."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(
        self,
        account: AccountConfig,
        data_dir: Path,
        state: State,
        *,
        transcript: Transcript | None = None,
    ) -> PollResult:
        self.calls.append(account.name)
        if account.name == "b":
            raise NetworkError("cannot connect to h:995")
        state.record(account.name, [Fetched("found", "stored", 1, "a/Maildir/new/x")])
        return PollResult(account.name, stored=1)


def test_rebuild_keeps_the_damaged_files_and_starts_afresh(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = filled(config)
    damage(path)
    wal = Path(f"{path}-wal")
    wal.write_bytes(b"old wal")  # as a crash would leave it
    before = path.read_bytes()
    recover = FakeRecover()
    loaded = load_config(config)
    accounts = list(loaded.accounts.values())

    assert rebuild(loaded, accounts, recover) == 1  # b failed; a was recovered
    assert recover.calls == ["a", "b"]
    out = capsys.readouterr().out
    assert "is damaged" in out
    assert "a: ok: 1 message found in the Maildir" in out
    assert "b: FAILED: cannot connect" in out
    [kept] = data(config).glob("state.damaged-*.sqlite3")
    assert kept.read_bytes() == before
    assert Path(f"{kept}-wal").read_bytes() == b"old wal"
    assert f"kept as {kept}" in out
    assert integrity_problems(path) == []
    state = State.open_readonly(path)
    try:
        assert set(state.known("a")) == {"found"}
    finally:
        state.close()


def test_rebuild_refuses_a_sound_database_unless_forced(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    filled(config)
    assert main(["-c", str(config), "state", "rebuild", "a"]) == EXIT_USAGE
    assert "is sound: nothing to rebuild" in capsys.readouterr().err
    assert list(data(config).glob("state.damaged-*")) == []
    loaded = load_config(config)
    recover = FakeRecover()
    assert rebuild(loaded, [loaded.accounts["a"]], recover, force=True) == 0
    assert recover.calls == ["a"]
    assert len(list(data(config).glob("state.damaged-*.sqlite3"))) == 1


def test_rebuild_twice_in_one_second_keeps_both_old_files(config: Path) -> None:
    loaded = load_config(config)
    for _ in range(2):
        damage(filled(config))
        assert rebuild(loaded, [loaded.accounts["a"]], FakeRecover()) == 0
    assert len(list(data(config).glob("state.damaged-*.sqlite3"))) == 2


def test_rebuild_without_any_database_creates_one(config: Path) -> None:
    loaded = load_config(config)
    assert rebuild(loaded, [loaded.accounts["a"]], FakeRecover()) == 0
    assert integrity_problems(state_path(data(config))) == []


def test_rebuild_names_unknown_accounts(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", str(config), "state", "rebuild", "zed"]) == EXIT_USAGE
    assert "no account named zed" in capsys.readouterr().err


def test_fetch_list_and_status_point_to_the_repair(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = filled(config)
    with path.open("r+b") as file:
        file.write(b"\0garbage" * 12)  # the header: SQLite no longer sees a database
    for command in ("fetch", "list", "status"):
        assert main(["-c", str(config), command]) == EXIT_STORAGE
        err = capsys.readouterr().err
        assert f"the state database {path}" in err
        assert "'fetchd state rebuild' keeps it aside" in err
