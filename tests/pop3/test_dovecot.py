"""The POP3 client against a real Dovecot: every command, in plain, STLS and TLS."""

from __future__ import annotations

import hashlib
import io
import resource
import ssl
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from fetchd.errors import AuthError, TLSError
from fetchd.pop3.client import Session
from fetchd.pop3.commands import Command
from fetchd.pop3.connect import Endpoint, Security, open_session
from fetchd.pop3.states import State
from fetchd.testing.dovecot import Dovecot
from fetchd.testing.server import POP3TestServer
from fetchd.testing.tlsfiles import make_test_ca, make_unrelated_ca
from tests.messages import make_large_message, make_message


def endpoint(dovecot: Dovecot, security: Security, **kw: object) -> Endpoint:
    port = dovecot.pop3s_port if security == "tls" else dovecot.pop3_port
    return Endpoint("localhost", port, security, ca_file=dovecot.ca_file, **kw)  # type: ignore[arg-type]


def logged_in(dovecot: Dovecot, security: Security = "plain", **kw: object) -> Session:
    session = open_session(endpoint(dovecot, security, **kw))
    session.login("auto", "alice", "secret", "localhost", 0)
    return session


def deliver(dovecot: Dovecot, count: int) -> list[bytes]:
    messages = [make_message(f"message {i}", f"body {i}\n.dot line\n") for i in range(1, count + 1)]
    for message in messages:
        dovecot.deliver("alice", message)
    return messages


@pytest.mark.parametrize("security", ["plain", "starttls", "tls"])
def test_every_command(dovecot_alice: Dovecot, security: Security) -> None:
    messages = deliver(dovecot_alice, 3)
    session = logged_in(dovecot_alice, security)
    assert session.transport.tls_active == (security != "plain")
    assert session.state is State.TRANSACTION
    assert session.stat() == (3, sum(len(m) for m in messages))
    sizes = session.list()
    assert sizes == {1: len(messages[0]), 2: len(messages[1]), 3: len(messages[2])}
    assert session.list_one(2) == len(messages[1])
    uids = session.uidl()
    assert len(set(uids.values())) == 3
    assert session.uidl_one(3) == uids[3]
    body = io.BytesIO()
    assert session.retr(1, body) == len(messages[0])
    assert body.getvalue() == messages[0]
    head = io.BytesIO()
    session.top(2, 0, head)
    assert head.getvalue() == messages[1].split(b"\r\n\r\n")[0] + b"\r\n\r\n"
    assert session.noop().ok
    assert not session.exchange(Command("LAST")).ok  # Dovecot has no LAST
    assert "UIDL" in session.capa()
    session.quit()
    assert session.state is State.CLOSED


def test_dele_rset_quit_semantics(dovecot_alice: Dovecot) -> None:
    deliver(dovecot_alice, 3)
    session = logged_in(dovecot_alice)
    session.dele(1)
    assert not session.exchange(Command("RETR", ("1",))).ok  # deleted: -ERR
    assert not session.exchange(Command("DELE", ("1",))).ok  # already deleted: -ERR
    assert session.stat()[0] == 2
    session.rset()
    assert session.stat()[0] == 3
    session.dele(2)
    session.close()  # no QUIT: nothing deleted
    assert len(dovecot_alice.messages("alice")) == 3
    session = logged_in(dovecot_alice)
    session.dele(2)
    session.quit()
    assert len(dovecot_alice.messages("alice")) == 2


@pytest.mark.parametrize("pipelining", [True, False])
def test_pipelined_and_lockstep_give_the_same_bytes(
    dovecot_alice: Dovecot, pipelining: bool
) -> None:
    messages = deliver(dovecot_alice, 40)
    session = logged_in(dovecot_alice, pipelining=pipelining, window=8)
    assert session.pipelining == pipelining
    got = []
    commands = [Command("RETR", (str(n),)) for n in range(1, 41)]
    for reply in session.pipelined(commands):
        got.append(reply.check("RETR").read_all(max_octets=1 << 20))
    assert got == messages
    session.quit()


def test_wrong_password_is_an_auth_error_without_the_secret(dovecot_alice: Dovecot) -> None:
    session = open_session(endpoint(dovecot_alice, "plain"))
    with pytest.raises(AuthError) as caught:
        session.login("user", "alice", "not-the-password-xyz", "localhost", 0)
    assert "not-the-password-xyz" not in str(caught.value)
    session.close()


@pytest.mark.parametrize("method", ["user", "plain", "login"])
def test_each_login_method(dovecot_alice: Dovecot, method: str) -> None:
    session = open_session(endpoint(dovecot_alice, "tls"))
    assert session.login(method, "alice", "secret", "localhost", 0) == method
    assert session.state is State.TRANSACTION
    session.quit()


def test_untrusted_certificate_is_refused(dovecot_alice: Dovecot, tmp_path: Path) -> None:
    other = make_unrelated_ca(tmp_path)
    with pytest.raises(TLSError, match="does not verify"):
        open_session(Endpoint("localhost", dovecot_alice.pop3s_port, "tls", ca_file=other.ca_file))


def test_hostname_mismatch_is_refused(
    pop3_server: Callable[..., POP3TestServer], tmp_path: Path
) -> None:
    files = make_test_ca(tmp_path, hostname="mail.example.org")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.cert_file, files.key_file)
    server = pop3_server([], tls_context=context)
    with pytest.raises(TLSError, match="does not verify"):
        open_session(Endpoint("localhost", server.port, "tls", ca_file=files.ca_file))


def test_50_mb_message_streams_with_flat_memory(dovecot_alice: Dovecot, tmp_path: Path) -> None:
    message = make_large_message(50 * 1024 * 1024)
    dovecot_alice.deliver("alice", message)
    expected = hashlib.sha256(message).hexdigest()
    del message
    session = logged_in(dovecot_alice)
    target = tmp_path / "big.eml"
    tracemalloc.start()
    with target.open("wb") as sink:
        session.retr(1, sink)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    session.quit()
    assert hashlib.sha256(target.read_bytes()).hexdigest() == expected
    assert peak < 4 * 1024 * 1024, f"peak Python allocation {peak} bytes"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0
