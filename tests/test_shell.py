"""``fetchd shell``: the assignment's commands against a real Dovecot, scripted."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from fetchd.testing.dovecot import Dovecot
from fetchd.testing.server import POP3TestServer
from tests.messages import make_message


def config_for(tmp_path: Path, port: int, **extra: str) -> Path:
    lines = "\n".join(f"{key} = {value}" for key, value in extra.items())
    config = tmp_path / "config.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [daemon]
            data_dir = "{tmp_path / "data"}"
            log_level = "error"
            [accounts.work]
            host = "localhost"
            port = {port}
            security = "plain"
            username = "alice"
            password = "secret"
            """
        )
        + lines
        + "\n"
    )
    config.chmod(0o600)
    return config


def shell(config: Path, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fetchd", "-c", str(config), "shell", "work"],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def two_messages(dovecot_alice: Dovecot) -> list[bytes]:
    messages = [make_message("first", "one\n.leading dot\n"), make_message("second", "two\n")]
    dovecot_alice.deliver_many("alice", messages)
    return messages


def test_scripted_session_prints_replies(
    dovecot_alice: Dovecot, two_messages: list[bytes], tmp_path: Path
) -> None:
    config = config_for(tmp_path, dovecot_alice.pop3_port)
    out = shell(config, "stat\nlist\nlist 2\nuidl\ntop 1 0\nretr 1\nnoop\nlast\ncapa\nquit\n")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    total = sum(len(m) for m in two_messages)
    assert f"+OK 2 {total}" in lines
    assert f"2 {len(two_messages[1])}" in lines  # LIST listing line and LIST 2 reply
    assert f"+OK 2 {len(two_messages[1])}" in lines
    assert ".leading dot" in lines  # RETR output is unstuffed
    assert any(line.startswith("-ERR") for line in lines)  # Dovecot answers LAST with -ERR
    assert "PIPELINING" in lines
    assert lines[-1].startswith("+OK")
    assert not any(line.startswith("work>") for line in lines)  # no prompt from a pipe


def test_dele_rset_quit_are_visible_and_real(
    dovecot_alice: Dovecot, two_messages: list[bytes], tmp_path: Path
) -> None:
    config = config_for(tmp_path, dovecot_alice.pop3_port)
    out = shell(config, "dele 1\nretr 1\nrset\nstat\nquit\n")
    assert "# marked for deletion: 1 (rset unmarks, quit expunges)" in out.stdout
    assert "# unmarked: 1; nothing will be deleted" in out.stdout
    assert len(dovecot_alice.messages("alice")) == 2

    out = shell(config, "dele 2\nquit\n")
    assert "# deleted on the server: 2" in out.stdout
    assert len(dovecot_alice.messages("alice")) == 1


def test_input_ending_without_quit_deletes_nothing(
    dovecot_alice: Dovecot, two_messages: list[bytes], tmp_path: Path
) -> None:
    config = config_for(tmp_path, dovecot_alice.pop3_port)
    out = shell(config, "dele 1\ndele 2\n")
    assert "the server deleted nothing" in out.stdout
    assert len(dovecot_alice.messages("alice")) == 2


def test_retr_to_file(dovecot_alice: Dovecot, two_messages: list[bytes], tmp_path: Path) -> None:
    config = config_for(tmp_path, dovecot_alice.pop3_port)
    target = tmp_path / "one.eml"
    out = shell(config, f"retr 1 {target}\nquit\n")
    assert f"# {len(two_messages[0])} octets written to {target}" in out.stdout
    assert target.read_bytes() == two_messages[0]


def test_usage_errors_do_not_end_the_session(
    dovecot_alice: Dovecot, two_messages: list[bytes], tmp_path: Path
) -> None:
    config = config_for(tmp_path, dovecot_alice.pop3_port)
    out = shell(config, "top 1\nfrobnicate\nlist x\nstat\nquit\n")
    assert "usage: top n m" in out.stdout
    assert "usage: unknown command 'frobnicate'; type help" in out.stdout
    assert "+OK 2 " in out.stdout


def test_last_on_a_server_that_has_it(
    pop3_server: Callable[..., POP3TestServer], tmp_path: Path
) -> None:
    server = pop3_server([make_message("a"), make_message("b")], last=True)
    config = config_for(tmp_path, server.port)
    out = shell(config, "last\nretr 2\nlast\nrset\nlast\nquit\n")
    replies = [line for line in out.stdout.splitlines() if line[4:].isdigit()]
    assert replies == ["+OK 0", "+OK 2", "+OK 0"]


def test_wrong_password_exits_with_a_clear_error(dovecot_alice: Dovecot, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config_for(tmp_path, dovecot_alice.pop3_port)
    config.write_text(config.read_text().replace('"secret"', '"wrong-one-42"'))
    out = shell(config, "stat\n")
    assert out.returncode == 1
    assert "refused the login" in out.stderr
    assert "wrong-one-42" not in out.stderr + out.stdout
