"""The scriptable POP3 server: correct RFC 1939 behaviour, and each injected fault."""

from __future__ import annotations

import base64
import hashlib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fetchd.testing.server import Mailbox, POP3TestServer, ServerOptions
from fetchd.testing.tlsfiles import TLSFiles, make_test_ca, make_unrelated_ca
from tests.messages import make_large_message, make_message, make_raw_message
from tests.testing.rawpop import RawPOP3, client_context

Start = Callable[..., POP3TestServer]

ONE = make_message("one", "first\n")
TWO = make_message("two", "second\n")
THREE = make_message("three", "third\n")


def connect(server: POP3TestServer, tls: ssl.SSLContext | None = None) -> RawPOP3:
    return RawPOP3(server.host, server.port, tls=tls)


def logged_in(server: POP3TestServer) -> RawPOP3:
    client = connect(server)
    greeting, login = client.status(), client.login()
    if not (greeting.startswith("+OK") and login.startswith("+OK")):
        client.close()
        raise AssertionError(f"login failed: {greeting!r} {login!r}")
    return client


def logged_in_after_drop(server: POP3TestServer) -> RawPOP3:
    """Log in after a session was dropped: the server answers IN-USE until it notices."""
    deadline = time.monotonic() + 10
    while True:
        client = connect(server)
        greeting, login = client.status(), client.login()
        if login.startswith("+OK"):
            return client
        client.close()
        if "[IN-USE]" not in login or time.monotonic() > deadline:
            raise AssertionError(f"login failed: {greeting!r} {login!r}")
        time.sleep(0.05)


def served(message: bytes) -> bytes:
    """What RETR must deliver for ``message``: CRLF line ends, ending in CRLF."""
    out = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return out if out.endswith(b"\r\n") or not out else out + b"\r\n"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_test_ca(tmp_path_factory.mktemp("tls"))


def server_context(files: TLSFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.cert_file, files.key_file)
    return context


# -- AUTHORIZATION ----------------------------------------------------------------


def test_greeting_and_default_capabilities(pop3_server: Start) -> None:
    server = pop3_server([ONE])
    with connect(server) as client:
        assert client.status().startswith("+OK")
        status, caps = client.multi("CAPA")
    assert status.startswith("+OK")
    for cap in ("TOP", "UIDL", "PIPELINING", "USER", "SASL PLAIN LOGIN", "RESP-CODES"):
        assert cap in caps
    assert "STLS" not in caps


def test_old_server_without_capa(pop3_server: Start) -> None:
    server = pop3_server([ONE], capa=False)
    with connect(server) as client:
        client.status()
        assert client.cmd("CAPA").startswith("-ERR")
        assert client.login().startswith("+OK")


def test_without_uidl_and_top(pop3_server: Start) -> None:
    server = pop3_server([ONE], uidl=False, top=False)
    with logged_in(server) as client:
        _, caps = client.multi("CAPA")
        assert "UIDL" not in caps
        assert "TOP" not in caps
        assert client.cmd("UIDL").startswith("-ERR")
        assert client.cmd("UIDL 1").startswith("-ERR")
        assert client.cmd("TOP 1 0").startswith("-ERR")


def test_wrong_password_carries_the_configured_code(pop3_server: Start) -> None:
    server = pop3_server([ONE])
    with connect(server) as client:
        client.status()
        assert client.login("alice", "wrong") == "-ERR [AUTH] invalid user name or password"
        assert client.login("mallory", "secret").startswith("-ERR [AUTH]")
        assert client.cmd("STAT").startswith("-ERR")  # still not logged in
    server.options.auth_fail_code = None
    with connect(server) as client:
        client.status()
        assert client.login("alice", "wrong") == "-ERR invalid user name or password"


def test_pass_without_user_and_commands_out_of_state(pop3_server: Start) -> None:
    server = pop3_server([ONE])
    with connect(server) as client:
        client.status()
        assert client.cmd("PASS secret").startswith("-ERR")
        assert client.cmd("RETR 1") == "-ERR command not valid in this state"
        assert client.cmd("XYZZY") == "-ERR unknown command"
        assert client.login().startswith("+OK")
        assert client.cmd("USER alice") == "-ERR command not valid in this state"


def test_commands_are_case_insensitive(pop3_server: Start) -> None:
    server = pop3_server([ONE])
    with connect(server) as client:
        client.status()
        assert client.cmd("user alice").startswith("+OK")
        assert client.cmd("pAsS secret").startswith("+OK")
        assert client.cmd("stat") == f"+OK 1 {len(served(ONE))}"


def test_command_line_over_255_octets_is_refused(pop3_server: Start) -> None:
    server = pop3_server([ONE])
    with logged_in(server) as client:
        assert client.cmd("NOOP " + "x" * 248).startswith("+OK")  # 255 with CRLF
        assert client.cmd("NOOP " + "x" * 249).startswith("-ERR")
        assert client.cmd("NOOP " + "x" * 100_000).startswith("-ERR")
        assert client.cmd("STAT").startswith("+OK 1 ")


def test_user_command_disabled(pop3_server: Start) -> None:
    server = pop3_server([ONE], user_command=False)
    with connect(server) as client:
        client.status()
        _, caps = client.multi("CAPA")
        assert "USER" not in caps
        assert client.cmd("USER alice").startswith("-ERR")
        assert client.cmd("PASS secret").startswith("-ERR")


def test_apop(pop3_server: Start) -> None:
    server = pop3_server([ONE], apop=True)
    with connect(server) as client:
        greeting = client.status()
        timestamp = greeting[greeting.index("<") : greeting.index(">") + 1]
        assert "@" in timestamp
        wrong = hashlib.md5((timestamp + "wrong").encode()).hexdigest()
        assert client.cmd(f"APOP alice {wrong}").startswith("-ERR [AUTH]")
        digest = hashlib.md5((timestamp + "secret").encode()).hexdigest()
        assert client.cmd(f"APOP alice {digest}").startswith("+OK")
    with connect(server) as client:
        assert client.status() != greeting  # a fresh timestamp per greeting
    server.options.apop = False
    with connect(server) as client:
        assert "<" not in client.status()
        assert client.cmd(f"APOP alice {digest}").startswith("-ERR")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_sasl_plain_with_initial_response_and_as_continuation(pop3_server: Start) -> None:
    server = pop3_server([ONE])
    with connect(server) as client:
        client.status()
        assert client.cmd("AUTH PLAIN " + b64(b"\0alice\0wrong")).startswith("-ERR [AUTH]")
        assert client.cmd("AUTH PLAIN " + b64(b"\0alice\0secret")).startswith("+OK")
        assert client.cmd("QUIT").startswith("+OK")  # frees the maildrop before the reply
    with connect(server) as client:
        client.status()
        assert client.cmd("AUTH PLAIN") == "+ "
        assert client.cmd(b64(b"\0alice\0secret")).startswith("+OK")


def test_sasl_login_cancel_and_unknown_mechanism(pop3_server: Start) -> None:
    server = pop3_server([ONE])
    with connect(server) as client:
        client.status()
        assert client.cmd("AUTH LOGIN") == "+ " + b64(b"Username:")
        assert client.cmd("*") == "-ERR authentication cancelled"
        assert client.cmd("AUTH CRAM-MD5").startswith("-ERR")
        assert client.cmd("AUTH XOAUTH2 " + b64(b"x")).startswith("-ERR")  # not offered
        assert client.cmd("AUTH LOGIN " + b64(b"alice")) == "+ " + b64(b"Password:")
        assert client.cmd(b64(b"secret")).startswith("+OK")


def test_sasl_xoauth2_long_token_on_continuation_line(pop3_server: Start) -> None:
    token = "t" * 2000  # far over the 255-octet command limit (RFC 5034 section 4)
    server = pop3_server([ONE], sasl=("XOAUTH2",), password=token)
    with connect(server) as client:
        client.status()
        _, caps = client.multi("CAPA")
        assert "SASL XOAUTH2" in caps
        assert client.cmd("AUTH XOAUTH2") == "+ "
        response = b64(f"user=alice\x01auth=Bearer {token}\x01\x01".encode())
        assert client.cmd(response).startswith("+OK")


def test_sasl_bearer_failure_sends_error_challenge_first(pop3_server: Start) -> None:
    server = pop3_server([ONE], sasl=("OAUTHBEARER", "XOAUTH2"), password="good-token")
    with connect(server) as client:
        client.status()
        bad = b64(b"n,a=alice,\x01auth=Bearer bad-token\x01\x01")
        challenge = client.cmd("AUTH OAUTHBEARER " + bad)
        assert challenge.startswith("+ ")
        assert b"invalid_token" in base64.b64decode(challenge[2:])
        assert client.cmd(b64(b"\x01")).startswith("-ERR [AUTH]")
        good = b64(b"n,a=alice,\x01auth=Bearer good-token\x01\x01")
        assert client.cmd("AUTH OAUTHBEARER " + good).startswith("+OK")


def test_in_use_and_the_maildrop_lock(pop3_server: Start) -> None:
    server = pop3_server([ONE])
    with logged_in(server) as first, connect(server) as second:
        second.status()
        assert second.login().startswith("-ERR [IN-USE]")
        assert first.cmd("QUIT").startswith("+OK")
        assert second.login().startswith("+OK")  # the lock went with the first session
    server.options.in_use = True
    with connect(server) as client:
        client.status()
        assert client.login().startswith("-ERR [IN-USE]")


def test_dropped_session_releases_the_lock(pop3_server: Start) -> None:
    server = pop3_server([ONE])
    logged_in(server).close()
    # The server notices the drop when it next reads; until then it answers IN-USE.
    deadline = time.monotonic() + 10
    replies = []
    while not replies or (replies[-1].startswith("-ERR") and time.monotonic() < deadline):
        with connect(server) as client:
            client.status()
            replies.append(client.login())
            if replies[-1].startswith("+OK"):
                client.cmd("QUIT")  # or this session would hold the lock in turn
    assert replies[-1].startswith("+OK"), replies
    assert all("[IN-USE]" in reply for reply in replies[:-1]), replies


def test_login_delay(pop3_server: Start) -> None:
    server = pop3_server([ONE], login_delay=60)
    with logged_in(server) as client:
        _, caps = client.multi("CAPA")
        assert "LOGIN-DELAY 60" in caps
        client.cmd("QUIT")
    with connect(server) as client:
        client.status()
        assert client.login().startswith("-ERR [LOGIN-DELAY]")


def test_expire_and_late_capabilities(pop3_server: Start) -> None:
    server = pop3_server([ONE], expire="0", late_capa=True)
    with connect(server) as client:
        client.status()
        _, before = client.multi("CAPA")
        assert "EXPIRE 0" in before
        assert "TOP" not in before
        assert "PIPELINING" not in before
        assert client.login().startswith("+OK")
        _, after = client.multi("CAPA")
        assert {"TOP", "UIDL", "PIPELINING", "EXPIRE 0"} <= set(after)


# -- TLS --------------------------------------------------------------------------


def test_stls_upgrades_and_verifies(pop3_server: Start, tls: TLSFiles) -> None:
    server = pop3_server([ONE], stls=server_context(tls))
    with connect(server) as client:
        client.status()
        _, caps = client.multi("CAPA")
        assert "STLS" in caps
        assert client.cmd("STLS").startswith("+OK")
        client.starttls(client_context(str(tls.ca_file)))
        _, caps = client.multi("CAPA")
        assert "STLS" not in caps  # RFC 2595 section 4: only once
        assert client.cmd("STLS").startswith("-ERR")
        assert client.login().startswith("+OK")
        assert client.cmd("STAT").startswith("+OK 1")


def test_stripping_server_hides_and_refuses_stls(pop3_server: Start, tls: TLSFiles) -> None:
    server = pop3_server([ONE], stls=server_context(tls), strip_stls=True)
    with connect(server) as client:
        client.status()
        _, caps = client.multi("CAPA")
        assert "STLS" not in caps
        assert client.cmd("STLS").startswith("-ERR")


def test_implicit_tls_listener(pop3_server: Start, tls: TLSFiles, tmp_path: Path) -> None:
    server = pop3_server([ONE], tls_context=server_context(tls))
    with connect(server, tls=client_context(str(tls.ca_file))) as client:
        assert client.status().startswith("+OK")
        assert client.login().startswith("+OK")
    other = make_unrelated_ca(tmp_path / "other")
    with pytest.raises(ssl.SSLCertVerificationError):
        connect(server, tls=client_context(str(other.ca_file)))


def test_certificate_for_another_name_fails_hostname_check(
    pop3_server: Start, tmp_path: Path
) -> None:
    files = make_test_ca(tmp_path, "mail.example.net", ip_addresses=())
    server = pop3_server([ONE], tls_context=server_context(files))
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        connect(server, tls=client_context(str(files.ca_file)))


# -- TRANSACTION ------------------------------------------------------------------


def test_stat_list_and_retr_agree_on_sizes(pop3_server: Start) -> None:
    messages = [ONE, b"Subject: lf\n\nbare\nlf\n", b"Subject: no end\r\n\r\nno newline"]
    server = pop3_server(messages)
    with logged_in(server) as client:
        total = sum(len(served(m)) for m in messages)
        assert client.cmd("STAT") == f"+OK 3 {total}"
        _, listing = client.multi("LIST")
        assert listing == [f"{n} {len(served(m))}" for n, m in enumerate(messages, 1)]
        assert client.cmd("LIST 2") == f"+OK 2 {len(served(messages[1]))}"
        for number, message in enumerate(messages, 1):
            assert client.cmd(f"RETR {number}").startswith("+OK")
            assert client.body() == served(message)


def test_dot_stuffing_on_the_wire(pop3_server: Start) -> None:
    message = b"Subject: dots\r\n\r\n.\r\n..two\r\n.three\r\nfour.\r\n"
    server = pop3_server([message])
    with logged_in(server) as client:
        client.cmd("RETR 1")
        raw = []
        while (line := client.line()) != b".\r\n":
            raw.append(line)
    assert raw[2:] == [b"..\r\n", b"...two\r\n", b"..three\r\n", b"four.\r\n"]


def test_top(pop3_server: Start) -> None:
    message = b"Subject: top\r\nX: y\r\n\r\nl1\r\nl2\r\nl3\r\n"
    server = pop3_server([message])
    with logged_in(server) as client:
        assert client.cmd("TOP 1 0").startswith("+OK")
        assert client.body() == b"Subject: top\r\nX: y\r\n\r\n"
        client.cmd("TOP 1 2")
        assert client.body() == b"Subject: top\r\nX: y\r\n\r\nl1\r\nl2\r\n"
        client.cmd("TOP 1 99")
        assert client.body() == message
        assert client.cmd("TOP 1").startswith("-ERR")
        assert client.cmd("TOP 2 1").startswith("-ERR")


def test_dele_only_marks_until_quit(pop3_server: Start) -> None:
    server = pop3_server([ONE, TWO, THREE])
    with logged_in(server) as client:
        assert client.cmd("DELE 1").startswith("+OK")
        assert client.cmd("DELE 1") == "-ERR message 1 already deleted"
        assert client.cmd("RETR 1") == "-ERR message 1 already deleted"
        assert client.cmd("LIST 1").startswith("-ERR")
        assert client.cmd("STAT") == f"+OK 2 {len(served(TWO)) + len(served(THREE))}"
        _, listing = client.multi("UIDL")
        assert [line.split()[0] for line in listing] == ["2", "3"]  # numbers are stable
        assert client.cmd("RETR 2").startswith("+OK")
        assert client.body() == served(TWO)
        assert len(server.mailbox.messages) == 3  # nothing expunged yet
        assert client.cmd("QUIT").startswith("+OK")
    assert server.mailbox.messages == [TWO, THREE]


def test_dropped_connection_deletes_nothing(pop3_server: Start) -> None:
    server = pop3_server([ONE, TWO])
    with logged_in(server) as client:
        assert client.cmd("DELE 1").startswith("+OK")
        assert client.cmd("DELE 2").startswith("+OK")
    with logged_in_after_drop(server) as client:
        assert client.cmd("STAT").startswith("+OK 2 ")
    assert server.mailbox.messages == [ONE, TWO]


def test_rset_undeletes(pop3_server: Start) -> None:
    server = pop3_server([ONE, TWO])
    with logged_in(server) as client:
        client.cmd("DELE 1")
        assert client.cmd("RSET").startswith("+OK")
        assert client.cmd("RETR 1").startswith("+OK")
        client.body()
        client.cmd("QUIT")
    assert server.mailbox.messages == [ONE, TWO]


def test_invalid_message_numbers(pop3_server: Start) -> None:
    server = pop3_server([ONE])
    with logged_in(server) as client:
        for command in ("RETR 0", "RETR 2", "RETR x", "RETR", "DELE -1", "UIDL 9"):
            assert client.cmd(command) == "-ERR no such message", command


def test_uidls_stable_across_sessions_and_explicit(pop3_server: Start) -> None:
    server = pop3_server(Mailbox([ONE, TWO], uidls=["a1", "b2"]))
    with logged_in(server) as client:
        assert client.multi("UIDL")[1] == ["1 a1", "2 b2"]
        assert client.cmd("UIDL 2") == "+OK 2 b2"
        client.cmd("DELE 1")
        client.cmd("QUIT")
    server.mailbox.add(THREE, "c3")
    with logged_in(server) as client:
        assert client.multi("UIDL")[1] == ["1 b2", "2 c3"]


def test_duplicate_uidls_expunge_the_right_message(pop3_server: Start) -> None:
    server = pop3_server(Mailbox([ONE, TWO, THREE], uidls=["dup", "dup", "x"]))
    with logged_in(server) as client:
        assert client.multi("UIDL")[1] == ["1 dup", "2 dup", "3 x"]
        client.cmd("DELE 2")
        client.cmd("QUIT")
    assert server.mailbox.messages == [ONE, THREE]


def test_generated_uidls_are_unique_and_stable() -> None:
    mailbox = Mailbox([ONE, ONE])
    mailbox.add(ONE)
    assert len(set(mailbox.ids)) == 3
    first = list(mailbox.ids)
    mailbox.remove(first[0])
    assert mailbox.ids == first[1:]
    with pytest.raises(ValueError, match="same length"):
        Mailbox([ONE], uidls=[])


def test_last_follows_rfc_1460(pop3_server: Start) -> None:
    server = pop3_server([ONE, TWO, THREE], last=True)
    with logged_in(server) as client:
        assert client.cmd("LAST") == "+OK 0"
        client.cmd("RETR 2")
        client.body()
        assert client.cmd("LAST") == "+OK 2"
        client.cmd("TOP 3 0")
        client.body()
        assert client.cmd("LAST") == "+OK 2"  # TOP does not count
        assert client.cmd("RSET").startswith("+OK")
        assert client.cmd("LAST") == "+OK 0"
        client.cmd("RETR 3")
        client.body()
        client.cmd("DELE 1")
        client.cmd("QUIT")
    with logged_in(server) as client:
        assert client.cmd("LAST") == "+OK 2"  # message 3 is number 2 now


def test_last_refused_by_default(pop3_server: Start) -> None:
    server = pop3_server([ONE])
    with logged_in(server) as client:
        assert client.cmd("LAST").startswith("-ERR")


def test_pipelined_commands_are_answered_in_order(pop3_server: Start) -> None:
    server = pop3_server([ONE, TWO, THREE])
    with connect(server) as client:
        client.status()
        client.send(b"USER alice\r\nPASS secret\r\n")
        assert client.status().startswith("+OK")
        assert client.status().startswith("+OK")
        client.send(b"".join(b"RETR %d\r\nLIST %d\r\n" % (n, n) for n in (1, 2, 3)) + b"NOOP\r\n")
        for number, message in enumerate([ONE, TWO, THREE], 1):
            assert client.status().startswith("+OK")
            assert client.body() == served(message)
            assert client.status() == f"+OK {number} {len(served(message))}"
        assert client.status() == "+OK"


def test_gmail_style_slices(pop3_server: Start) -> None:
    messages = [make_message(f"m{i}") for i in range(5)]
    server = pop3_server(messages, max_messages_per_session=2)
    seen = []
    for _ in range(3):
        with logged_in(server) as client:
            status = client.cmd("STAT")
            count = int(status.split()[1])
            for number in range(1, count + 1):
                client.cmd(f"RETR {number}")
                seen.append(client.body())
            client.cmd("QUIT")
    assert seen == [served(m) for m in messages]
    with logged_in(server) as client:
        assert client.cmd("STAT") == "+OK 0 0"


# -- faults -----------------------------------------------------------------------


def test_drop_during_retr(pop3_server: Start) -> None:
    big = make_large_message(200_000)
    server = pop3_server([ONE, big], drop_during_retr=2)
    with logged_in(server) as client:
        client.cmd("RETR 1")
        assert client.body() == served(ONE)
        assert client.cmd("RETR 2").startswith("+OK")
        received = b""
        while chunk := client.line():
            received += chunk
    assert 0 < len(received) < len(served(big))
    assert abs(len(received) - len(served(big)) // 2) < 70_000
    assert server.mailbox.messages == [ONE, big]


def test_garbage_reply(pop3_server: Start) -> None:
    server = pop3_server([ONE], garbage_reply_to="STAT")
    with logged_in(server) as client:
        reply = client.cmd("stat").encode("latin-1")
        assert not reply.startswith((b"+OK", b"-ERR"))
        assert b"\x00" in reply
        assert client.cmd("NOOP") == "+OK"


def test_stall_keeps_the_socket_open_until_stop(pop3_server: Start) -> None:
    server = pop3_server([ONE], stall_on="RETR")
    client = logged_in(server)
    client.sock.settimeout(0.3)
    client.send(b"RETR 1\r\n")
    with pytest.raises(TimeoutError):
        client.sock.recv(1)
    client.sock.settimeout(5)
    server.stop()
    assert client.sock.recv(1) == b""  # stop() ends the stalled session
    client.close()


def test_greeting_delay(pop3_server: Start) -> None:
    server = pop3_server([ONE], greeting_delay=0.3)
    started = time.monotonic()
    with connect(server) as client:
        assert client.status().startswith("+OK")
    assert time.monotonic() - started >= 0.3


def test_lf_only_torture(pop3_server: Start) -> None:
    server = pop3_server([ONE], multiline_lf_only=True)
    with connect(server) as client:
        assert client.line().endswith(b"ready\n")
        client.send(b"USER alice\r\nPASS secret\r\nRETR 1\r\n")
        client.line()
        client.line()
        assert client.line().startswith(b"+OK")
        lines = []
        while (line := client.line()) != b".\n":
            assert not line.endswith(b"\r\n")
            lines.append(line)
    assert b"".join(lines) == ONE.replace(b"\r\n", b"\n")


# -- bookkeeping and scale --------------------------------------------------------


def test_transcript_and_session_count(pop3_server: Start) -> None:
    server = pop3_server([ONE])
    with logged_in(server) as client:
        client.cmd("QUIT")
    with connect(server) as client:
        client.status()
    assert server.sessions == 2
    assert ("C", "USER alice") in server.transcript
    assert ("C", "QUIT") in server.transcript
    assert server.transcript[0] == ("S", "+OK fetchd test server ready")


def test_options_change_between_sessions(pop3_server: Start) -> None:
    server = pop3_server([ONE])
    with logged_in(server) as client:
        assert client.cmd("LAST").startswith("-ERR")
        client.cmd("QUIT")
    server.options.last = True
    with logged_in(server) as client:
        assert client.cmd("LAST") == "+OK 0"


def test_parallel_sessions_on_separate_servers(pop3_server: Start) -> None:
    servers = [pop3_server([make_message(f"s{i}")]) for i in range(4)]
    errors: list[BaseException] = []

    def fetch(server: POP3TestServer) -> None:
        try:
            with logged_in(server) as client:
                client.cmd("RETR 1")
                client.body()
                client.cmd("QUIT")
        except BaseException as exc:  # reported below, in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=fetch, args=(s,)) for s in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [s.sessions for s in servers] == [1, 1, 1, 1]


def test_fifty_megabyte_message(pop3_server: Start) -> None:
    big = make_large_message(50 * 1024 * 1024)
    server = pop3_server([big])
    with logged_in(server) as client:
        size = int(client.cmd("LIST 1").split()[2])
        assert client.cmd("RETR 1").startswith("+OK")
        received = 0
        while True:
            line = client.line()
            if line == b".\r\n":
                break
            received += len(line) - (1 if line.startswith(b"..") else 0)
    assert received == size == len(big)


def test_stop_releases_the_port(pop3_server: Start) -> None:
    server = pop3_server([ONE])
    port = server.port
    server.stop()
    server.stop()  # idempotent
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


def test_context_manager() -> None:
    options = ServerOptions(user="bob", password="pw")
    with POP3TestServer(Mailbox([ONE]), options) as server, connect(server) as client:
        client.status()
        assert client.login("bob", "pw").startswith("+OK")
    with pytest.raises(OSError, match="refused"):
        socket.create_connection((server.host, server.port), timeout=2)


@pytest.fixture(scope="module")
def shared_server() -> Iterator[POP3TestServer]:
    with POP3TestServer() as server:
        yield server


@given(body=st.binary(max_size=3000))
def test_any_body_round_trips(shared_server: POP3TestServer, body: bytes) -> None:
    """Whatever the octets (dots, bare LF or CR, NUL), RETR gives them back, CRLF-normalized."""
    message = make_raw_message("prop", body)
    with shared_server.mailbox.lock:
        shared_server.mailbox.messages.clear()
        shared_server.mailbox.ids.clear()
        shared_server.mailbox.add(message)
    with logged_in(shared_server) as client:
        size = int(client.cmd("LIST 1").split()[2])
        client.cmd("RETR 1")
        content = client.body()
        client.cmd("QUIT")
    assert content == served(message)
    assert size == len(content)
