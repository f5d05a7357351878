"""The POP3 client against our scriptable server: what Dovecot cannot do."""

from __future__ import annotations

import io
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from fetchd.errors import (
    AuthError,
    NetworkError,
    NetworkTimeout,
    ProtocolError,
    ReplyTooLongError,
    ServerBusyError,
    SizeMismatchError,
    TLSError,
)
from fetchd.log import get_logger, pop3_transcript
from fetchd.pop3 import client
from fetchd.pop3.client import Session
from fetchd.pop3.commands import Command
from fetchd.pop3.connect import Endpoint, Security, open_session
from fetchd.pop3.inventory import read_listing
from fetchd.pop3.states import State
from fetchd.pop3.transport import Timeouts
from fetchd.testing.server import POP3TestServer
from fetchd.testing.tlsfiles import make_test_ca
from tests.messages import make_message

Start = Callable[..., POP3TestServer]
MESSAGES = [make_message(f"m{i}") for i in range(3)]


def connect(server: POP3TestServer, security: Security = "plain", **kw: object) -> Session:
    return open_session(Endpoint("localhost", server.port, security, **kw))  # type: ignore[arg-type]


def test_server_without_capa_gets_user_pass(pop3_server: Start) -> None:
    server = pop3_server(MESSAGES, capa=False)
    with connect(server) as session:
        assert not session.capabilities.known
        assert session.login("auto", "alice", "secret", "localhost", 0) == "user"
        assert not session.pipelining  # assume nothing (RFC 2449 section 5)
        assert session.stat()[0] == 3
        session.quit()


def test_last_only_server(pop3_server: Start) -> None:
    server = pop3_server(MESSAGES, uidl=False, last=True, capa=False)
    with connect(server) as session:
        session.login("auto", "alice", "secret", "localhost", 0)
        assert session.last() == 0
        session.retr(2, io.BytesIO())
        assert session.last() == 2
        session.rset()
        assert session.last() == 0
        assert not session.exchange(Command("UIDL")).ok
        session.quit()


def test_apop_is_preferred_without_tls(pop3_server: Start) -> None:
    server = pop3_server(MESSAGES, apop=True, sasl=())
    with connect(server) as session:
        assert session.login("auto", "alice", "secret", "localhost", 0) == "apop"
        session.quit()
        sent = [line for side, line in server.transcript if side == "C"]
        assert any(line.startswith("APOP alice ") for line in sent)
        assert not any("secret" in line for line in sent)


def test_wrong_apop_secret_is_an_auth_error(pop3_server: Start) -> None:
    server = pop3_server(MESSAGES, apop=True)
    with connect(server) as session, pytest.raises(AuthError):
        session.login("apop", "alice", "wrong", "localhost", 0)


def test_in_use_is_retry_later_not_auth(pop3_server: Start) -> None:
    server = pop3_server(MESSAGES, in_use=True)
    with connect(server) as session:
        with pytest.raises(ServerBusyError) as caught:
            session.login("user", "alice", "secret", "localhost", 0)
        assert caught.value.code == "IN-USE"
        assert caught.value.retry_later


def test_drop_mid_retr_is_a_network_error(pop3_server: Start) -> None:
    server = pop3_server([make_message("big", "x" * 200_000)], drop_during_retr=1)
    with connect(server) as session:
        session.login("user", "alice", "secret", "localhost", 0)
        with pytest.raises(NetworkError, match="closed the connection"):
            session.retr(1, io.BytesIO())


def test_garbage_reply_is_a_protocol_error(pop3_server: Start) -> None:
    server = pop3_server(MESSAGES, garbage_reply_to="STAT")
    with connect(server) as session:
        session.login("user", "alice", "secret", "localhost", 0)
        with pytest.raises(ProtocolError, match="expected \\+OK or -ERR"):
            session.stat()


def test_stall_hits_the_read_timeout(pop3_server: Start) -> None:
    server = pop3_server(MESSAGES, stall_on="RETR")
    with connect(server, timeouts=Timeouts(connect=5, read=0.5)) as session:
        session.login("user", "alice", "secret", "localhost", 0)
        with pytest.raises(NetworkTimeout):
            session.retr(1, io.BytesIO())


def test_stripped_stls_fails_before_credentials(pop3_server: Start, tmp_path: Path) -> None:
    files = make_test_ca(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.cert_file, files.key_file)
    server = pop3_server(MESSAGES, stls=context, strip_stls=True)
    with pytest.raises(TLSError, match="does not offer STLS"):
        connect(server, "starttls", ca_file=files.ca_file)
    sent = [line for side, line in server.transcript if side == "C"]
    assert not any(line.upper().startswith(("USER", "PASS", "AUTH", "APOP")) for line in sent)


def test_stls_upgrade_then_capa_again(pop3_server: Start, tmp_path: Path) -> None:
    files = make_test_ca(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.cert_file, files.key_file)
    server = pop3_server(MESSAGES, stls=context)
    with connect(server, "starttls", ca_file=files.ca_file) as session:
        assert session.transport.tls_active
        sent = [line for side, line in server.transcript if side == "C"]
        assert sent[:3] == ["CAPA", "STLS", "CAPA"]
        session.login("auto", "alice", "secret", "localhost", 0)
        session.quit()


@pytest.mark.parametrize("mechanism", ["xoauth2", "oauthbearer"])
def test_long_oauth_token_goes_on_a_continuation_line(pop3_server: Start, mechanism: str) -> None:
    token = "ya29." + "t" * 900  # far over the 255-octet AUTH line (RFC 5034 section 4)
    server = pop3_server(MESSAGES, password=token, sasl=("XOAUTH2", "OAUTHBEARER"))
    with connect(server) as session:
        assert session.login(mechanism, "alice", token, "localhost", server.port) == mechanism
        sent = [line for side, line in server.transcript if side == "C"]
        assert sent[1] == f"AUTH {mechanism.upper()}"
        session.quit()


def test_late_capabilities_are_read_after_login(pop3_server: Start) -> None:
    server = pop3_server(MESSAGES, late_capa=True)
    with connect(server) as session:
        assert not session.pipelining
        session.login("auto", "alice", "secret", "localhost", 0)
        assert session.pipelining
        assert "UIDL" in session.capabilities
        session.quit()


def test_transcript_is_redacted(pop3_server: Start) -> None:
    server = pop3_server(MESSAGES, password="s3cr3t-pa55")
    with capture_logs() as logs:
        transcript = pop3_transcript(get_logger(account="work"))
        session = open_session(Endpoint("localhost", server.port, "plain"), transcript=transcript)
        session.login("user", "alice", "s3cr3t-pa55", "localhost", 0)
    texts = [entry["text"] for entry in logs if entry["event"] == "pop3"]
    assert "PASS ***" in texts
    assert not any("s3cr3t-pa55" in text for text in texts)
    session.close()


def test_transcript_logs_body_sizes_not_bodies(pop3_server: Start) -> None:
    server = pop3_server(MESSAGES)
    with capture_logs() as logs:
        session = open_session(
            Endpoint("localhost", server.port, "plain"),
            transcript=pop3_transcript(get_logger(account="work")),
        )
        session.login("user", "alice", "secret", "localhost", 0)
        session.retr(1, io.BytesIO())
        session.quit()
    retr = [e for e in logs if e["event"] == "pop3" and e.get("octets") is not None]
    assert retr
    assert retr[-1]["octets"] == len(MESSAGES[0])
    assert all("Subject" not in e["text"] for e in logs if e["event"] == "pop3")


def test_last_against_popa3d(popa3d: Any) -> None:
    """popa3d is a real server that still answers LAST (RFC 1460)."""
    popa3d.deliver(MESSAGES)
    with open_session(Endpoint("127.0.0.1", popa3d.port, "plain")) as session:
        assert not session.capabilities.known  # popa3d has no CAPA
        session.login("auto", popa3d.user, popa3d.password, "127.0.0.1", popa3d.port)
        assert session.last() == 0
        session.retr(2, io.BytesIO())
        assert session.last() == 2
        session.rset()
        assert session.last() == 0
        session.quit()


# -- a server out of step, endless or slow ----------------------------------------

SIZED = [make_message("one", "a" * 100), make_message("two", "b" * 300)]


def logged_in(server: POP3TestServer, **kw: object) -> Session:
    session = connect(server, **kw)
    session.login("user", "alice", "secret", "localhost", 0)
    return session


def test_reply_sent_twice_lock_step_never_reaches_the_next_command(pop3_server: Start) -> None:
    server = pop3_server(SIZED, repeat_reply_to="RETR")
    with logged_in(server) as session:
        sink = io.BytesIO()
        session.retr(1, sink)
        with pytest.raises(ProtocolError, match="nobody asked for"):
            session.retr(2, io.BytesIO())
        assert ("C", "RETR 2") not in server.transcript


def test_reply_sent_twice_pipelined_is_a_size_mismatch(pop3_server: Start) -> None:
    server = pop3_server(SIZED, repeat_reply_to="RETR")
    with logged_in(server) as session:
        assert session.pipelining
        sizes = session.list()
        replies = session.pipelined([Command.retr(1), Command.retr(2)])
        first = io.BytesIO()
        next(replies).check("RETR").read_into(first, expect=sizes[1])
        assert first.getvalue() == SIZED[0]
        second = next(replies)  # really RETR 1's copy
        with pytest.raises(SizeMismatchError, match="may belong to another command"):
            second.read_into(io.BytesIO(), expect=sizes[2])


def fetch_then_check(session: Session, numbers: list[int]) -> list[bytes]:
    bodies = []
    for reply in session.pipelined([Command.retr(n) for n in numbers]):
        sink = io.BytesIO()
        reply.check("RETR").read_into(sink, expect=100)
        bodies.append(sink.getvalue())
    # Before the batch counts as fetched: a lock-step marker (a late extra reply
    # arrives before its answer), then nothing may be left over.
    session.list_one(numbers[-1])
    session.ensure_synchronized()
    return bodies


def test_equal_sized_reply_sent_twice_pipelined_fails_the_batch(pop3_server: Start) -> None:
    # Same size: the copy passes as RETR 2's body, but the real RETR 2 reply is
    # then one too many, so the batch fails before anything is recorded.
    same = [b"a" * 98 + b"\r\n", b"b" * 98 + b"\r\n"]
    server = pop3_server(same, repeat_reply_to="RETR")
    with logged_in(server) as session, pytest.raises(ProtocolError):
        fetch_then_check(session, [1, 2])


def test_reply_sent_twice_with_equal_sizes_is_caught_after_the_batch(pop3_server: Start) -> None:
    same = [make_message("one", "a" * 100), make_message("two", "b" * 100)]
    server = pop3_server(same, repeat_reply_to="LIST")
    with logged_in(server) as session:
        assert session.list_one(1) > 0
        with pytest.raises(ProtocolError, match="nobody asked for"):
            session.ensure_synchronized()


@pytest.mark.parametrize("command", ["UIDL", "LIST"])
def test_endless_listing_ends_in_reply_too_long(pop3_server: Start, command: str) -> None:
    server = pop3_server(SIZED, endless_reply_to=command)
    with logged_in(server) as session, pytest.raises(ReplyTooLongError, match=command):
        read_listing(session)


def test_endless_capa_ends_in_reply_too_long(pop3_server: Start) -> None:
    server = pop3_server(SIZED, endless_reply_to="CAPA")
    with pytest.raises(ReplyTooLongError, match="CAPA"):
        connect(server)


def test_endless_top_for_digests_ends_in_reply_too_long(pop3_server: Start) -> None:
    server = pop3_server(SIZED, uidl=False, endless_reply_to="TOP")
    with logged_in(server) as session, pytest.raises(ReplyTooLongError, match="TOP"):
        read_listing(session)


def test_endless_sasl_challenges_are_a_protocol_error(pop3_server: Start) -> None:
    server = pop3_server(SIZED, endless_sasl=True)
    with connect(server) as session, pytest.raises(ProtocolError, match="SASL"):
        session.login("login", "alice", "secret", "localhost", 0)
    challenges = [line for side, line in server.transcript if side == "C"]
    assert len(challenges) <= 2 + 8 + 1  # CAPA, AUTH, answers, "*"


def test_trickled_greeting_hits_its_deadline(pop3_server: Start) -> None:
    server = pop3_server(SIZED, trickle=("GREETING", 0.05))
    started = time.monotonic()
    with pytest.raises(NetworkTimeout, match="the greeting did not arrive in time"):
        connect(server, timeouts=Timeouts(connect=5, read=0.5))
    assert time.monotonic() - started < 2


def test_trickled_body_hits_its_deadline(
    pop3_server: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client, "MIN_RATE", 1000)  # so that 100 octets may take 0.1 s more
    server = pop3_server(SIZED, trickle=("RETR", 0.01))
    with logged_in(server, timeouts=Timeouts(connect=5, read=0.3)) as session:
        started = time.monotonic()
        with pytest.raises(NetworkTimeout, match="RETR 1 did not arrive in time"):
            session.retr(1, io.BytesIO(), expect=session.list_one(1))
        assert time.monotonic() - started < 2
        assert session.state is State.ERROR


def test_trickled_body_without_a_size_keeps_the_minimum_rate(pop3_server: Start) -> None:
    server = pop3_server(SIZED, trickle=("RETR", 0.01))
    with logged_in(server, timeouts=Timeouts(connect=5, read=0.3)) as session:
        started = time.monotonic()
        with pytest.raises(NetworkTimeout, match="did not arrive in time"):
            session.retr(1, io.BytesIO())
        assert time.monotonic() - started < 2


def test_slow_but_steady_body_within_its_deadline_is_read(pop3_server: Start) -> None:
    small = [make_message("s", "x")]
    server = pop3_server(small, trickle=("TOP", 0.001))
    with logged_in(server, timeouts=Timeouts(connect=5, read=2)) as session:
        sink = io.BytesIO()
        session.top(1, 0, sink, limit=4096)
        assert sink.getvalue().startswith(b"From:") or b"Subject" in sink.getvalue()


def test_trickled_tls_handshake_is_bounded(tmp_path: Path) -> None:
    files = make_test_ca(tmp_path)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = listener.accept()
        with conn:
            while not stop.wait(0.05):
                conn.sendall(b"\x16")  # a TLS record type, byte by byte, forever

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        with pytest.raises((NetworkTimeout, TLSError)):
            open_session(
                Endpoint("localhost", port, "tls", ca_file=files.ca_file, timeouts=Timeouts(0.5, 5))
            )
        assert time.monotonic() - started < 2
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=2)


def test_reply_sent_twice_over_tls_is_caught(pop3_server: Start, tmp_path: Path) -> None:
    files = make_test_ca(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.cert_file, files.key_file)
    server = pop3_server(SIZED, tls_context=context, repeat_reply_to="NOOP")
    with connect(server, "tls", ca_file=files.ca_file) as session:
        session.login("user", "alice", "secret", "localhost", 0)
        session.noop()
        with pytest.raises(ProtocolError, match="nobody asked for"):
            session.ensure_synchronized()


def test_in_step_tls_session_is_synchronized(pop3_server: Start, tmp_path: Path) -> None:
    # TLS 1.3 session tickets make the socket readable without application data.
    files = make_test_ca(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.cert_file, files.key_file)
    server = pop3_server(SIZED, tls_context=context)
    with connect(server, "tls", ca_file=files.ca_file) as session:
        session.ensure_synchronized()
        session.login("user", "alice", "secret", "localhost", 0)
        session.ensure_synchronized()
        assert session.stat()[0] == 2
        session.quit()
