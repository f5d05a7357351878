"""The POP3 client against our scriptable server: what Dovecot cannot do."""

from __future__ import annotations

import io
import ssl
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
    ServerBusyError,
    TLSError,
)
from fetchd.log import get_logger, pop3_transcript
from fetchd.pop3.client import Session
from fetchd.pop3.commands import Command
from fetchd.pop3.connect import Endpoint, Security, open_session
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
