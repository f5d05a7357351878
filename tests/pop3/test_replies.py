"""Listing and CAPA parsers: exact UIDs, lines split on CRLF or LF only, lenient spacing."""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fetchd.errors import ProtocolError
from fetchd.pop3.commands import Command
from fetchd.pop3.replies import (
    parse_capa,
    parse_scan_listing,
    parse_uidl_listing,
    scan_columns,
    scan_listing_by_line,
    split_lines,
    uidl_columns,
    uidl_listing_by_line,
)
from tests.pop3.test_core import body_of, feed, in_transaction, stuff


def test_uids_that_differ_in_non_utf8_bytes_stay_distinct() -> None:
    uids = parse_uidl_listing(b"1 u\xff\r\n2 u\xfe\r\n")
    assert uids[1] != uids[2]
    assert uids[1].encode("utf-8", "surrogateescape") == b"u\xff"
    assert uids[2].encode("utf-8", "surrogateescape") == b"u\xfe"


def test_valid_utf8_and_ascii_uids_are_unchanged() -> None:
    assert parse_uidl_listing(b"1 000001a5b2\r\n2 caf\xc3\xa9\r\n") == {1: "000001a5b2", 2: "café"}


@pytest.mark.parametrize("control", [b"\x0b", b"\x0c", b"\x1c", b"\x85"])
def test_control_bytes_inside_a_uid_do_not_split_it(control: bytes) -> None:
    warnings: list[str] = []
    uids = parse_uidl_listing(b"1 a" + control + b"b\r\n2 c\r\n", warnings)
    assert uids == {1: ("a" + control.decode("utf-8", "surrogateescape") + "b"), 2: "c"}
    assert warnings  # outside RFC 1939's 0x21-0x7E: noted, kept


def test_lines_split_on_crlf_and_lf_only() -> None:
    assert split_lines(b"a\x0bb\r\nc\x0cd\ne\r\n\r\n  \r\n") == [b"a\x0bb", b"c\x0cd", b"e"]


def test_extra_spaces_are_tolerated() -> None:
    warnings: list[str] = []
    assert parse_uidl_listing(b"1  abc \r\n 2 def\n", warnings) == {1: "abc", 2: "def"}
    assert parse_scan_listing(b"1   120 \r\n2 5\n") == {1: 120, 2: 5}
    assert warnings == []


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"1 a\r\n1 b\r\n", "repeats message number 1"),
        (b"0 a\r\n", "message number 0"),
        (b"x a\r\n", "malformed"),
        (b"1\r\n", "malformed"),
    ],
)
def test_bad_uidl_listings_are_refused(body: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        parse_uidl_listing(body)


@pytest.mark.parametrize("body", [b"1 10\r\n1 10\r\n", b"0 10\r\n", b"1 -3\r\n", b"1\x0b10\r\n"])
def test_bad_scan_listings_are_refused(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_scan_listing(body)


def test_capa_lines_split_on_crlf_lf_only() -> None:
    capabilities = parse_capa(b"TOP\r\nSASL  PLAIN LOGIN\r\nX-ODD\x0cTHING\nUIDL\r\n")
    assert "TOP" in capabilities
    assert "UIDL" in capabilities
    assert capabilities.sasl == {"PLAIN", "LOGIN"}
    assert "X-ODD\x0cTHING" in capabilities


@pytest.mark.parametrize("chunk", [None, 1, 2, 5])
def test_uidl_through_the_core_whole_and_byte_by_byte(chunk: int | None) -> None:
    conn = in_transaction()
    conn.send(Command.uidl())
    listing = b"1 u\xff\r\n2 u\xfe\r\n3 a\x0bb\r\n4 .dot\r\n"
    events = feed(conn, b"+OK\r\n" + stuff(listing), chunk)
    uids = parse_uidl_listing(body_of(events))
    assert list(uids.values()) == ["u\udcff", "u\udcfe", "a\x0bb", ".dot"]


# -- a listing read in bulk gives what a line-by-line read gives --------------------------

_uid_words = st.one_of(
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=72),
    st.sampled_from(["caf\xe9", "a\x0bb", "x" * 71]),
)


def _listing(lines: list[tuple[int, str]], ends: list[bytes]) -> bytes:
    return b"".join(
        f"{number} {word}".encode("utf-8", "surrogateescape") + end
        for (number, word), end in zip(lines, ends * len(lines), strict=False)
    )


@given(
    lines=st.lists(st.tuples(st.integers(0, 60), _uid_words), max_size=30),
    ends=st.lists(st.sampled_from([b"\r\n", b"\n"]), min_size=1, max_size=3),
)
def test_uidl_listings_read_in_bulk_or_by_line_agree(
    lines: list[tuple[int, str]], ends: list[bytes]
) -> None:
    body = _listing(lines, ends)
    numbers = [number for number, _ in lines]
    if 0 in numbers or len(set(numbers)) != len(numbers):
        with pytest.raises(ProtocolError, match="message number"):
            parse_uidl_listing(body)
        return
    warnings: list[str] = []
    assert parse_uidl_listing(body, warnings) == dict(lines)
    plain = all(1 <= len(word) <= 70 and word.isascii() and word.isprintable() for _, word in lines)
    assert (warnings == []) == plain  # the bulk path only takes what warns of nothing


@given(
    lines=st.lists(st.tuples(st.integers(0, 60), st.integers(0, 10**12)), max_size=30),
    ends=st.lists(st.sampled_from([b"\r\n", b"\n"]), min_size=1, max_size=3),
)
def test_scan_listings_read_in_bulk_or_by_line_agree(
    lines: list[tuple[int, int]], ends: list[bytes]
) -> None:
    body = _listing([(number, str(size)) for number, size in lines], ends)
    numbers = [number for number, _ in lines]
    if 0 in numbers or len(set(numbers)) != len(numbers):
        with pytest.raises(ProtocolError, match="message number"):
            parse_scan_listing(body)
        return
    assert parse_scan_listing(body) == dict(lines)


def test_a_listing_almost_plain_still_warns() -> None:
    warnings: list[str] = []
    assert parse_scan_listing(b"1 10\r\n2 20 x\r\n", warnings) == {1: 10, 2: 20}
    assert parse_uidl_listing(b"1 a\r\n2 b c\r\n", warnings) == {1: "a", 2: "b"}
    assert len(warnings) == 2
    assert parse_uidl_listing(b"1 a\r\n2 b") == {1: "a", 2: "b"}  # no end of line at the end


# Listings made of lines that are plain, nearly plain (a tab, two spaces, a third
# word, a sign, an underscore, a long id) or mixed in their line ends: the bulk
# path must give what the line-by-line reference gives, or the same error.
_LISTING_WORD = st.one_of(
    st.integers(0, 10**6).map(lambda n: str(n).encode()),
    st.sampled_from([b"+1", b"1_0", b"-2", b"\xd9\xa3", b"x" * 71, b"u\xff", b"a\x0bb"]),
    st.binary(min_size=1, max_size=8).filter(lambda word: b"\n" not in word),
)
_LISTING_LINE = st.tuples(
    st.lists(_LISTING_WORD, min_size=0, max_size=3),
    st.sampled_from([b" ", b"  ", b"\t", b" \t"]),
    st.sampled_from([b"\r\n", b"\n"]),
).map(lambda parts: parts[1].join(parts[0]) + parts[2])
_PLAIN_LINE = st.tuples(st.integers(1, 10**6), st.integers(0, 10**9)).map(
    lambda pair: b"%d %d\r\n" % pair
)


def _outcome(parse: object, body: bytes) -> tuple[str, object]:
    warnings: list[str] = []
    try:
        return "ok", (parse(body, warnings), warnings)  # type: ignore[operator]
    except ProtocolError as exc:
        return "error", str(exc)


@given(st.lists(st.one_of(_PLAIN_LINE, _LISTING_LINE), max_size=12).map(b"".join))
def test_a_listing_parsed_in_bulk_reads_as_it_does_line_by_line(body: bytes) -> None:
    assert _outcome(parse_scan_listing, body) == _outcome(scan_listing_by_line, body)
    assert _outcome(parse_uidl_listing, body) == _outcome(uidl_listing_by_line, body)


@pytest.mark.parametrize(
    "body",
    [
        b"1 2 3\r\n4\r\n",  # as many words and spaces as two plain lines
        b"1 a b\r\n2\r\n",
        b"1 a\r\n2 b\n",  # line ends mixed
        b"1 " + b"x" * 71 + b"\r\n",
        b"1 1_0\r\n",
        b"",
    ],
)
def test_near_misses_of_a_plain_listing_read_as_line_by_line(body: bytes) -> None:
    assert _outcome(parse_scan_listing, body) == _outcome(scan_listing_by_line, body)
    assert _outcome(parse_uidl_listing, body) == _outcome(uidl_listing_by_line, body)


# -- a listing read a piece at a time ------------------------------------------------------


def _in_pieces(columns: Callable[..., tuple[Sequence[int], Sequence[object]]], chunk: int) -> Any:
    def parse(body: bytes, warnings: list[str]) -> dict[int, object]:
        return dict(zip(*columns(body, warnings, chunk=chunk), strict=True))

    return parse


_RUN = st.integers(0, 12).map(
    lambda n: b"".join(b"%d %d\r\n" % (i, 100 + i) for i in range(1, n + 1))
)


@given(
    st.lists(st.one_of(_RUN, _PLAIN_LINE, _LISTING_LINE), max_size=6).map(b"".join),
    st.integers(1, 40),
)
def test_a_listing_read_in_pieces_reads_as_it_does_line_by_line(body: bytes, chunk: int) -> None:
    """Pieces end at line ends; runs of 1..N, gaps, repeats and odd lines span them."""
    assert _outcome(_in_pieces(scan_columns, chunk), body) == _outcome(scan_listing_by_line, body)
    assert _outcome(_in_pieces(uidl_columns, chunk), body) == _outcome(uidl_listing_by_line, body)


@pytest.mark.parametrize("chunk", [1, 5, 1 << 20])
def test_numbers_that_run_from_one_are_a_range_and_sizes_an_array(chunk: int) -> None:
    numbers, sizes = scan_columns(b"1 10\r\n2 20\r\n3 30\r\n", chunk=chunk)
    assert (numbers, list(sizes)) == (range(1, 4), [10, 20, 30])
    assert isinstance(sizes, array)
    numbers, uids = uidl_columns(b"1 a\n2 b\n3 c\n", chunk=chunk)
    assert (numbers, uids) == (range(1, 4), ["a", "b", "c"])


@pytest.mark.parametrize("chunk", [1, 5, 1 << 20])
@pytest.mark.parametrize(
    ("body", "numbers"),
    [
        (b"1 1\n2 2\n4 4\n", [1, 2, 4]),  # the run breaks after two
        (b"2 2\n3 3\n", [2, 3]),  # rises by one, but not from 1
        (b"1 1\n3 3\n4 4\n5 5\n", [1, 3, 4, 5]),
    ],
)
def test_numbers_that_do_not_run_from_one_are_a_list(
    body: bytes, numbers: list[int], chunk: int
) -> None:
    assert scan_columns(body, chunk=chunk)[0] == numbers
    assert uidl_columns(body, chunk=chunk)[0] == numbers


@pytest.mark.parametrize("chunk", [1, 5, 1 << 20])
def test_a_number_repeated_in_a_later_piece_is_refused(chunk: int) -> None:
    with pytest.raises(ProtocolError, match="repeats message number 2"):
        scan_columns(b"1 1\n2 2\n2 3\n", chunk=chunk)
    with pytest.raises(ProtocolError, match="repeats message number 1"):
        uidl_columns(b"1 a\n2 b\n1 c\n", chunk=chunk)


def test_a_size_beyond_64_bits_is_kept_as_sent() -> None:
    numbers, sizes = scan_columns(b"1 10\r\n2 99999999999999999999\r\n")
    assert (list(numbers), list(sizes)) == ([1, 2], [10, 99999999999999999999])
