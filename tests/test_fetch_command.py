"""``fetchd fetch`` as a user runs it: config file, exit status, the Maildir it leaves."""

from __future__ import annotations

import json
import mailbox
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import fetchd.runner
from fetchd.cli import EXIT_ACCOUNT_FAILED, EXIT_CONFIG, EXIT_OK, EXIT_SOFTWARE, main
from fetchd.config import AccountConfig
from fetchd.poll import PollResult
from fetchd.testing.dovecot import Dovecot
from tests.messages import make_message


def write_config(
    tmp_path: Path, dovecot: Dovecot, *, bob_password: str = "secret2", **alice: str
) -> Path:
    """alice over implicit TLS, bob over STLS; ``alice`` adds keys to alice's table."""
    alice_extra = "".join(f"{key} = {value}\n" for key, value in alice.items())
    config = tmp_path / "config.toml"
    config.write_text(
        f"""\
[daemon]
data_dir = "{tmp_path / "data"}"
log_level = "warning"

[accounts.alice]
host = "localhost"
port = {dovecot.pop3s_port}
ca_file = "{dovecot.ca_file}"
username = "alice"
password = "secret"
{alice_extra}
[accounts.bob]
host = "localhost"
port = {dovecot.pop3_port}
security = "starttls"
ca_file = "{dovecot.ca_file}"
username = "bob"
password = "{bob_password}"
"""
    )
    config.chmod(0o600)
    return config


@pytest.fixture
def both(dovecot_alice: Dovecot) -> Dovecot:
    dovecot_alice.reset("bob")
    dovecot_alice.deliver_many("alice", [make_message(f"for alice {i}") for i in range(3)])
    dovecot_alice.deliver_many("bob", [make_message(f"for bob {i}") for i in range(2)])
    return dovecot_alice


def test_fetch_all_accounts_over_tls_and_starttls(both: Dovecot, tmp_path: Path) -> None:
    assert main(["-c", str(write_config(tmp_path, both)), "fetch"]) == EXIT_OK
    for name, count in (("alice", 3), ("bob", 2)):
        box = mailbox.Maildir(tmp_path / "data" / name / "Maildir", create=False)
        subjects = sorted(str(message["Subject"]) for message in box)
        assert subjects == [f"for {name} {i}" for i in range(count)]


def test_one_failing_account_fails_the_run_but_not_the_others(
    both: Dovecot, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, both, bob_password="not-bobs-password")
    assert main(["-c", str(config), "fetch"]) == EXIT_ACCOUNT_FAILED
    err = capsys.readouterr().err
    [reason] = [line for line in err.splitlines() if line.startswith("fetchd: bob: ")]
    assert "refused the login" in reason
    assert "not-bobs-password" not in err
    assert len(list((tmp_path / "data" / "alice" / "Maildir" / "new").iterdir())) == 3


def test_named_accounts_only(both: Dovecot, tmp_path: Path) -> None:
    assert main(["-c", str(write_config(tmp_path, both)), "fetch", "bob"]) == EXIT_OK
    assert not (tmp_path / "data" / "alice").exists()
    assert main(["-c", str(write_config(tmp_path, both)), "fetch", "carol"]) == 2


def test_delete_after_days(both: Dovecot, tmp_path: Path) -> None:
    config = write_config(tmp_path, both, delete_after_days="2")
    assert main(["-c", str(config), "fetch", "alice"]) == EXIT_OK
    assert len(both.messages("alice")) == 3  # fetched today: kept
    with sqlite3.connect(tmp_path / "data" / "state.sqlite3") as db:
        db.execute(
            "UPDATE messages SET fetched_at = fetched_at - 3 * 86400 WHERE uid IN "
            "(SELECT uid FROM messages WHERE account = 'alice' LIMIT 2)"
        )
    assert main(["-c", str(config), "fetch", "alice"]) == EXIT_OK
    assert len(both.messages("alice")) == 1  # the two fetched three days ago are gone
    assert len(list((tmp_path / "data" / "alice" / "Maildir" / "new").iterdir())) == 3


def test_invalid_config_exits_78_with_key_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[accounts.x]\nhost = "h"\nusername = "u"\npassword_env = "P"\nport = 0\n')
    assert main(["-c", str(config), "fetch"]) == EXIT_CONFIG
    assert "accounts.x.port" in capsys.readouterr().err


def test_status_shows_what_fetch_did(
    both: Dovecot, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, both, bob_password="not-bobs-password")
    main(["-c", str(config), "fetch"])
    capsys.readouterr()
    assert main(["-c", str(config), "status", "--json"]) == EXIT_ACCOUNT_FAILED
    rows = {row["account"]: row for row in json.loads(capsys.readouterr().out)["accounts"]}
    assert rows["alice"]["outcome"] == "ok"
    assert rows["alice"]["fetched_total"] == 3
    assert rows["bob"]["outcome"] == "auth"
    assert "refused the login" in rows["bob"]["error"]
    assert main(["-c", str(config), "status"]) == EXIT_ACCOUNT_FAILED
    [why] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("bob: ")]
    assert why.startswith("bob: last poll failed 20")  # when: this year's date and time
    assert "(auth, 1 time in a row): " in why
    assert "refused the login" in why

    # The right password: the next poll passes, and so does status.
    config = write_config(tmp_path, both)
    assert main(["-c", str(config), "fetch", "bob"]) == EXIT_OK
    capsys.readouterr()
    assert main(["-c", str(config), "status", "--json"]) == EXIT_OK
    assert {row["outcome"] for row in json.loads(capsys.readouterr().out)["accounts"]} == {"ok"}
    assert main(["-c", str(config), "status"]) == EXIT_OK
    assert "failed" not in capsys.readouterr().out


def test_list_and_status_before_any_fetch_create_nothing(
    both: Dovecot, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, both)
    assert main(["-c", str(config), "list"]) == EXIT_OK
    assert "no messages" in capsys.readouterr().out
    assert main(["-c", str(config), "status"]) == EXIT_OK
    assert not (tmp_path / "data" / "state.sqlite3").exists()


def test_a_bug_in_one_account_still_polls_the_others_then_exits_70(
    both: Dovecot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_poll = fetchd.runner.poll_account

    def poll(account: AccountConfig, *args: Any, **kwargs: Any) -> PollResult:
        if account.name == "alice":
            raise RuntimeError("a bug")
        return real_poll(account, *args, **kwargs)

    monkeypatch.setattr(fetchd.runner, "poll_account", poll)
    assert main(["-c", str(write_config(tmp_path, both)), "fetch"]) == EXIT_SOFTWARE
    assert len(list((tmp_path / "data" / "bob" / "Maildir" / "new").iterdir())) == 2


def test_a_missing_password_file_fails_its_account_only(
    both: Dovecot, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, both, password_file='"no-such-file"')
    text = config.read_text().replace('password = "secret"\npassword_file', "password_file", 1)
    config.write_text(text)
    assert main(["-c", str(config), "fetch"]) == EXIT_ACCOUNT_FAILED
    assert "fetchd: alice: " in capsys.readouterr().err
    assert len(list((tmp_path / "data" / "bob" / "Maildir" / "new").iterdir())) == 2


def _events(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def _sent(err: str) -> list[str]:
    """The POP3 commands fetchd sent, from the transcript events (JSON on stderr)."""
    return [
        e["text"].split()[0] for e in _events(err) if e["event"] == "pop3" and e["direction"] == "C"
    ]


def test_dry_run_changes_nothing_and_says_what_would_be_fetched(
    both: Dovecot,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = write_config(tmp_path, both)
    on_server = {user: both.messages(user) for user in ("alice", "bob")}
    argv = ["-c", str(config), "--log-level", "info", "--log-format", "json", "fetch"]
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main([*argv, "--dry-run"]) == EXIT_OK
    assert list(elsewhere.iterdir()) == []  # not even a stray database file
    out, err = capsys.readouterr()
    assert "alice: 3 on the server, 0 fetched before (dry run: nothing changed)" in out
    assert "bob: 2 on the server, 0 fetched before" in out
    assert out.count("    message ") == 5
    fetching = [line for line in out.splitlines() if "would fetch" in line]
    assert [line.split(":")[1].split("(")[0].strip() for line in fetching] == ["3", "2"]
    assert "delete" not in out
    sent = _sent(err)
    assert {"UIDL", "LIST", "QUIT"} <= set(sent)
    assert not {"RETR", "DELE", "TOP", "RSET"} & set(sent)
    assert {user: len(both.messages(user)) for user in on_server} == {"alice": 3, "bob": 2}
    assert not (tmp_path / "data").exists()  # no Maildir, no state database, no lock file
    # The UIDs it named are those a real pass then fetches.
    named = {line.split()[3] for line in out.splitlines() if line.startswith("    message ")}
    assert main(["-c", str(config), "fetch"]) == EXIT_OK
    with sqlite3.connect(tmp_path / "data" / "state.sqlite3") as db:
        fetched = {uid.decode() for (uid,) in db.execute("SELECT uid FROM messages")}
    assert named == fetched


def test_dry_run_lists_what_would_be_deleted_and_writes_no_state(
    both: Dovecot, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-c", str(write_config(tmp_path, both)), "fetch", "alice"]) == EXIT_OK
    both.deliver_many("alice", [make_message(f"later {i}") for i in range(2)])
    config = write_config(tmp_path, both, delete_after_fetch="true")
    database = tmp_path / "data" / "state.sqlite3"
    with sqlite3.connect(database) as db:
        before = db.execute("SELECT * FROM messages ORDER BY uid").fetchall()
        polls = db.execute("SELECT COUNT(*) FROM polls").fetchone()
    stored = sorted((tmp_path / "data" / "alice" / "Maildir" / "new").iterdir())
    capsys.readouterr()
    assert main(["-c", str(config), "fetch", "--dry-run", "alice"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "alice: 5 on the server, 3 fetched before" in out
    assert "  would fetch: 2 (" in out
    assert "  would delete on the server: 5 (" in out  # the 3 stored, then the 2 fetched
    assert len(both.messages("alice")) == 5
    assert sorted((tmp_path / "data" / "alice" / "Maildir" / "new").iterdir()) == stored
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT * FROM messages ORDER BY uid").fetchall() == before
        assert db.execute("SELECT COUNT(*) FROM polls").fetchone() == polls
    # -q: the counts only, no message lines.
    assert main(["-c", str(config), "fetch", "--dry-run", "-q", "alice"]) == EXIT_OK
    brief = capsys.readouterr().out
    assert "would delete on the server: 5 (" in brief
    assert "    message " not in brief


def test_dry_run_names_messages_too_big_to_fetch(
    both: Dovecot, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    both.deliver("alice", make_message("big", body="x" * 20_000))
    config = write_config(tmp_path, both, max_message_size="10000")
    assert main(["-c", str(config), "fetch", "--dry-run", "alice"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "  would fetch: 3 (" in out
    assert "  too big, left on the server: 1 (" in out
    [big] = [line for line in out.splitlines() if line.startswith("    message 4 ")]
    assert int(big.split()[-2]) > 20_000


def test_dry_run_of_an_account_that_cannot_log_in_fails_it_only(
    both: Dovecot, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, both, bob_password="not-bobs-password")
    assert main(["-c", str(config), "fetch", "--dry-run"]) == EXIT_ACCOUNT_FAILED
    out, err = capsys.readouterr()
    assert "alice: 3 on the server" in out
    assert "fetchd: bob: " in err
    assert not (tmp_path / "data").exists()


def test_verbose_and_quiet_set_the_log_level(
    both: Dovecot, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, both)  # log_level = "warning"
    argv = ["-c", str(config), "--log-format", "json"]
    assert main([*argv, "fetch", "-v", "alice"]) == EXIT_OK
    assert "poll" in {e["event"] for e in _events(capsys.readouterr().err)}
    # -q after a --log-level given before the command: the explicit level wins.
    assert main([*argv, "--log-level", "info", "fetch", "-q", "bob"]) == EXIT_OK
    assert "poll" in {e["event"] for e in _events(capsys.readouterr().err)}
    both.deliver("bob", make_message("one more"))
    text = config.read_text().replace('log_level = "warning"', 'log_level = "info"')
    config.write_text(text)
    assert main([*argv, "-q", "fetch", "bob"]) == EXIT_OK
    assert _events(capsys.readouterr().err) == []
    assert len(list((tmp_path / "data" / "bob" / "Maildir" / "new").iterdir())) == 3


def test_dry_run_tells_a_message_a_crash_left_unrecorded_from_one_to_fetch(
    both: Dovecot, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file in the Maildir whose record a crash cut short is recorded by the next
    poll, not fetched: the dry run says so, and the poll then does just that."""
    config = write_config(tmp_path, both)
    assert main(["-c", str(config), "fetch", "alice"]) == EXIT_OK
    with sqlite3.connect(tmp_path / "data" / "state.sqlite3") as db:
        db.execute("DELETE FROM messages WHERE uid = (SELECT MIN(uid) FROM messages)")
    both.deliver("alice", make_message("later"))
    capsys.readouterr()
    assert main(["-c", str(config), "fetch", "--dry-run", "alice"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "alice: 4 on the server, 2 fetched before" in out
    assert "  would fetch: 1 (" in out
    assert "  in the Maildir since a crash, would record without fetching: 1 (" in out
    argv = ["-c", str(config), "--log-level", "info", "--log-format", "json", "fetch", "alice"]
    assert main(argv) == EXIT_OK
    assert _sent(capsys.readouterr().err).count("RETR") == 1
    assert len(list((tmp_path / "data" / "alice" / "Maildir" / "new").iterdir())) == 4
