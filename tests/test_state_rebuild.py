"""``fetchd state rebuild`` against a real Dovecot, with ``fetchd.recovery.recover_account``.

The state database is damaged after a fetch; rebuilding must record what the
Maildir holds, download nothing, and delete nothing on the server, even for
an account set to delete after fetching.
"""

from __future__ import annotations

import mailbox
from pathlib import Path

import pytest

from fetchd.cli import EXIT_OK, EXIT_STORAGE, main
from fetchd.store.state import State, integrity_problems, state_path
from fetchd.testing.dovecot import Dovecot
from tests.messages import make_message
from tests.test_fetch_command import write_config


@pytest.fixture
def alice(dovecot_alice: Dovecot) -> Dovecot:
    dovecot_alice.deliver_many("alice", [make_message(f"for alice {i}") for i in range(3)])
    return dovecot_alice


def ruin(path: Path) -> None:
    with path.open("r+b") as file:
        file.write(b"\0garbage" * 12)


def maildir(tmp_path: Path) -> Path:
    return tmp_path / "data" / "alice" / "Maildir"


def known(tmp_path: Path) -> set[str]:
    state = State.open_readonly(state_path(tmp_path / "data"))
    try:
        return set(state.known("alice"))
    finally:
        state.close()


def test_rebuild_records_the_maildir_and_deletes_nothing(
    alice: Dovecot, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, alice)
    assert main(["-c", str(config), "fetch", "alice"]) == EXIT_OK
    uids = known(tmp_path)
    assert len(uids) == 3
    ruin(state_path(tmp_path / "data"))
    assert main(["-c", str(config), "fetch", "alice"]) == EXIT_STORAGE

    # Even an account that deletes after fetching loses nothing by a rebuild.
    config = write_config(tmp_path, alice, delete_after_fetch="true")
    capsys.readouterr()
    assert main(["-c", str(config), "state", "rebuild", "alice"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "the old state database is kept as" in out
    assert len(list((tmp_path / "data").glob("state.damaged-*.sqlite3"))) == 1
    assert integrity_problems(state_path(tmp_path / "data")) == []
    assert known(tmp_path) == uids
    assert len(alice.messages("alice")) == 3  # nothing deleted on the server
    assert len(list((maildir(tmp_path) / "new").iterdir())) == 3  # nothing downloaded


def test_after_a_rebuild_only_what_the_maildir_lacks_is_fetched(
    alice: Dovecot, tmp_path: Path
) -> None:
    config = write_config(tmp_path, alice)
    assert main(["-c", str(config), "fetch", "alice"]) == EXIT_OK
    first = sorted((maildir(tmp_path) / "new").iterdir())[0]
    first.unlink()  # the person moved it away: the rebuild cannot know it was fetched
    ruin(state_path(tmp_path / "data"))
    assert main(["-c", str(config), "state", "rebuild"]) == EXIT_OK
    assert len(known(tmp_path)) == 2
    assert main(["-c", str(config), "fetch", "alice"]) == EXIT_OK
    box = mailbox.Maildir(maildir(tmp_path), create=False)
    assert sorted(str(m["Subject"]) for m in box) == [f"for alice {i}" for i in range(3)]
    assert len(known(tmp_path)) == 3
