"""The sans-IO core, byte by byte: no sockets anywhere in this file."""

from __future__ import annotations

import inspect

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fetchd.errors import NetworkError, ProtocolError, UsageError
from fetchd.pop3 import commands, core, events, replies, states
from fetchd.pop3.commands import Command
from fetchd.pop3.core import MAX_SASL_CHALLENGES, Connection, parse_response_code
from fetchd.pop3.events import NEED_DATA, Continuation, Data, EndOfData, Event, Response
from fetchd.pop3.states import State

GREETING = b"+OK Dovecot ready.\r\n"


def stuff(body: bytes) -> bytes:
    """What a server sends for ``body``: dot-stuffed and terminated (RFC 1939 section 3)."""
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    lines = body.split(b"\r\n")
    stuffed = b"\r\n".join(b"." + line if line.startswith(b".") else line for line in lines)
    return stuffed + b".\r\n"


def feed(conn: Connection, data: bytes, chunk: int | None = None) -> list[Event]:
    """Feed ``data`` whole or in ``chunk``-sized pieces; collect every event."""
    events: list[Event] = []
    pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(len(data))[::chunk]]
    for piece in filter(None, pieces):  # b"" would mean "the server closed"
        conn.receive_data(piece)
        while (event := conn.next_event()) is not NEED_DATA:
            assert not isinstance(event, type(NEED_DATA))
            events.append(event)
    return events


def body_of(events: list[Event]) -> bytes:
    return b"".join(event.data for event in events if isinstance(event, Data))


def in_transaction() -> Connection:
    conn = Connection()
    feed(conn, GREETING)
    conn.send(Command("USER", ("alice",)))
    feed(conn, b"+OK\r\n")
    conn.send(Command("PASS", ("secret",)))
    feed(conn, b"+OK Logged in.\r\n")
    assert conn.state is State.TRANSACTION
    return conn


def test_greeting_moves_to_authorization() -> None:
    conn = Connection()
    assert feed(conn, GREETING) == [Response(True, "Dovecot ready.")]
    assert conn.state is State.AUTHORIZATION


def test_negative_greeting_closes() -> None:
    conn = Connection()
    [event] = feed(conn, b"-ERR [SYS/TEMP] overloaded\r\n")
    assert isinstance(event, Response)
    assert (event.ok, event.code) == (False, "SYS/TEMP")
    assert conn.state is State.CLOSED


@pytest.mark.parametrize("chunk", [None, 1, 2, 3, 7])
def test_retr_body_is_unstuffed(chunk: int | None) -> None:
    conn = in_transaction()
    conn.send(Command("RETR", ("1",)))
    body = b"Subject: x\r\n\r\n.hidden\r\n..two\r\nend\r\n"
    events = feed(conn, b"+OK 40 octets\r\n" + stuff(body), chunk)
    assert events[0] == Response(True, "40 octets", command="RETR")
    assert events[-1] == EndOfData("RETR")
    assert body_of(events) == body


def test_terminator_split_across_reads_is_not_mistaken() -> None:
    conn = in_transaction()
    conn.send(Command("RETR", ("1",)))
    events = feed(conn, b"+OK\r\nline\r\n.")
    assert body_of(events) == b"line\r\n"
    assert not any(isinstance(event, EndOfData) for event in events)
    events = feed(conn, b".more\r\n.\r\n")
    assert body_of(events) == b".more\r\n"
    assert events[-1] == EndOfData("RETR")


def test_err_to_multiline_command_has_no_body() -> None:
    conn = in_transaction()
    conn.send(Command("RETR", ("9",)))
    conn.send(Command("NOOP"))
    events = feed(conn, b"-ERR no such message\r\n+OK\r\n")
    assert [type(e) for e in events] == [Response, Response]
    assert conn.pending == 0


def test_pipelined_replies_are_matched_in_order() -> None:
    conn = in_transaction()
    for number in ("1", "2"):
        conn.send(Command("RETR", (number,)))
    conn.send(Command("DELE", ("1",)))
    wire = b"+OK\r\n" + stuff(b"one\r\n") + b"+OK\r\n" + stuff(b"two\r\n") + b"+OK marked\r\n"
    events = feed(conn, wire, 1)
    assert [e.command for e in events if isinstance(e, (Response, EndOfData))] == [
        "RETR",
        "RETR",
        "RETR",
        "RETR",
        "DELE",
    ]


def test_long_line_without_crlf_streams() -> None:
    conn = in_transaction()
    conn.send(Command("RETR", ("1",)))
    line = b"x" * 3_000_000
    events = feed(conn, b"+OK\r\n" + line + b"\r\n.\r\n", 65536)
    assert body_of(events) == line + b"\r\n"
    # streamed: no single chunk holds the whole line
    assert max(len(e.data) for e in events if isinstance(e, Data)) <= 65536 + 5


def test_bare_lf_terminator_is_accepted() -> None:
    conn = in_transaction()
    conn.send(Command("LIST"))
    events = feed(conn, b"+OK\n1 100\n.\n")
    assert body_of(events) == b"1 100\n"
    assert events[-1] == EndOfData("LIST")


def test_illegal_command_in_state_is_refused() -> None:
    conn = Connection()
    feed(conn, GREETING)
    with pytest.raises(UsageError, match="not allowed in the AUTHORIZATION"):
        conn.send(Command("RETR", ("1",)))
    with pytest.raises(UsageError):
        conn.send(Command("PASS", ("x",)))  # PASS only after USER


def test_no_pipelining_across_state_change() -> None:
    conn = Connection()
    feed(conn, GREETING)
    conn.send(Command("USER", ("alice",)))
    with pytest.raises(UsageError, match="wait"):
        conn.send(Command("PASS", ("x",)))


def test_failed_pass_returns_to_authorization() -> None:
    conn = Connection()
    feed(conn, GREETING)
    conn.send(Command("USER", ("alice",)))
    feed(conn, b"+OK\r\n")
    conn.send(Command("PASS", ("wrong",)))
    [event] = feed(conn, b"-ERR [AUTH] Authentication failed.\r\n")
    assert isinstance(event, Response)
    assert event.code == "AUTH"
    assert conn.state is State.AUTHORIZATION


def test_quit_in_transaction_enters_update_then_closed() -> None:
    conn = in_transaction()
    conn.send(Command("QUIT"))
    assert conn.state is State.UPDATE
    feed(conn, b"+OK Logging out, messages deleted.\r\n")
    assert conn.state is State.CLOSED


def test_sasl_continuation_and_response() -> None:
    conn = Connection()
    feed(conn, GREETING)
    conn.send(Command("AUTH", ("LOGIN",)))
    assert feed(conn, b"+ VXNlcm5hbWU6\r\n") == [Continuation("VXNlcm5hbWU6")]
    assert conn.send_sasl_response("YWxpY2U=") == b"YWxpY2U=\r\n"
    assert feed(conn, b"+ \r\n") == [Continuation("")]
    conn.send_sasl_response("c2VjcmV0")
    feed(conn, b"+OK Logged in.\r\n")
    assert conn.state is State.TRANSACTION


def test_data_after_stls_is_an_injection() -> None:
    conn = Connection()
    feed(conn, GREETING)
    conn.send(Command("STLS"))
    with pytest.raises(ProtocolError, match="after accepting STLS"):
        feed(conn, b"+OK Begin TLS.\r\n+OK injected\r\n")


@pytest.mark.parametrize(
    "garbage",
    [b"HTTP/1.1 400 Bad Request\r\n", b"+OKAY\r\n", b"\x00\x01\r\n", b"-ERROR x\r\n"],
)
def test_garbage_status_is_a_protocol_error_and_sticky(garbage: bytes) -> None:
    conn = in_transaction()
    conn.send(Command("STAT"))
    with pytest.raises(ProtocolError):
        feed(conn, garbage)
    assert conn.state is State.ERROR
    with pytest.raises(ProtocolError):
        conn.next_event()
    with pytest.raises(UsageError):
        conn.send(Command("NOOP"))


def test_overlong_status_line_is_refused() -> None:
    conn = in_transaction()
    conn.send(Command("STAT"))
    with pytest.raises(ProtocolError, match="longer"):
        feed(conn, b"+OK " + b"9" * 9000)


def test_unsolicited_data_is_refused() -> None:
    conn = in_transaction()
    with pytest.raises(ProtocolError, match="nobody asked"):
        feed(conn, b"+OK surprise\r\n")


def test_close_mid_body_is_a_network_error() -> None:
    conn = in_transaction()
    conn.send(Command("RETR", ("1",)))
    feed(conn, b"+OK\r\npartial line")
    conn.receive_data(b"")
    with pytest.raises(NetworkError, match="RETR"):
        conn.next_event()


def test_reply_then_close_is_still_read() -> None:
    conn = Connection()
    conn.receive_data(b"-ERR [IN-USE] locked\r\n")
    conn.receive_data(b"")
    event = conn.next_event()
    assert isinstance(event, Response)
    assert event.code == "IN-USE"


def test_command_injection_is_refused() -> None:
    with pytest.raises(UsageError):
        Command("USER", ("alice\r\nDELE 1",))
    with pytest.raises(UsageError):
        Command("USER", ("a" * 300,))
    with pytest.raises(UsageError):
        Command("XYZZY")


def test_redaction_hides_secrets() -> None:
    assert Command("PASS", ("hunter2 with space",)).redacted() == "PASS ***"
    assert "d41d8" not in Command("APOP", ("alice", "d41d8cd98f00")).redacted()
    assert Command("AUTH", ("PLAIN", "AGFsaWNlAHNlY3JldA==")).redacted() == "AUTH PLAIN ***"


@pytest.mark.parametrize(
    ("text", "code"),
    [("[IN-USE] busy", "IN-USE"), ("[sys/temp] x", "SYS/TEMP"), ("no code", None), ("[]", None)],
)
def test_response_codes(text: str, code: str | None) -> None:
    assert parse_response_code(text) == code


# -- properties ---------------------------------------------------------------

crlf_bodies = st.lists(st.binary().map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))).map(
    lambda lines: b"".join(line + b"\r\n" for line in lines)
)

#: Lines of dots, letters and dots, as text mail has them (st.binary rarely starts one with ".").
dotted_bodies = st.lists(
    st.lists(st.sampled_from([b".", b"..", b"a", b"a.", b" "]), max_size=6).map(b"".join)
).map(lambda lines: b"".join(line + b"\r\n" for line in lines))


@given(body=st.one_of(crlf_bodies, dotted_bodies), chunk=st.integers(min_value=1, max_value=64))
def test_dot_stuffing_round_trips_at_any_split(body: bytes, chunk: int) -> None:
    conn = in_transaction()
    conn.send(Command("RETR", ("1",)))
    events = feed(conn, b"+OK\r\n" + stuff(body), chunk)
    assert body_of(events) == body
    assert events[-1] == EndOfData("RETR")


@given(wire=st.binary(max_size=200), chunk=st.integers(min_value=1, max_value=16))
def test_garbage_only_ever_raises_protocol_error(wire: bytes, chunk: int) -> None:
    conn = in_transaction()
    conn.send(Command("RETR", ("1",)))
    conn.send(Command("STAT"))
    whole: list[Event] | Exception
    try:
        whole = feed(conn, wire)
    except ProtocolError as exc:
        whole = exc
    split_conn = in_transaction()
    split_conn.send(Command("RETR", ("1",)))
    split_conn.send(Command("STAT"))
    if isinstance(whole, ProtocolError):
        with pytest.raises(ProtocolError):
            feed(split_conn, wire, chunk)
        return
    split = feed(split_conn, wire, chunk)
    # split input gives the same replies and the same body bytes
    assert [e for e in split if not isinstance(e, Data)] == [
        e for e in whole if not isinstance(e, Data)
    ]
    assert body_of(split) == body_of(whole)


# -- synchronization, SASL round-trips, the state table ------------------------


def test_extra_reply_is_caught_even_when_no_event_is_asked_for() -> None:
    conn = in_transaction()
    conn.send(Command("NOOP"))
    conn.receive_data(b"+OK\r\n+OK again\r\n")
    assert isinstance(conn.next_event(), Response)
    assert conn.buffered == len(b"+OK again\r\n")
    with pytest.raises(ProtocolError, match="nobody asked for"):
        conn.check_synchronized()
    assert conn.state is State.ERROR


def test_check_synchronized_passes_while_in_step() -> None:
    conn = in_transaction()
    conn.check_synchronized()
    conn.send(Command("NOOP"))
    conn.receive_data(b"+OK\r\n")
    conn.check_synchronized()  # a reply is due: buffered bytes are its
    assert isinstance(conn.next_event(), Response)
    conn.check_synchronized()


def sasl_connection() -> Connection:
    conn = Connection()
    feed(conn, GREETING)
    conn.send(Command("AUTH", ("LOGIN",)))
    return conn


def test_sasl_challenges_are_bounded() -> None:
    conn = sasl_connection()
    for _ in range(MAX_SASL_CHALLENGES):
        assert feed(conn, b"+ bW9yZQ==\r\n") == [Continuation("bW9yZQ==")]
        conn.send_sasl_response("YQ==")
    with pytest.raises(ProtocolError, match=f"more than {MAX_SASL_CHALLENGES} SASL"):
        feed(conn, b"+ bW9yZQ==\r\n")
    assert conn.state is State.ERROR


@pytest.mark.parametrize("chunk", [None, 1])
def test_challenge_after_cancel_is_a_protocol_error(chunk: int | None) -> None:
    conn = sasl_connection()
    feed(conn, b"+ \r\n", chunk)
    conn.send_sasl_response("*")
    with pytest.raises(ProtocolError, match="after the client cancelled"):
        feed(conn, b"+ again\r\n", chunk)


def test_second_challenge_before_the_answer_is_refused() -> None:
    conn = sasl_connection()
    with pytest.raises(ProtocolError, match="before the client answered"):
        feed(conn, b"+ one\r\n+ two\r\n")


def test_cancel_then_err_ends_the_exchange() -> None:
    conn = sasl_connection()
    feed(conn, b"+ \r\n")
    conn.send_sasl_response("*")
    [event] = feed(conn, b"-ERR cancelled\r\n")
    assert isinstance(event, Response)
    assert conn.state is State.AUTHORIZATION


def test_commands_are_known_from_the_state_table_alone() -> None:
    assert frozenset().union(*states.LEGAL_COMMANDS.values()) == states.COMMANDS
    for name in states.COMMANDS:
        Command(name)  # every command the table knows can be built
    assert states.state_after_send(State.TRANSACTION, "QUIT") is State.UPDATE
    assert states.state_after_send(State.AUTHORIZATION, "QUIT") is State.AUTHORIZATION


def test_command_constructors() -> None:
    assert Command.retr(3).to_bytes() == b"RETR 3\r\n"
    assert Command.top(2, 0).to_bytes() == b"TOP 2 0\r\n"
    assert Command.list().to_bytes() == b"LIST\r\n"
    assert Command.list(7).multiline is False
    assert Command.uidl().multiline is True
    with pytest.raises(UsageError):
        Command.dele(0)


def test_core_modules_import_no_io() -> None:
    for module in (core, states, commands, events, replies):
        source = inspect.getsource(module)
        for name in ("socket", "ssl", "time", "select", "logging"):
            assert f"import {name}" not in source, (module.__name__, name)
