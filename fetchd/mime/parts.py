"""What the MIME walker reports: the parts of a message, the events, the limits.

These are the walker's vocabulary, shared by the walker (``fetchd.mime.walker``),
its frames and decoders, and whoever consumes the events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import Message
from typing import Literal

#: Longest line fragment read at once; longer lines arrive in pieces.
LINE_LIMIT = 65536
#: Decoded data is handed on in chunks of about this size.
CHUNK = 65536
#: The stored message is read in blocks of this size (see ``fetchd.mime.lines``).
BLOCK_SIZE = 1024 * 1024
#: Header blocks are small; a larger one is cut and the rest ignored.
MAX_HEADER_BYTES = 512 * 1024
#: Multiparts and messages nested deeper than this are not opened: each level
#: costs a frame and a boundary test per delimiter line. Real mail stays far
#: below (a forward of a forward adds two levels); deeper subtrees are kept
#: whole as an "unopened" part instead of being dropped.
MAX_DEPTH = 64
#: After this many defects one more says the rest were not listed.
MAX_DEFECTS = 50

#: "unopened": a multipart or message nested deeper than ``MAX_DEPTH``; its Body is
#: the raw entity (header block, blank line, content), a message of its own.
Kind = Literal["multipart", "message", "leaf", "uuencode", "unopened"]


@dataclass(frozen=True)
class Part:
    """One entity of the message, as its headers describe it (all text decoded)."""

    id: int
    kind: Kind
    content_type: str
    disposition: str | None = None
    filename: str | None = None
    content_id: str | None = None
    #: Content types of the enclosing entities, outermost first.
    parents: tuple[str, ...] = ()
    #: Position among the parts of the enclosing multipart.
    index: int = 0
    #: Id of the enclosing entity (None for the message itself); the one part whose
    #: parent is a message/rfc822 part is the enclosed message.
    parent_id: int | None = None
    headers: Message | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class PartStart:
    part: Part


@dataclass(frozen=True)
class Body:
    part_id: int
    data: bytes


@dataclass(frozen=True)
class PartEnd:
    part_id: int


@dataclass(frozen=True)
class Defect:
    message: str


Event = PartStart | Body | PartEnd | Defect


def label(part: Part) -> str:
    """How a defect names the part it is about."""
    name = f" {part.filename[:60]!r}" if part.filename else ""
    return f"part {part.id} ({part.content_type}{name})"
