"""Replies read by the client under caps and checks, over a scripted transport.

Every test feeds the server's bytes whole and in small pieces (down to one
byte): a cap, a size check or a CR split across reads must not depend on how
the bytes arrived.
"""

from __future__ import annotations

import io

import pytest

from fetchd.errors import ProtocolError, ReplyTooLongError, SizeMismatchError, UsageError
from fetchd.pop3.client import (
    CAPA_MAX_LINES,
    HEAD_OCTETS,
    Session,
    listing_caps,
    looks_like_status,
)
from fetchd.pop3.commands import Command
from fetchd.pop3.inventory import compare, read_listing
from fetchd.pop3.states import State
from tests.pop3.scripted import ScriptedTransport, sent, session_after_login, unread

CHUNKS = [None, 1, 2, 3, 7]


def retr(session: Session, **kw: int) -> bytes:
    sink = io.BytesIO()
    session.retr(1, sink, **kw)
    return sink.getvalue()


@pytest.mark.parametrize("chunk", CHUNKS)
def test_body_within_limit_is_read_whole(chunk: int | None) -> None:
    session = session_after_login([b"+OK\r\nabc\r\n.\r\n"], chunk)
    assert retr(session, limit=5) == b"abc\r\n"
    assert session.state is State.TRANSACTION


@pytest.mark.parametrize("chunk", CHUNKS)
def test_limit_stops_reading_and_poisons_the_session(chunk: int | None) -> None:
    wire = b"+OK\r\n" + b"x" * 40 + b"\r\n" + b"never read\r\n.\r\n"
    session = session_after_login([wire], chunk)
    sink = io.BytesIO()
    with pytest.raises(ReplyTooLongError, match="past its cap") as caught:
        session.retr(1, sink, limit=10)
    assert caught.value.limit == 10
    assert len(sink.getvalue()) <= 10  # the chunk that went over is not written
    if chunk is not None:  # reading stopped at the cap: the rest stays on the wire
        assert b"never read" in unread(session)
    assert session.state is State.ERROR
    with pytest.raises(UsageError):
        session.noop()


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize(
    ("body", "sizes"),
    [
        (b"a\r\nb\r\n", [6, 4]),  # CRLF as sent, or LF only
        (b"a\nb\n", [4, 6]),  # bare LF as sent, or CRLF
        (b"a\rb\r\n\r\n", [7, 5]),  # bare CR counts as one octet either way
        (b"a\r\nb\n", [5, 4, 6]),  # mixed: anything in between
    ],
)
# chunk=1 cuts every CRLF between two reads: the CR ends one chunk, the LF starts the next.
def test_expected_size_within_crlf_tolerance(
    chunk: int | None, body: bytes, sizes: list[int]
) -> None:
    for size in sizes:
        session = session_after_login([b"+OK\r\n" + body + b".\r\n"], chunk)
        assert retr(session, expect=size) == body


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize(("body", "size"), [(b"a\r\nb\r\n", 7), (b"a\r\nb\r\n", 3), (b"a\nb\n", 7)])
def test_size_outside_tolerance_is_a_mismatch(chunk: int | None, body: bytes, size: int) -> None:
    session = session_after_login([b"+OK\r\n" + body + b".\r\n"], chunk)
    with pytest.raises(SizeMismatchError, match=f"LIST announced {size}"):
        retr(session, expect=size)
    assert session.state is State.ERROR


@pytest.mark.parametrize("chunk", CHUNKS)
def test_a_size_outside_tolerance_may_be_left_to_the_caller(chunk: int | None) -> None:
    session = session_after_login([b"+OK\r\nabc\r\n.\r\n", b"+OK\r\n"], chunk)
    reply = session.exchange(Command.retr(1))
    sink = io.BytesIO()
    assert reply.read_into(sink, expect=99, strict=False) == 5
    assert (reply.unexpected_size, sink.getvalue()) == (True, b"abc\r\n")
    assert session.exchange(Command("NOOP")).ok  # the session goes on


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"+OK 120 octets\r\nFrom: a\r\n", True),
        (b"-err\r\n", True),
        (b"+OK\n", True),
        (b"+OKAY: header\r\n", False),
        (b"From: +OK\r\n", False),
        (b" +OK\r\n", False),
    ],
)
def test_a_body_that_starts_like_a_status_line_is_told(
    chunk: int | None, body: bytes, status: bool
) -> None:
    session = session_after_login([b"+OK\r\n" + body + b".\r\n"], chunk)
    reply = session.exchange(Command.retr(1))
    reply.read_into(io.BytesIO())
    assert reply.head == body[:HEAD_OCTETS]
    assert looks_like_status(reply.head) is status


@pytest.mark.parametrize("chunk", CHUNKS)
def test_read_all_caps_octets_and_lines(chunk: int | None) -> None:
    listing = b"+OK\r\n" + b"".join(b"%d uid-%d\r\n" % (n, n) for n in range(1, 21)) + b".\r\n"
    session = session_after_login([listing], chunk)
    reply = session.exchange(Command.uidl())
    with pytest.raises(ReplyTooLongError, match="more than 5 lines"):
        reply.read_all(max_octets=10_000, max_lines=5)
    session = session_after_login([listing], chunk)
    reply = session.exchange(Command.uidl())
    with pytest.raises(ReplyTooLongError, match="more than 50 octets"):
        reply.read_all(max_octets=50)


def test_capa_is_capped() -> None:
    body = b"".join(b"X-CAP-%d\r\n" % n for n in range(CAPA_MAX_LINES + 5))
    session = session_after_login([b"+OK\r\n" + body + b".\r\n"], 4096)
    with pytest.raises(ReplyTooLongError):
        session.capa()


def listing_wire(count: int, lines: bytes, uidl: bytes) -> list[bytes]:
    return [b"+OK %d 100\r\n" % count, b"+OK\r\n%s.\r\n" % lines, b"+OK\r\n%s.\r\n" % uidl]


@pytest.mark.parametrize("chunk", CHUNKS)
def test_read_listing_caps_by_stat(chunk: int | None) -> None:
    _, max_lines = listing_caps(2)
    lines = b"".join(b"%d 10\r\n" % n for n in range(1, max_lines + 2))
    session = session_after_login(listing_wire(2, lines, b""), chunk)
    with pytest.raises(ReplyTooLongError, match=f"more than {max_lines} lines"):
        read_listing(session)
    assert b"STAT\r\nLIST\r\n" in sent(session)  # STAT first, to size the caps


@pytest.mark.parametrize("chunk", CHUNKS)
def test_read_listing_keeps_uids_exact(chunk: int | None) -> None:
    uidl = b"1 u\xff\r\n2   u\xfe  \r\n3 a\x0bb\r\n4 c\x0cd\r\n"
    lines = b"1 10\r\n2 20\r\n3 30\r\n4 40\r\n"
    session = session_after_login(listing_wire(4, lines, uidl), chunk)
    listing = read_listing(session)
    assert [m.uid for m in listing.messages] == ["u\udcff", "u\udcfe", "a\x0bb", "c\x0cd"]
    assert [m.uid.encode("utf-8", "surrogateescape") for m in listing.messages][:2] == [
        b"u\xff",
        b"u\xfe",
    ]
    assert [m.size for m in listing.messages] == [10, 20, 30, 40]
    assert any("outside RFC 1939" in warning for warning in listing.warnings)
    assert compare(listing, [["u\udcff"]], []).unknown == listing.messages[1:]


@pytest.mark.parametrize(
    ("lines", "uidl", "error"),
    [
        (b"1 10\r\n1 20\r\n", b"1 a\r\n2 b\r\n", "LIST listing repeats message number 1"),
        (b"1 10\r\n2 20\r\n", b"1 a\r\n1 b\r\n", "UIDL listing repeats message number 1"),
        (b"1 10\r\n2 20\r\n", b"0 a\r\n2 b\r\n", "UIDL listing has message number 0"),
        (b"0 10\r\n2 20\r\n", b"1 a\r\n2 b\r\n", "LIST listing has message number 0"),
    ],
)
def test_listing_numbers_must_be_unique_and_positive(lines: bytes, uidl: bytes, error: str) -> None:
    session = session_after_login(listing_wire(2, lines, uidl))
    with pytest.raises(ProtocolError, match=error):
        read_listing(session)


def test_odd_but_harmless_listings_warn() -> None:
    session = session_after_login(listing_wire(3, b"1 10\r\n2 20 extra\r\n", b"1 a\r\n2 b\r\n"))
    listing = read_listing(session)
    assert [m.uid for m in listing.messages] == ["a", "b"]
    assert any("STAT counts 3" in warning for warning in listing.warnings)
    assert any("extra words" in warning for warning in listing.warnings)


def test_listings_that_disagree_on_numbers_warn_and_keep_uidls_order() -> None:
    wire = listing_wire(3, b"3 30\r\n1 10\r\n", b"1 a\r\n2 b\r\n3 c\r\n")
    listing = read_listing(session_after_login(wire))
    assert [(m.number, m.uid, m.size) for m in listing.messages] == [
        (1, "a", 10),
        (2, "b", 0),  # LIST did not say: no size limit can be applied to it
        (3, "c", 30),
    ]
    assert any("list different message numbers" in warning for warning in listing.warnings)


def test_a_listing_out_of_order_reads_as_in_order() -> None:
    wire = listing_wire(3, b"2 20\r\n1 10\r\n3 30\r\n", b"3 c\r\n1 a\r\n2 b\r\n")
    listing = read_listing(session_after_login(wire))
    assert [(m.number, m.uid, m.size) for m in listing.messages] == [
        (1, "a", 10),
        (2, "b", 20),
        (3, "c", 30),
    ]
    assert not any("different" in warning for warning in listing.warnings)


@pytest.mark.parametrize("chunk", CHUNKS)
def test_list_one_must_answer_the_number_asked(chunk: int | None) -> None:
    session = session_after_login([b"+OK 2 120\r\n", b"+OK 3 300\r\n"], chunk)
    assert session.list_one(2) == 120
    with pytest.raises(ProtocolError, match="about message 3"):
        session.list_one(4)
    assert session.state is State.ERROR


@pytest.mark.parametrize("chunk", CHUNKS)
def test_data_nobody_asked_for_is_caught_before_the_next_command(chunk: int | None) -> None:
    # RETR 1's reply, twice: the copy must not become RETR 2's body.
    reply = b"+OK\r\none\r\n.\r\n"
    session = session_after_login([reply + reply], chunk)
    assert retr(session) == b"one\r\n"
    with pytest.raises(ProtocolError, match="nobody asked for"):
        session.ensure_synchronized()
    assert session.state is State.ERROR


def test_data_waiting_on_the_connection_is_caught() -> None:
    session = session_after_login([b"+OK\r\none\r\n.\r\n", b"+OK\r\n"])
    assert retr(session) == b"one\r\n"
    session.ensure_synchronized()  # nothing waiting: fine
    session.noop()  # its reply comes with an extra line below
    transport = session.transport
    assert isinstance(transport, ScriptedTransport)
    transport.readable += b"+OK surprise\r\n"
    with pytest.raises(ProtocolError, match="nobody asked for"):
        session.retr(2, io.BytesIO())
    assert b"RETR 2" not in sent(session)


def test_ensure_synchronized_while_a_reply_is_due_is_a_usage_error() -> None:
    session = session_after_login([])
    session.transport.write(session.connection.send(Command("NOOP")))
    with pytest.raises(UsageError, match="still due"):
        session.ensure_synchronized()


@pytest.mark.parametrize("chunk", CHUNKS)
def test_uidl_one_keeps_the_uid_exact_and_checks_the_number(chunk: int | None) -> None:
    session = session_after_login([b"+OK 1 u\xff\r\n", b"+OK 1 u\xfe\r\n"], chunk)
    assert session.uidl_one(1).encode("utf-8", "surrogateescape") == b"u\xff"
    with pytest.raises(ProtocolError, match="about message 1"):
        session.uidl_one(2)


def test_a_mailbox_beyond_any_sane_size_is_refused_before_its_listing() -> None:
    session = session_after_login(listing_wire(10**12, b"1 10\r\n", b"1 a\r\n"))
    with pytest.raises(ProtocolError, match="holds 1000000000000 messages"):
        read_listing(session)
