"""What the POP3 core hands out: small frozen values, one per thing the server said.

A reply to a single-line command is one ``Response``. A positive reply to a
multi-line command (RETR, TOP, LIST, UIDL, CAPA) is a ``Response`` followed by
any number of ``Data`` chunks (already dot-unstuffed) and one ``EndOfData``.
During SASL (RFC 5034) the server may answer ``+ challenge``: a ``Continuation``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, slots=True)
class Response:
    """A status line: ``+OK text`` or ``-ERR text``.

    ``code`` is the RFC 2449 response code in brackets at the start of the text
    (``IN-USE``, ``LOGIN-DELAY``, ``SYS/TEMP``, ``SYS/PERM``, ``AUTH``), upper-cased.
    ``command`` names what this answers ("" for the greeting).
    """

    ok: bool
    text: str
    code: str | None = None
    command: str = ""
    #: The text's bytes as sent: for values that must stay exact (a UID from ``UIDL n``).
    raw: bytes = field(default=b"", compare=False, repr=False)

    @property
    def line(self) -> str:
        """The status line as the server sent it, for people reading a shell."""
        status = "+OK" if self.ok else "-ERR"
        return f"{status} {self.text}" if self.text else status


@dataclass(frozen=True, slots=True)
class Continuation:
    """A SASL server challenge (``+ base64``); the client must answer it."""

    payload: str


@dataclass(frozen=True, slots=True)
class Data:
    """A chunk of a multi-line reply body, dot-unstuffed, line endings as sent."""

    data: bytes


@dataclass(frozen=True, slots=True)
class EndOfData:
    """The terminating ``.`` line of a multi-line reply was read."""

    command: str


class _NeedData(enum.Enum):
    NEED_DATA = "NEED_DATA"


#: Returned by ``Connection.next_event`` when more bytes must be received first.
NEED_DATA = _NeedData.NEED_DATA
NeedData = Literal[_NeedData.NEED_DATA]

Event = Response | Continuation | Data | EndOfData
