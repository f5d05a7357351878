"""Parsers for the contents of POP3 replies: STAT, scan and UIDL listings, CAPA.

Servers in the wild send extra spaces, duplicate UIDLs and over-long lines
(RFC 1939 section 7 and 2449 section 6.8 say otherwise), so every parser here
is lenient where it can be and raises ``ProtocolError`` where it cannot.
"""

from __future__ import annotations

import operator
import re
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from fetchd.errors import ProtocolError

_T = TypeVar("_T")

_TIMESTAMP = re.compile(rb"<[!-~]+@[!-~]+>")
#: A listing every line of which is exactly what RFC 1939 asks for: two words
#: of one space apart, ASCII digits (and for UIDL a 1-70 octet id of 0x21-0x7E),
#: ended by CRLF or LF alike. Such a body is parsed in bulk, with the same
#: result as line by line; anything else takes the line-by-line path and its
#: checks. Told with bytes operations, not a regular expression, which costs
#: more than the parsing itself on a listing of a million lines.
_DIGITS = b"0123456789"
_ID_OCTETS = bytes(range(0x21, 0x7F))
_UID_MAX = 70


def _plain_lines(rest: bytes, words: list[bytes]) -> bool:
    """Whether a listing is lines of two words one space apart.

    ``rest`` is the body without the octets its words may be made of: only
    one space and one line end a line are left in a plain listing, so each
    line has one space; twice as many words as lines puts a word on each side.
    """
    lines = rest.count(b"\n")
    return len(words) == 2 * lines and rest in (b" \r\n" * lines, b" \n" * lines)


def _plain_scan(body: bytes, words: list[bytes]) -> bool:
    return _plain_lines(body.translate(None, _DIGITS), words)


def _plain_uidl(body: bytes, words: list[bytes]) -> bool:
    return (
        _plain_lines(body.translate(None, _ID_OCTETS), words)
        and (not words or b"".join(words[0::2]).isdigit())
        and max(map(len, words[1::2]), default=0) <= _UID_MAX
    )


def _numbers(text: str, what: str, count: int) -> list[int]:
    words = [word for word in text.split(" ") if word][:count]  # spaces only, as in listings
    # ASCII digits only: int() would also take "+5", "1_0" (10), " 5\t" and other
    # scripts' digits, and a misread number pairs a size or UID with the wrong message.
    if len(words) != count or not all(word.isascii() and word.isdigit() for word in words):
        raise ProtocolError(f"the server's {what} reply is malformed: {text[:60]!r}")
    return [int(word) for word in words]


def parse_stat(text: str) -> tuple[int, int]:
    """``+OK count octets`` (RFC 1939 section 5, STAT)."""
    count, octets = _numbers(text, "STAT", 2)
    return count, octets


def parse_last(text: str) -> int:
    """``+OK n``: the highest message number accessed (RFC 1460 LAST)."""
    return _numbers(text, "LAST", 1)[0]


def parse_scan_line(text: str) -> tuple[int, int]:
    """``n octets`` from ``LIST n`` or one line of a LIST listing."""
    number, octets = _numbers(text, "LIST", 2)
    return number, octets


def parse_uidl_line(raw: bytes) -> tuple[int, str]:
    """``n unique-id`` from ``UIDL n`` (the status line's bytes, ``Response.raw``)."""
    return _uidl_entry(raw, [])


def split_lines(body: bytes) -> list[bytes]:
    """The non-blank lines of a listing, split on CRLF or LF only.

    Not ``splitlines``: VT, FF and the other characters it also splits on can
    be part of a line (a UID with a stray control byte must stay one UID).
    """
    return [line.rstrip(b"\r") for line in body.split(b"\n") if line.strip(b" \r")]


def _words(line: bytes) -> list[bytes]:
    """Words separated by one or more spaces (RFC 1939 says one; some send more)."""
    return [word for word in line.split(b" ") if word]


def _uidl_entry(line: bytes, warnings: list[str]) -> tuple[int, str]:
    words = _words(line)
    if len(words) < 2 or not words[0].isdigit():
        raise ProtocolError(f"the server's UIDL reply is malformed: {_shown(line)}")
    if len(words) > 2:
        warnings.append(f"UIDL line with extra words, using the second: {_shown(line)}")
    uid = words[1]
    if not 1 <= len(uid) <= 70 or any(not 0x21 <= byte <= 0x7E for byte in uid):
        # RFC 1939 section 7 asks for 1-70 octets of 0x21-0x7E; keep whatever was sent.
        warnings.append(f"UIDL id outside RFC 1939's characters or length: {_shown(uid)}")
    # Lossless (decisions: UIDs are str, surrogateescape for non-UTF-8 bytes).
    return int(words[0]), uid.decode("utf-8", "surrogateescape")


def _shown(raw: bytes) -> str:
    return repr(raw[:80].decode("utf-8", "backslashreplace"))


def _numbered(entries: list[tuple[int, _T]], what: str) -> dict[int, _T]:
    """Refuse what would mismatch messages: repeated or non-positive numbers."""
    table: dict[int, _T] = {}
    for number, value in entries:
        if number < 1:
            raise ProtocolError(f"the server's {what} listing has message number {number}")
        if number in table:
            raise ProtocolError(f"the server's {what} listing repeats message number {number}")
        table[number] = value
    return table


#: A listing as two columns: message numbers in increasing order, and what
#: each line says of its message (size, or unique id). The numbers are a
#: ``range`` when they run 1..N, as they do on every sane server, and sizes an
#: ``array``: a million of either would otherwise be a million int objects.
Columns = tuple[Sequence[int], Sequence[_T]]

#: Octets of a listing split into words at a time: bounds the word lists that
#: a listing of a million lines would otherwise make all at once.
CHUNK_OCTETS = 1 << 20


def _chunks(body: bytes, octets: int) -> Iterator[bytes]:
    """``body`` in pieces of whole lines, each about ``octets`` long."""
    start = 0
    while start < len(body):
        end = body.find(b"\n", start + octets)
        end = len(body) if end < 0 else end + 1
        yield body[start:end]
        start = end


def _increasing(numbers: Sequence[int]) -> bool:
    """Whether message numbers rise strictly from at least 1: no repeats, none below 1."""
    return not numbers or (numbers[0] >= 1 and all(map(operator.lt, numbers, numbers[1:])))


class _NumberColumn:
    """The first column of a plain listing, read a chunk at a time.

    Kept as ``range(1, N + 1)`` while every chunk continues the run 1..N,
    and as a list of ints from the first that does not.
    """

    def __init__(self) -> None:
        self.count = 0
        self.listed: list[int] | None = None  # None: 1..count so far

    def add(self, words: list[bytes]) -> bool:
        """Take one chunk's numbers; False if they do not rise strictly from 1."""
        numbers = list(map(int, words))  # ASCII digits only: the caller checked
        if not _increasing(numbers):
            return False
        rising_by_one = not numbers or numbers[-1] - numbers[0] == len(numbers) - 1
        if self.listed is None and rising_by_one and numbers[:1] in ([], [self.count + 1]):
            self.count += len(numbers)
            return True
        if self.listed is None:
            self.listed = list(range(1, self.count + 1))
        if self.listed and numbers and numbers[0] <= self.listed[-1]:
            return False
        self.listed += numbers
        return True

    def column(self) -> Sequence[int]:
        return range(1, self.count + 1) if self.listed is None else self.listed


def _size_column(sizes: list[int]) -> Sequence[int]:
    try:
        return array("q", sizes)
    except OverflowError:  # an absurd size: kept as it was sent, and refused later
        return sizes


def parse_scan_listing(body: bytes, warnings: list[str] | None = None) -> dict[int, int]:
    """The multi-line LIST reply: message number -> size in octets."""
    numbers, sizes = scan_columns(body, warnings)
    return dict(zip(numbers, sizes, strict=True))


def scan_columns(
    body: bytes, warnings: list[str] | None = None, *, chunk: int = CHUNK_OCTETS
) -> Columns[int]:
    """``parse_scan_listing`` as columns, sorted by message number.

    A plain listing in increasing order (what servers send) is read in bulk,
    a chunk at a time, without a dict: a mailbox of a million messages makes
    no object more than it must.
    """
    numbers, sizes = _NumberColumn(), list[int]()
    for piece in _chunks(body, chunk):
        words = piece.split()
        if not (_plain_scan(piece, words) and numbers.add(words[0::2])):
            return _columns(scan_listing_by_line(body, warnings))
        sizes += map(int, words[1::2])
    return numbers.column(), _size_column(sizes)


def scan_listing_by_line(body: bytes, warnings: list[str] | None = None) -> dict[int, int]:
    """``parse_scan_listing`` one line at a time, for any listing: the reference."""
    entries = []
    for line in split_lines(body):
        words = _words(line)
        if len(words) > 2 and warnings is not None:
            warnings.append(f"LIST line with extra words: {_shown(line)}")
        entries.append(parse_scan_line(b" ".join(words[:2]).decode("ascii", "replace")))
    return _numbered(entries, "LIST")


def parse_uidl_listing(body: bytes, warnings: list[str] | None = None) -> dict[int, str]:
    """The multi-line UIDL reply: message number -> unique id (see ``_uidl_entry``)."""
    numbers, uids = uidl_columns(body, warnings)
    return dict(zip(numbers, uids, strict=True))


def uidl_columns(
    body: bytes, warnings: list[str] | None = None, *, chunk: int = CHUNK_OCTETS
) -> tuple[Sequence[int], list[str]]:
    """``parse_uidl_listing`` as columns, sorted by message number (see ``scan_columns``)."""
    numbers, uids = _NumberColumn(), list[str]()
    for piece in _chunks(body, chunk):
        words = piece.split()
        if not (_plain_uidl(piece, words) and numbers.add(words[0::2])):
            return _columns(uidl_listing_by_line(body, warnings))
        # Printable ASCII only: decoding is the same as ``_uidl_entry``'s.
        uids += map(bytes.decode, words[1::2])
    return numbers.column(), uids


def _columns(table: dict[int, _T]) -> tuple[list[int], list[_T]]:
    numbers = sorted(table)
    return numbers, list(map(table.__getitem__, numbers))


def uidl_listing_by_line(body: bytes, warnings: list[str] | None = None) -> dict[int, str]:
    """``parse_uidl_listing`` one line at a time, for any listing: the reference."""
    noted: list[str] = [] if warnings is None else warnings
    return _numbered([_uidl_entry(line, noted) for line in split_lines(body)], "UIDL")


@dataclass(frozen=True)
class Capabilities:
    """What CAPA announced (RFC 2449 section 6): name -> arguments."""

    items: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: False when the server answered CAPA with -ERR (an RFC 1939-only server).
    known: bool = True

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.upper() in self.items

    def args(self, name: str) -> tuple[str, ...]:
        return self.items.get(name.upper(), ())

    @property
    def sasl(self) -> frozenset[str]:
        return frozenset(arg.upper() for arg in self.args("SASL"))

    @property
    def login_delay(self) -> int | None:
        return _int_arg(self.args("LOGIN-DELAY"))

    @property
    def expire_days(self) -> int | None:
        """Days the server keeps retrieved mail; None for NEVER or not announced."""
        return _int_arg(self.args("EXPIRE"))


def _int_arg(args: tuple[str, ...]) -> int | None:
    # ASCII digits only: str.isdigit also accepts "²", which int() refuses, and
    # int() accepts other scripts' digits, which RFC 2449's grammar does not.
    return int(args[0]) if args and args[0].isascii() and args[0].isdigit() else None


def parse_capa(body: bytes) -> Capabilities:
    items: dict[str, tuple[str, ...]] = {}
    for line in split_lines(body):
        name, *args = (word.decode("utf-8", "replace") for word in _words(line))
        items[name.upper()] = tuple(args)
    return Capabilities(items)


def apop_timestamp(greeting_text: str) -> str | None:
    """The ``<...@...>`` banner timestamp APOP digests (RFC 1939 section 7)."""
    found = _TIMESTAMP.search(greeting_text.encode("utf-8", "replace"))
    return found.group().decode("ascii") if found else None
