"""Parsers for the contents of POP3 replies: STAT, scan and UIDL listings, CAPA.

Servers in the wild send extra spaces, duplicate UIDLs and over-long lines
(RFC 1939 section 7 and 2449 section 6.8 say otherwise), so every parser here
is lenient where it can be and raises ``ProtocolError`` where it cannot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from fetchd.errors import ProtocolError

_TIMESTAMP = re.compile(rb"<[!-~]+@[!-~]+>")


def _numbers(text: str, what: str, count: int) -> list[int]:
    words = text.split()
    try:
        values = [int(word) for word in words[:count]]
    except ValueError:
        values = []
    if len(values) != count or any(value < 0 for value in values):
        raise ProtocolError(f"the server's {what} reply is malformed: {text[:60]!r}")
    return values


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


def parse_uidl_line(text: str) -> tuple[int, str]:
    """``n unique-id`` from ``UIDL n`` or one line of a UIDL listing."""
    words = text.split()
    if len(words) < 2 or not words[0].isdigit():
        raise ProtocolError(f"the server's UIDL reply is malformed: {text[:60]!r}")
    # Ids are 1-70 chars of 0x21-0x7E (RFC 1939 section 7); we keep whatever
    # the server sent but refuse nothing but the empty id.
    return int(words[0]), words[1]


def _lines(body: bytes) -> list[str]:
    return [line for line in body.decode("utf-8", "replace").splitlines() if line.strip()]


def parse_scan_listing(body: bytes) -> dict[int, int]:
    """The multi-line LIST reply: message number -> size in octets."""
    return dict(parse_scan_line(line) for line in _lines(body))


def parse_uidl_listing(body: bytes) -> dict[int, str]:
    """The multi-line UIDL reply: message number -> unique id."""
    return dict(parse_uidl_line(line) for line in _lines(body))


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
    return int(args[0]) if args and args[0].isdigit() else None


def parse_capa(body: bytes) -> Capabilities:
    items: dict[str, tuple[str, ...]] = {}
    for line in _lines(body):
        name, *args = line.split()
        items[name.upper()] = tuple(args)
    return Capabilities(items)


def apop_timestamp(greeting_text: str) -> str | None:
    """The ``<...@...>`` banner timestamp APOP digests (RFC 1939 section 7)."""
    found = _TIMESTAMP.search(greeting_text.encode("utf-8", "replace"))
    return found.group().decode("ascii") if found else None
