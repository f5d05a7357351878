"""A streaming MIME walker: a message's structure and decoded parts, in bounded memory.

``email.message_from_bytes`` holds the whole message, several times over; a
200 MB message must not. This walker sees the stored message one line at a
time (a long line arrives in fragments of at most ``LINE_LIMIT`` bytes), keeps
a stack of the entities that are open, parses each header block (small) with
the stdlib, and decodes bodies as they stream past.

It is sans-IO: ``MimeWalker.feed`` takes fragments as ``readline(LINE_LIMIT)``
returns them and hands back events; ``walk`` drives it from a binary file.
Inside a leaf, lines that cannot be a delimiter can also go to the walker in
runs (``MimeWalker.feed_lines``), with the same result as one by one; that is
how ``walk`` decodes a large attachment at the speed of the stdlib's decoders.
A header block whose lines are all fields goes in whole, too
(``MimeWalker.feed_header_block``)::

    PartStart(part)   an entity begins: the message, each multipart, each leaf,
                      each message/rfc822, each uuencoded file in a text body
    Body(id, data)    decoded content of a leaf or uuencoded file; for a
                      message/rfc822 part, its raw content (the .eml bytes)
    PartEnd(id)       that entity is complete (or cut short: see Defect)
    Defect(text)      something was malformed; the walk goes on

Malformed input never raises: structure is recovered the way mail clients do
and the problem is reported as a ``Defect``.

The walker's pieces live beside it, and what callers use is re-exported here:
``parts`` (the events and limits), ``headers`` (header decoding),
``decoders`` (Content-Transfer-Encodings), ``frames`` (the open entities) and
``lines`` (reading in blocks).
"""

from __future__ import annotations

import dataclasses
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32
from typing import BinaryIO

from fetchd.mime.decoders import IDENTITY, Report, decoder_for
from fetchd.mime.frames import (
    Frame,
    HeaderFrame,
    LeafFrame,
    MessageFrame,
    MultipartFrame,
    UUScanner,
)
from fetchd.mime.headers import (
    decode_bytes,
    decode_words,
    first_token,
    header_text,
    param,
    unfold,
)
from fetchd.mime.lines import BlockReader, split_break
from fetchd.mime.parts import (
    BLOCK_SIZE,
    LINE_LIMIT,
    MAX_DEFECTS,
    MAX_DEPTH,
    MAX_HEADER_BYTES,
    Body,
    Defect,
    Event,
    Kind,
    Part,
    PartEnd,
    PartStart,
    label,
)

__all__ = [
    "LINE_LIMIT",
    "MAX_DEFECTS",
    "MAX_DEPTH",
    "MAX_HEADER_BYTES",
    "Body",
    "Defect",
    "Event",
    "Kind",
    "MimeWalker",
    "Part",
    "PartEnd",
    "PartStart",
    "Report",
    "decode_bytes",
    "decode_words",
    "header_text",
    "read_headers",
    "unfold",
    "walk",
]


def walk(fp: BinaryIO, *, bulk: bool = True, block_size: int = BLOCK_SIZE) -> Iterator[Event]:
    """Walk the message in ``fp`` (binary, positioned at its start).

    ``bulk`` reads ``fp`` in blocks of ``block_size`` bytes and hands runs of
    lines to the leaves, and header blocks to the walker, at once. Without it,
    the walk reads line by line: the reference the bulk walk must equal, and it
    reads no further than it needs.
    """
    walker = MimeWalker()
    if bulk:
        yield from _walk_blocks(fp, walker, block_size)
    else:
        while fragment := fp.readline(LINE_LIMIT):
            yield from walker.feed(fragment)
    yield from walker.close()


def _walk_blocks(fp: BinaryIO, walker: MimeWalker, block_size: int) -> Iterator[Event]:
    reader = BlockReader(fp, block_size)
    stops, readline, feed = walker.stops, reader.readline, walker.feed  # once, not per line
    while True:
        allowed = stops()
        if allowed is not None:
            if run := reader.lines(allowed):
                yield from walker.feed_lines(run)
                continue
        elif walker.at_header_start():
            taken, events = walker.feed_header_block(*reader.window(LINE_LIMIT))
            if taken:
                reader.skip(taken)
                yield from events
                continue
        if fragment := readline():
            yield from feed(fragment)
        else:
            return


def read_headers(fp: BinaryIO) -> Message:
    """The top-level header block of the message in ``fp``, without reading its body."""
    for event in walk(fp, bulk=False):
        if isinstance(event, PartStart):
            assert event.part.headers is not None  # every entity but a uuencoded file has them
            return event.part.headers
    raise AssertionError("walk() always starts the top-level entity")  # pragma: no cover


# --- one header block -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Entity:
    headers: Message
    content_type: str
    encoding: str
    boundary: bytes | None
    disposition: str | None
    filename: str | None
    content_id: str | None


def _parse_entity(block: bytes, default_type: str, defects: list[str]) -> _Entity:
    """Parse one header block (never raises: a hopeless block reads as empty)."""
    try:
        return _describe(_parse_block(block), default_type, defects)
    except Exception:  # the stdlib's header code is not hardened against hostile input
        defects.append("a header block could not be parsed; its part is read as plain text")
        return _describe(Message(), default_type, defects)


def _parse_block(block: bytes) -> Message:
    try:  # UTF-8 as a whole is UTF-8 line by line: a line feed never splits a character
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        # Line by line: UTF-8 where valid (RFC 6532 headers, raw UTF-8 names), else
        # Latin-1, so that one stray byte does not spoil the other headers.
        text = "".join(_header_line(line) for line in io.BytesIO(block))
    return _plain_fields(text) or HeaderParser(policy=compat32).parsestr(text, headersonly=True)


def _plain_fields(text: str) -> Message | None:
    """The stdlib's parse of a block of plain fields, without its line-by-line machinery.

    Only a block where every line is a field or a continuation, breaks are LF
    or CRLF and no line starts with "From " (an envelope line to the stdlib);
    None for any other, which the stdlib parses. The result is what
    ``HeaderParser(policy=compat32)`` gives (compat32's ``header_source_parse``).
    """
    if not _PLAIN_BLOCK.fullmatch(text) or text.startswith("From ") or "\nFrom " in text:
        return None
    if text.count("\r") != text.count("\r\n"):
        return None  # a lone CR ends a line for the stdlib
    msg = Message(policy=compat32)
    for name, value in _PLAIN_FIELD.findall(text):
        msg.set_raw(name, value.rstrip("\r\n"))
    msg.set_payload("")
    return msg


# A field name runs up to its colon: "Name :" is no field to the stdlib.
_PLAIN_BLOCK = re.compile(r"[!-9;-~]+:[^\n]*\n(?:(?:[!-9;-~]+:|[ \t])[^\n]*\n)*")
_PLAIN_FIELD = re.compile(r"([^:\n]*):[ \t]*([^\n]*\n(?:[ \t][^\n]*\n)*)")


def _header_line(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return line.decode("latin-1")


def _describe(msg: Message, default_type: str, defects: list[str]) -> _Entity:
    msg.set_default_type(default_type)
    content_type = msg.get_content_type()
    boundary = msg.get_boundary() if content_type.startswith("multipart/") else None
    filename = param(msg, "filename", "content-disposition", defects) or param(
        msg, "name", "content-type", defects
    )
    content_id = str(msg.get("content-id") or "").strip()
    return _Entity(
        headers=msg,
        content_type=content_type,
        encoding=first_token(msg.get("content-transfer-encoding")) or "7bit",
        boundary=boundary.encode("utf-8") if boundary else None,
        disposition=first_token(msg.get("content-disposition")),
        filename=filename,
        content_id=content_id or None,
    )


# --- the walker -----------------------------------------------------------------------------


class MimeWalker:
    """Turns line fragments of one message into events (see the module docstring)."""

    def __init__(self) -> None:
        self._events: list[Event] = []
        self._stack: list[Frame] = [HeaderFrame("text/plain", (), 0, None)]
        self._taps: list[MessageFrame] = []
        self._next_id = 0
        self._defects = 0
        self._line_start = True
        self._first = True
        #: Set once the input ended: no delimiter follows the last line break, so it is content.
        self.at_eof = False

    def feed(self, fragment: bytes) -> list[Event]:
        """Take one fragment as ``readline(LINE_LIMIT)`` returns it."""
        if fragment and self._stack:
            self._line(fragment)
        events, self._events = self._events, []
        return events

    def stops(self) -> tuple[bytes, ...] | None:
        """Whether ``feed_lines`` may take the next lines: None if not.

        Otherwise the line starts that must still come through ``feed``: a run
        of lines ends before the first line that starts with one of them.
        """
        if not self._line_start or not self._stack:
            return None
        top = self._stack[-1]
        return top.stops() if isinstance(top, LeafFrame) else None

    def feed_lines(self, data: bytes) -> list[Event]:
        """Take a run of whole lines, each ending in a line feed, for the innermost leaf.

        Only when ``stops`` allows it, and no line may start with one of the
        stops or be longer than ``LINE_LIMIT``: then each line is one fragment
        and none is a delimiter, and the events are those that feeding the
        lines one by one gives, but for how the decoded data is cut into
        ``Body`` events and where those fall among the rest.
        """
        term = b"\r\n" if data.endswith(b"\r\n") else b"\n"
        for tap in self._taps:
            tap.lines(self, data, term)
        top = self._stack[-1]
        assert isinstance(top, LeafFrame)
        top.lines(self, data, term)
        events, self._events = self._events, []
        return events

    def at_header_start(self) -> bool:
        """Whether a header block starts here: ``feed_header_block`` may take it."""
        if not self._line_start or not self._stack:
            return False
        top = self._stack[-1]
        return isinstance(top, HeaderFrame) and top.fresh

    def feed_header_block(self, buf: bytes, start: int, end: int) -> tuple[int, list[Event]]:
        """Take the header block in ``buf[start:end]`` at once, blank line and all.

        Only at a header start (see ``at_header_start``). Returns how many
        bytes were taken and the events, which are those that feeding the
        lines one by one gives. Nothing is taken (0) unless the block and its
        blank line lie whole in the window (so no line is cut into fragments),
        every line is a header field or a continuation, and none starts with
        "--" (it might be a delimiter); then the lines go through ``feed``.
        """
        if self._first and buf.startswith(b"From ", start, end):
            return 0, []  # an mbox separator line: the line path drops it
        blank, term = _blank_line(buf, start, end)
        if blank < 0 or not _HEADER_LINES.fullmatch(buf, start, blank):
            return 0, []
        if buf.startswith(b"--", start, blank) or buf.find(b"\n--", start, blank) >= 0:
            return 0, []
        taken = blank + len(term) - start
        if self._taps:
            whole = buf[start : start + taken]
            for tap in self._taps:
                tap.lines(self, whole, term)
        head = self._stack[-1]
        assert isinstance(head, HeaderFrame)
        self._first = False
        head.block += memoryview(buf)[start:blank]
        head.line(self, b"", term, False)
        events, self._events = self._events, []
        return taken, events

    def close(self) -> list[Event]:
        """The message ended: close every open entity."""
        self.at_eof = True
        while self._stack:
            self._stack.pop().close(self)
        events, self._events = self._events, []
        return events

    def _line(self, fragment: bytes) -> None:
        content, term = split_break(fragment)
        continued = not self._line_start
        self._line_start = bool(term)
        if self._first:
            self._first = False
            if content.startswith(b"From "):
                return  # an mbox separator line, not a header
        if not continued and content[:2] == b"--":
            hit = self._match_boundary(content)
            if hit is not None:
                self._boundary(hit[0], hit[1], content, term)
                return
        for tap in self._taps:
            tap.raw(self, content, term)
        self._stack[-1].line(self, content, term, continued)

    def _match_boundary(self, content: bytes) -> tuple[int, bool] | None:
        # Innermost first: an inner part cannot contain an outer delimiter (RFC 2046 5.1.1).
        for index in range(len(self._stack) - 1, -1, -1):
            frame = self._stack[index]
            if isinstance(frame, MultipartFrame):
                closing = frame.match(content)
                if closing is not None:
                    return index, closing
        return None

    def _boundary(self, index: int, closing: bool, content: bytes, term: bytes) -> None:
        while len(self._stack) > index + 1:
            self._stack.pop().close(self)
        for tap in self._taps:  # the delimiter is raw content of every enclosing message
            tap.raw(self, content, term)
        frame = self._stack[index]
        assert isinstance(frame, MultipartFrame)
        frame.delimiter(self, closing)

    # Called by the frames.

    def emit(self, event: Event) -> None:
        self._events.append(event)

    def defect(self, message: str) -> None:
        self._defects += 1
        if self._defects <= MAX_DEFECTS:
            self.emit(Defect(message))
        elif self._defects == MAX_DEFECTS + 1:
            self.emit(Defect("further problems with this message were not listed"))

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def push(self, frame: Frame) -> None:
        self._stack.append(frame)

    def top(self) -> Frame:
        return self._stack[-1]

    def headers_done(self, head: HeaderFrame) -> None:
        """``head``, the innermost frame, is complete: replace it by its entity."""
        popped = self._stack.pop()
        assert popped is head
        self.open_entity(head)

    def open_entity(self, head: HeaderFrame) -> None:
        """A header block is complete: start the entity it describes."""
        defects: list[str] = []
        entity = _parse_entity(bytes(head.block), head.default_type, defects)
        part = Part(
            id=self.new_id(),
            kind="leaf",
            content_type=entity.content_type,
            disposition=entity.disposition,
            filename=entity.filename,
            content_id=entity.content_id,
            parents=head.parents,
            index=head.index,
            parent_id=head.parent_id,
            headers=entity.headers,
        )
        for text in defects:
            self.defect(f"{label(part)}: {text}")
        depth = sum(isinstance(f, MultipartFrame | MessageFrame) for f in self._stack)
        if depth >= MAX_DEPTH and entity.content_type.split("/")[0] in ("multipart", "message"):
            self._open_unopened(part, bytes(head.block))
            return
        if entity.content_type.startswith("multipart/") and entity.boundary:
            self._open_multipart(part, entity.boundary)
            return
        elif entity.content_type.startswith("multipart/"):
            self.defect(f"{label(part)}: multipart without a boundary; not opened")
        elif entity.content_type in _MESSAGE_TYPES and entity.encoding in IDENTITY:
            self._open_message(part)
            return
        self._open_leaf(part, entity.encoding)

    def _open_multipart(self, part: Part, boundary: bytes) -> None:
        part = dataclasses.replace(part, kind="multipart")
        self.emit(PartStart(part))
        self.push(MultipartFrame(part, boundary))

    def _open_message(self, part: Part) -> None:
        # RFC 2046 section 5.2.1: message/rfc822 is 7bit, 8bit or binary, so its
        # content is a message to walk; its raw bytes also go out as Body events.
        part = dataclasses.replace(part, kind="message")
        self.emit(PartStart(part))
        tap = MessageFrame(part)
        self._taps.append(tap)
        self.push(tap)
        self.push(HeaderFrame("text/plain", (*part.parents, part.content_type), 0, part.id))

    def _open_leaf(self, part: Part, encoding: str) -> None:
        self.emit(PartStart(part))
        where = label(part)
        decoder = decoder_for(encoding, lambda text: self.defect(f"{where}: {text}"))
        scan = part.content_type == "text/plain" and encoding in IDENTITY and not part.filename
        self.push(LeafFrame(part, decoder, UUScanner(part) if scan else None))

    def _open_unopened(self, part: Part, block: bytes) -> None:
        """Too deep to open: the whole entity, headers and all, goes out as its Body.

        Nothing below it is walked, but nothing is lost either: the raw entity
        is a message of its own that any mail client opens.
        """
        # No Defect: the kind says it, and whoever keeps the part says where it went.
        part = dataclasses.replace(part, kind="unopened")
        self.emit(PartStart(part))
        self.emit(Body(part.id, block + (b"\r\n" if block.endswith(b"\r\n") else b"\n")))
        # Binary: the content is kept byte for byte, whatever encoding it declares.
        decoder = decoder_for("binary", lambda text: self.defect(f"{label(part)}: {text}"))
        self.push(LeafFrame(part, decoder, None))

    def untap(self, tap: MessageFrame) -> None:
        self._taps.remove(tap)


_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global"})
#: Lines that ``HeaderFrame`` keeps in its block: header fields and continuations.
_HEADER_LINES = re.compile(rb"(?:(?:[!-9;-~]+[ \t]*:|[ \t])[^\n]*\n)*")


def _blank_line(buf: bytes, start: int, end: int) -> tuple[int, bytes]:
    """Where the first empty line in ``buf[start:end]`` starts, and its break; -1 if none."""
    for term in (b"\n", b"\r\n"):
        if buf.startswith(term, start, end):
            return start, term
    lf = buf.find(b"\n\n", start, end)
    crlf = buf.find(b"\n\r\n", start, end if lf < 0 else lf + 2)
    if crlf >= 0:
        return crlf + 1, b"\r\n"
    return (lf + 1, b"\n") if lf >= 0 else (-1, b"")
