"""The private Dovecot fixture: it serves what was delivered, on both ports, in parallel."""

from __future__ import annotations

import re
import shutil
import socket
import ssl
import threading
from pathlib import Path

import pytest

from fetchd.testing.dovecot import Dovecot
from fetchd.testing.tlsfiles import make_unrelated_ca
from tests.messages import make_message
from tests.testing.rawpop import RawPOP3, client_context

HELLO = make_message("hello", "Hello, Alice.\n")


def logged_in(
    server: Dovecot,
    user: str = "alice",
    password: str = "secret",
) -> RawPOP3:
    client = RawPOP3(server.host, server.pop3_port)
    greeting, login = client.status(), client.login(user, password)
    if not (greeting.startswith("+OK") and login.startswith("+OK")):
        client.close()
        raise AssertionError(f"login failed: {greeting!r} {login!r}")
    return client


def test_serves_a_delivered_message(dovecot_alice: Dovecot) -> None:
    path = dovecot_alice.deliver("alice", HELLO)
    assert path.parent.name == "new"
    assert path.parent.parent == dovecot_alice.user("alice").maildir
    with logged_in(dovecot_alice) as client:
        assert client.cmd("STAT") == f"+OK 1 {len(HELLO)}"
        assert client.cmd("RETR 1").startswith("+OK")
        assert client.body() == HELLO
        _, uidls = client.multi("UIDL")
        # pop3_uidl_format = %08Xu%08Xv: UID then UIDVALIDITY, 8 hex digits each
        assert re.fullmatch(r"1 00000001[0-9a-f]{8}", uidls[0]), uidls


def test_capabilities_match_the_notes(dovecot_alice: Dovecot) -> None:
    with RawPOP3(dovecot_alice.host, dovecot_alice.pop3_port) as client:
        client.status()
        _, caps = client.multi("CAPA")
        assert {"TOP", "UIDL", "PIPELINING", "STLS", "USER", "RESP-CODES"} <= set(caps)
        assert client.login().startswith("+OK")
        assert client.cmd("LAST").startswith("-ERR")  # RFC 1725 removed it


def test_wrong_password_is_refused_with_auth_code(dovecot_alice: Dovecot) -> None:
    with RawPOP3(dovecot_alice.host, dovecot_alice.pop3_port) as client:
        client.status()
        assert client.login("alice", "wrong").startswith("-ERR [AUTH]")


def test_dele_expunges_at_quit_only(dovecot_alice: Dovecot) -> None:
    dovecot_alice.deliver("alice", HELLO, name="first")
    dovecot_alice.deliver("alice", make_message("second"), name="second")
    with logged_in(dovecot_alice) as client:
        assert client.cmd("DELE 1").startswith("+OK")
        assert len(dovecot_alice.messages("alice")) == 2
        client.cmd("QUIT")
    remaining = dovecot_alice.messages("alice")
    assert [p.name.split(":")[0] for p in remaining] == ["second"]


def test_reset_restarts_uids(dovecot_alice: Dovecot) -> None:
    dovecot_alice.deliver("alice", HELLO)
    dovecot_alice.deliver("alice", make_message("again"))
    with logged_in(dovecot_alice) as client:
        first = client.multi("UIDL")[1]
        client.cmd("QUIT")
    dovecot_alice.reset("alice")
    assert dovecot_alice.messages("alice") == []
    dovecot_alice.deliver("alice", HELLO)
    with logged_in(dovecot_alice) as client:
        assert client.cmd("STAT").startswith("+OK 1 ")
        again = client.multi("UIDL")[1]
    assert first[1].split()[1][:8] == "00000002"
    assert again[0].split()[1][:8] == "00000001"


def test_deliver_many(dovecot_alice: Dovecot) -> None:
    dovecot_alice.deliver_many("alice", (make_message(f"bulk {i}") for i in range(1000)))
    assert len(dovecot_alice.messages("alice")) == 1000
    maildir = dovecot_alice.user("alice").maildir
    assert all(p.stat().st_uid != 0 for p in (maildir / "new").iterdir())
    with logged_in(dovecot_alice) as client:
        assert client.cmd("STAT").startswith("+OK 1000 ")


def test_pop3s_verifies_against_the_fixture_ca(dovecot: Dovecot, tmp_path: Path) -> None:
    context = client_context(str(dovecot.ca_file))
    for hostname in ("localhost", "127.0.0.1"):
        with RawPOP3(dovecot.host, dovecot.pop3s_port, tls=context, server_hostname=hostname) as c:
            assert c.status().startswith("+OK")
            assert c.login("bob", "secret2").startswith("+OK")
    other = client_context(str(make_unrelated_ca(tmp_path).ca_file))
    with pytest.raises(ssl.SSLCertVerificationError):
        RawPOP3(dovecot.host, dovecot.pop3s_port, tls=other)


def test_stls(dovecot: Dovecot) -> None:
    with RawPOP3(dovecot.host, dovecot.pop3_port) as client:
        client.status()
        assert client.cmd("STLS").startswith("+OK")
        client.starttls(client_context(str(dovecot.ca_file)))
        assert client.login("bob", "secret2").startswith("+OK")
        assert isinstance(client.sock, ssl.SSLSocket)
        assert client.sock.version() in ("TLSv1.2", "TLSv1.3")


def test_users_are_separate_and_sessions_parallel(dovecot_alice: Dovecot) -> None:
    dovecot_alice.reset("bob")
    dovecot_alice.deliver("alice", HELLO)
    dovecot_alice.deliver("bob", make_message("for bob"))
    dovecot_alice.deliver("bob", make_message("for bob, too"))
    with logged_in(dovecot_alice) as alice, logged_in(dovecot_alice, "bob", "secret2") as bob:
        assert alice.cmd("STAT").startswith("+OK 1 ")
        assert bob.cmd("STAT").startswith("+OK 2 ")
    errors: list[BaseException] = []

    def session(user: str, password: str) -> None:
        try:
            with logged_in(dovecot_alice, user, password) as client:
                client.multi("UIDL")
                client.cmd("QUIT")
        except BaseException as exc:  # reported in the test thread
            errors.append(exc)

    threads = [
        threading.Thread(target=session, args=pair)
        for pair in [("alice", "secret"), ("bob", "secret2")] * 3
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    dovecot_alice.reset("bob")


def test_unknown_user_is_a_key_error(dovecot: Dovecot) -> None:
    with pytest.raises(KeyError):
        dovecot.user("mallory")


def test_start_and_stop_own_instance(tmp_path: Path) -> None:
    root = Path("/tmp") / f"fetchd-dovecot-own-{tmp_path.name}"
    server = Dovecot(root, users=[("carol", "pw")])
    try:
        with server:
            port = server.pop3_port
            assert server.log_path.exists()
            with RawPOP3(server.host, port) as client:
                client.status()
                assert client.login("carol", "pw").startswith("+OK")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((server.host, port), timeout=2)
        server.stop()  # idempotent
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_missing_dovecot_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)
    with pytest.raises(RuntimeError, match="dovecot-pop3d"):
        Dovecot(tmp_path).start()


def test_root_below_a_private_directory_is_refused(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(RuntimeError, match="not searchable"):
        Dovecot(private / "dovecot").start()


def test_root_too_long_for_unix_sockets_is_refused() -> None:
    root = Path("/tmp") / ("fetchd-" + "x" * 80)
    try:
        with pytest.raises(RuntimeError, match="too long"):
            Dovecot(root).start()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_credentials_that_break_the_passwd_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="test credentials"):
        Dovecot(tmp_path, users=[("eve", "a:b")])
