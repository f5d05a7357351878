"""``fetchd init``, ``account add|remove``, ``check [--connect]`` and ``status``."""

from __future__ import annotations

import grp
import io
import json
import os
import re
import stat
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from fetchd.cli import main
from fetchd.config import load_config
from fetchd.store.state import LOAD_REFRESH, Load, PollRecord, State
from fetchd.testing.dovecot import Dovecot
from tests.daemon.conftest import account_toml, write_config
from tests.messages import make_message


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "etc" / "config.toml"
    assert main(["init", str(path)]) == 0
    return path


def add(config: Path, name: str, *extra: str) -> int:
    return main(["-c", str(config), "account", "add", name, "--host", "pop.example.com", *extra])


# -- init ----------------------------------------------------------------------


def test_init_writes_a_private_valid_config_once(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert mode(config) == 0o600
    loaded = load_config(config)
    assert loaded.accounts == {}
    assert "# " in config.read_text()  # commented for the person who edits it next
    before = config.read_text()
    assert main(["init", str(config)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert config.read_text() == before


def test_init_defaults_to_the_configured_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "home" / "fetchd.toml"
    monkeypatch.setenv("FETCHD_CONFIG", str(target))
    assert main(["init"]) == 0
    assert target.is_file()
    assert mode(target) == 0o600


def test_init_example_prints_the_shipped_example_and_writes_nothing(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "`fetchd init --example` prints" in config.read_text()
    capsys.readouterr()
    before = sorted(tmp_path.rglob("*"))
    assert main(["init", "--example", str(tmp_path / "unused.toml")]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("# fetchd configuration.")
    assert "[accounts.work.attachments]" in printed
    assert sorted(tmp_path.rglob("*")) == before
    example = tmp_path / "example.toml"
    example.write_text(printed)
    assert set(load_config(example).accounts) == {"work"}


# -- account add / remove ------------------------------------------------------


def test_account_add_writes_a_drop_in_and_leaves_the_main_file_alone(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main_text = config.read_text()
    code = add(config, "work", "--user", "alice", "--password-env", "WORK_PW", "--port", "995")
    assert code == 0, capsys.readouterr().err
    drop_in = config.parent / "accounts.d" / "work.toml"
    assert mode(drop_in) == 0o600
    assert mode(drop_in.parent) == 0o700
    assert config.read_text() == main_text
    account = load_config(config).accounts["work"]
    assert (account.host, account.username, account.port) == ("pop.example.com", "alice", 995)
    assert account.password_env == "WORK_PW"
    assert not account.delete_after_fetch
    assert "systemctl reload fetchd" in capsys.readouterr().out
    assert add(config, "work", "--user", "other", "--password-env", "X") == 2


def test_adding_an_account_twice_names_the_file_that_defines_it(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert add(config, "work", "--user", "alice", "--password-env", "WORK_PW") == 0
    capsys.readouterr()
    assert add(config, "work", "--user", "other", "--password-env", "X") == 2
    drop_in = config.parent / "accounts.d" / "work.toml"
    assert f"account work already exists in {drop_in}" in capsys.readouterr().err
    before = config.read_text()
    config.write_text(before + '\n[accounts.home]\nhost = "h"\nusername = "u"\n')
    line = before.count("\n") + 2
    assert add(config, "home", "--user", "u", "--password-env", "X") == 2
    assert f"account home already exists in {config}:{line}\n" in capsys.readouterr().err


def test_account_add_follows_a_main_file_opened_for_the_service(config: Path) -> None:
    config.chmod(0o644)
    assert add(config, "svc", "--user", "u", "--password-credential", "svc") == 0
    assert mode(config.parent / "accounts.d" / "svc.toml") == 0o644
    assert mode(config.parent / "accounts.d") == 0o755  # the service's user may enter


def test_an_invalid_account_is_removed_again_and_every_problem_shown(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = add(config, "bad", "--user", "u", "--password-env", "P", "--security", "plain")
    assert code == 78
    assert "clear text" in capsys.readouterr().err
    assert not (config.parent / "accounts.d" / "bad.toml").exists()
    assert load_config(config).accounts == {}


def test_a_relative_password_file_is_resolved_where_the_user_stands(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pw").write_text("hunter2\n")
    monkeypatch.chdir(tmp_path)
    assert add(config, "rel", "--user", "u", "--password-file", "pw") == 0
    assert load_config(config).accounts["rel"].resolve_secret() == "hunter2"


def test_without_a_password_source_it_asks_on_a_terminal_only(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert add(config, "quiet", "--user", "u") == 2
    assert "no password source" in capsys.readouterr().err
    assert list(config.parent.glob("accounts.d/*")) == []

    prompts: list[str] = []

    def ask(prompt: str) -> str:
        prompts.append(prompt)
        return "s3cr3t!"

    monkeypatch.setattr("sys.stdin", FakeTerminal())
    monkeypatch.setattr("getpass.getpass", ask)
    assert add(config, "asked", "--user", "u") == 0
    secret_file = config.parent / "accounts.d" / "asked.password"
    assert mode(secret_file) == 0o600
    assert prompts == ["Password for u at pop.example.com: "]
    account = load_config(config).accounts["asked"]
    assert account.password_file == secret_file
    assert account.resolve_secret() == "s3cr3t!"
    assert "s3cr3t!" not in (config.parent / "accounts.d" / "asked.toml").read_text()


def test_account_remove_deletes_only_what_account_add_made(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", FakeTerminal())
    monkeypatch.setattr("getpass.getpass", lambda prompt: "pw")
    assert add(config, "gone", "--user", "u") == 0
    assert main(["-c", str(config), "account", "remove", "gone"]) == 0
    assert sorted((config.parent / "accounts.d").iterdir()) == []
    assert load_config(config).accounts == {}

    config.write_text(
        config.read_text()
        + '\n[accounts.handmade]\nhost = "h"\nusername = "u"\npassword_env = "P"\n'
    )
    capsys.readouterr()
    assert main(["-c", str(config), "account", "remove", "handmade"]) == 2
    err = capsys.readouterr().err
    assert str(config) in err
    assert "[accounts.handmade]" in err
    assert "handmade" in load_config(config).accounts
    assert main(["-c", str(config), "account", "remove", "nobody"]) == 2
    assert main(["-c", str(config), "account", "remove", "../escape"]) == 2


# -- check ---------------------------------------------------------------------


def test_check_gives_each_account_a_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[accounts.envset]\nhost = "h"\nusername = "u"\npassword_env = "SET_PW"\n'
        '[accounts.cmd]\nhost = "h"\nusername = "u"\npassword_command = "false"\n'
        '[accounts.off]\nhost = "h"\nusername = "u"\npassword_env = "P"\nenabled = false\n'
    )
    monkeypatch.setenv("SET_PW", "x")
    assert main(["-c", str(config), "check"]) == 0
    out = capsys.readouterr().out
    assert "valid, 3 accounts" in out
    assert "envset: ok: h:995 (tls), user u, password from password_env readable" in out
    assert "cmd: ok:" in out
    assert "not run" in out
    assert "off: ok: disabled" in out

    monkeypatch.delenv("SET_PW")
    assert main(["-c", str(config), "check"]) == 1
    assert "envset: FAILED:" in capsys.readouterr().out


def test_check_says_who_may_read_the_mail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    group = grp.getgrgid(os.getegid()).gr_name
    config = tmp_path / "config.toml"
    config.write_text(
        f'[daemon]\nshare_group = "{group}"\n'
        '[accounts.shared]\nhost = "h"\nusername = "u"\npassword_env = "SET_PW"\n'
        '[accounts.alone]\nhost = "h"\nusername = "u"\npassword_env = "SET_PW"\n'
        "share_group = false\n"
    )
    monkeypatch.setenv("SET_PW", "x")
    assert main(["-c", str(config), "check"]) == 0
    out = capsys.readouterr().out
    assert f"  mail and attachments shared with the group {group} (files 0640" in out
    assert out.count("shared with the group") == 1
    assert "warning" not in out


def test_check_warns_of_hook_and_mda_programs_it_cannot_find(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[accounts.a]\nhost = "h"\nusername = "u"\npassword_env = "SET_PW"\n'
        'on_message = ["sh", "-c", "true"]\non_error = ["no-such-notifier", "x"]\n'
        'mda = ["/nonexistent/deliver"]\n'
        '[accounts.b]\nhost = "h"\nusername = "u"\npassword_env = "SET_PW"\n'
        'on_attachment = ["/bin/sh", "-c", "true"]\n'
    )
    monkeypatch.setenv("SET_PW", "x")
    assert main(["-c", str(config), "check"]) == 0  # warnings: the account may still poll
    out = capsys.readouterr().out
    assert "  warning: on_error: no program 'no-such-notifier' on PATH" in out
    assert "  warning: mda: /nonexistent/deliver is not an executable file" in out
    assert out.count("warning") == 2


def test_check_warns_of_an_on_poll_program_it_cannot_find(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[daemon]\non_poll = ["no-such-poll-hook", "x"]\n')
    assert main(["-c", str(config), "check"]) == 0  # a warning: the daemon still polls
    assert "daemon: warning: on_poll: no program 'no-such-poll-hook' on PATH" in (
        capsys.readouterr().out
    )
    config.write_text('[daemon]\non_poll = ["/nonexistent/poll-hook"]\n')
    assert main(["-c", str(config), "check"]) == 0
    assert "daemon: warning: on_poll: /nonexistent/poll-hook is not an executable file" in (
        capsys.readouterr().out
    )
    config.write_text('[daemon]\non_poll = ["sh", "-c", "true"]\n')
    assert main(["-c", str(config), "check"]) == 0
    assert "warning" not in capsys.readouterr().out


def test_an_invalid_config_fails_check_with_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[daemon]\ninterval = "soon"\n[accounts.x]\nhost = "h"\n')
    assert main(["-c", str(config), "check"]) == 78
    err = capsys.readouterr().err
    assert "daemon.interval" in err
    assert "accounts.x.username" in err


def test_check_connect_logs_in_reports_and_deletes_nothing(
    dovecot_both: Dovecot,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for i in range(3):
        dovecot_both.deliver("alice", make_message(f"waiting {i}"))
    accounts = account_toml("good", dovecot_both, "alice") + account_toml(
        "wrong", dovecot_both, "bob"
    )
    config = write_config(tmp_path / "config.toml", accounts)
    monkeypatch.setenv("PW_ALICE", "secret")
    monkeypatch.setenv("PW_BOB", "not-bobs")
    assert main(["-c", str(config), "check", "--connect"]) == 1
    out = capsys.readouterr().out
    assert "good: ok: 127.0.0.1" in out
    assert "logged in with PLAIN WITHOUT TLS; 3 messages" in out
    assert "capabilities: " in out
    assert "UIDL" in out
    assert "wrong: FAILED: the server refused the login" in out
    assert "not-bobs" not in out
    assert len(dovecot_both.messages("alice")) == 3


# -- status --------------------------------------------------------------------


def status(config: Path, capsys: pytest.CaptureFixture[str], *extra: str, code: int = 0) -> Any:
    """The table, or with --json the accounts' entries."""
    found = report(config, capsys, *extra, code=code)
    return found["accounts"] if extra else found


def report(config: Path, capsys: pytest.CaptureFixture[str], *extra: str, code: int = 0) -> Any:
    """What ``fetchd status`` printed: the table, or with --json the whole document."""
    assert main(["-c", str(config), "status", *extra]) == code
    out = capsys.readouterr().out
    return json.loads(out) if extra else out


def test_status_before_any_poll_and_after_some(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[daemon]\ndata_dir = "{tmp_path / "data"}"\n'
        '[accounts.a]\nhost = "h"\nusername = "u"\npassword_env = "P"\n'
        '[accounts.b]\nhost = "h"\nusername = "u"\npassword_env = "P"\n'
    )
    [a, b] = status(config, capsys, "--json")
    assert (a["account"], a["outcome"], a["fetched_total"], a["next_poll"]) == ("a", None, 0, None)
    assert not (tmp_path / "data" / "state.sqlite3").exists()  # status created nothing

    state = State(tmp_path / "data" / "state.sqlite3")
    state.record_poll(PollRecord("b", 100.0, 101.0, "auth", error="login refused"))
    state.set_next_poll("b", 4000.0)
    state.close()
    [a, b] = status(config, capsys, "--json", code=1)  # b's last poll failed
    assert (b["outcome"], b["failures"], b["error"]) == ("auth", 1, "login refused")
    assert (a["poll_failed"], b["poll_failed"]) == (False, True)
    assert b["last_poll"].startswith("1970-01-01")
    assert b["next_poll"] is not None
    assert b["last_success"] is None
    assert a["outcome"] is None

    table = status(config, capsys, code=1)
    assert table.splitlines()[0].split() == [
        *("ACCOUNT", "LAST", "POLL", "OUTCOME", "FETCHED", "TODAY", "FAILURES", "FAILING", "MSGS"),
        *("NEXT", "POLL"),
    ]
    assert "never polled" in table
    failed = r"^b: last poll failed \d{4}-\d\d-\d\d \d\d:\d\d \(auth, 1 time in a row\): "
    assert re.search(failed + "login refused$", table, flags=re.MULTILINE)

    state = State(tmp_path / "data" / "state.sqlite3")
    state.record_poll(PollRecord("b", 200.0, 201.0, "ok"))
    state.close()
    [a, b] = status(config, capsys, "--json")  # a success clears it
    assert (b["outcome"], b["poll_failed"], b["failures"]) == ("ok", False, 0)
    assert "last poll failed" not in status(config, capsys)

    assert "overloaded" not in status(config, capsys)

    state = State(tmp_path / "data" / "state.sqlite3")
    state.record_load(Load(time.time() - 120, 300.0, 6000.0, 42.0, time.time()))
    state.close()
    [line] = [line for line in status(config, capsys).splitlines() if "overloaded" in line]
    assert "300 polls a minute of 6000 scheduled, polls wait up to 42 s" in line

    # A running daemon rewrites a record that says the same only every LOAD_REFRESH.
    state = State(tmp_path / "data" / "state.sqlite3")
    state.record_load(Load(time.time() - 900, 300.0, 6000.0, 42.0, time.time() - 600))
    state.close()
    assert "overloaded" in status(config, capsys)

    # A daemon killed while overloaded leaves its last record: stale after that.
    state = State(tmp_path / "data" / "state.sqlite3")
    state.record_load(Load(time.time() - 3600, 300.0, 6000.0, 42.0, time.time() - 1800))
    state.close()
    assert "overloaded" not in status(config, capsys)


def test_status_json_has_the_daemons_load_while_one_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[daemon]\ndata_dir = "{tmp_path / "data"}"\n'
        '[accounts.a]\nhost = "h"\nusername = "u"\npassword_env = "P"\n'
    )
    assert report(config, capsys, "--json")["load"] is None  # no database yet
    state = State(tmp_path / "data" / "state.sqlite3")
    state.record_poll(PollRecord("a", 100.0, 101.0, "ok"))
    state.close()
    assert report(config, capsys, "--json")["load"] is None  # no daemon said anything

    now = time.time()
    state = State(tmp_path / "data" / "state.sqlite3")
    state.record_load(Load(None, 30.0, 30.0, 0.5, now))
    state.close()
    load = report(config, capsys, "--json")["load"]
    assert (load["overloaded_since"], load["achieved"], load["configured"]) == (None, 30.0, 30.0)
    assert load["max_wait"] == 0.5
    assert datetime.fromisoformat(load["updated"]).timestamp() == int(now)

    state = State(tmp_path / "data" / "state.sqlite3")
    state.record_load(Load(now - 120, 300.0, 6000.0, 42.0, now))
    state.close()
    load = report(config, capsys, "--json")["load"]
    assert datetime.fromisoformat(load["overloaded_since"]).timestamp() == int(now - 120)
    assert (load["achieved"], load["configured"], load["max_wait"]) == (300.0, 6000.0, 42.0)

    # A killed daemon's record is stale: no daemon runs, as in the table.
    state = State(tmp_path / "data" / "state.sqlite3")
    state.record_load(Load(now - 3000, 300.0, 6000.0, 42.0, now - LOAD_REFRESH - 600))
    state.close()
    assert report(config, capsys, "--json")["load"] is None


def test_status_opens_the_state_database_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[daemon]\ndata_dir = "{tmp_path / "data"}"\n'
        '[accounts.a]\nhost = "h"\nusername = "u"\npassword_env = "P"\n'
    )
    database = tmp_path / "data" / "state.sqlite3"
    state = State(database)
    state.record_load(Load(time.time() - 120, 300.0, 6000.0, 42.0, time.time()))
    state.close()
    opened: list[Path] = []
    open_readonly = State.open_readonly

    def counted(path: Path) -> State:
        opened.append(path)
        return open_readonly(path)

    monkeypatch.setattr(State, "open_readonly", counted)
    assert "polls wait up to 42 s" in report(config, capsys)  # the load, from that one opening
    assert opened == [database]
    opened.clear()
    assert report(config, capsys, "--json")["load"]["max_wait"] == 42.0
    assert opened == [database]


def test_status_ignores_a_failure_of_a_disabled_account(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[daemon]\ndata_dir = "{tmp_path / "data"}"\n'
        '[accounts.a]\nhost = "h"\nusername = "u"\npassword_env = "P"\nenabled = false\n'
    )
    state = State(tmp_path / "data" / "state.sqlite3")
    state.record_poll(PollRecord("a", 100.0, 101.0, "network", error="no route"))
    state.close()
    [a] = status(config, capsys, "--json")
    assert (a["enabled"], a["poll_failed"]) == (False, True)
    assert "a (disabled): last poll failed " in status(config, capsys)
