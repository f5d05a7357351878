"""The open entities of a MIME walk: one frame per entity the walker is inside.

The walker keeps a stack of frames and hands each line to the innermost one;
a frame turns the lines it gets into events and may push the frames of the
entities it contains (see ``fetchd.mime.walker``). What a frame may ask of the
walker is the ``Walker`` protocol below, so this module does not import it.
"""

from __future__ import annotations

import re
from typing import Protocol

from fetchd.mime.decoders import UU_BEGIN, Decoder, uu_line
from fetchd.mime.headers import decode_bytes
from fetchd.mime.parts import (
    CHUNK,
    MAX_HEADER_BYTES,
    Body,
    Event,
    Part,
    PartEnd,
    PartStart,
    label,
)

_FIELD = re.compile(rb"[!-9;-~]+[ \t]*:")
#: Only a line starting with "--" can be a delimiter (RFC 2046 section 5.1.1) ...
_DELIMITER = (b"--",)
#: ... and only one starting with "begin" can open a uuencoded file.
_DELIMITER_OR_BEGIN = (b"--", b"begin")


class Walker(Protocol):
    """What the frames need from the walker that drives them, and nothing more."""

    @property
    def at_eof(self) -> bool:
        """The input ended: the last line break is content, no delimiter follows it."""
        ...

    def emit(self, event: Event) -> None: ...
    def defect(self, message: str) -> None: ...
    def new_id(self) -> int: ...
    def push(self, frame: Frame) -> None: ...
    def top(self) -> Frame: ...
    def headers_done(self, head: HeaderFrame) -> None: ...
    def open_entity(self, head: HeaderFrame) -> None: ...
    def untap(self, tap: MessageFrame) -> None: ...


class Frame(Protocol):
    def line(self, walker: Walker, content: bytes, term: bytes, continued: bool) -> None: ...
    def close(self, walker: Walker) -> None: ...


class HeaderFrame:
    """Collects one header block, up to the blank line (RFC 5322 section 2.1)."""

    def __init__(
        self, default_type: str, parents: tuple[str, ...], index: int, parent_id: int | None
    ) -> None:
        self.default_type = default_type
        self.parents = parents
        self.index = index
        self.parent_id = parent_id
        self.block = bytearray()
        self._full = False

    @property
    def fresh(self) -> bool:
        """Nothing of the block has come yet."""
        return not self.block and not self._full

    def line(self, walker: Walker, content: bytes, term: bytes, continued: bool) -> None:
        if not continued:
            if not content:
                walker.headers_done(self)
                return
            if content[:1] not in (b" ", b"\t") and not _FIELD.match(content):
                # Mail clients read such a line as the first line of the body.
                walker.defect("a header block does not end with a blank line")
                walker.headers_done(self)
                walker.top().line(walker, content, term, continued)
                return
        if self._full or len(self.block) + len(content) + len(term) > MAX_HEADER_BYTES:
            if not self._full:
                walker.defect("a header block is too large; the rest of it was ignored")
            self._full = True
            return
        self.block += content
        self.block += term

    def close(self, walker: Walker) -> None:
        # No blank line and no body: allowed (RFC 5322 section 3.5, RFC 2046 5.1.1).
        # The frames this pushes are closed by the caller, which closes down to a level.
        walker.open_entity(self)


class MultipartFrame:
    """An open multipart: knows its delimiter and counts its parts."""

    def __init__(self, part: Part, boundary: bytes) -> None:
        self.part = part
        self._delimiter = b"--" + boundary
        self._digest = part.content_type == "multipart/digest"
        self._count = 0
        self.done = False

    def match(self, content: bytes) -> bool | None:
        """None if ``content`` is not our delimiter line, else whether it closes us."""
        if self.done or not content.startswith(self._delimiter):
            return None
        rest = content[len(self._delimiter) :]
        closing = rest.startswith(b"--")
        if closing:
            rest = rest[2:]
        # RFC 2046 section 5.1.1: only transport padding may follow the boundary.
        return None if rest.strip(b" \t") else closing

    def delimiter(self, walker: Walker, closing: bool) -> None:
        if closing:
            self.done = True
            return
        # RFC 2046 section 5.1.5: parts of a digest default to message/rfc822.
        default = "message/rfc822" if self._digest else "text/plain"
        parents = (*self.part.parents, self.part.content_type)
        walker.push(HeaderFrame(default, parents, self._count, self.part.id))
        self._count += 1

    def line(self, walker: Walker, content: bytes, term: bytes, continued: bool) -> None:
        """Preamble and epilogue lines carry nothing (RFC 2046 section 5.1.1)."""

    def close(self, walker: Walker) -> None:
        if not self._count:
            walker.defect(f"{label(self.part)}: no part delimiter found")
        elif not self.done:
            walker.defect(f"{label(self.part)}: closing boundary missing")
        walker.emit(PartEnd(self.part.id))


class MessageFrame:
    """An open message/rfc822 part: passes its raw lines on as its Body."""

    def __init__(self, part: Part) -> None:
        self.part = part
        self._pending = b""
        self._out = bytearray()

    def raw(self, walker: Walker, content: bytes, term: bytes) -> None:
        self._out += self._pending
        self._out += content
        self._pending = term
        if len(self._out) >= CHUNK:
            walker.emit(Body(self.part.id, bytes(self._out)))
            self._out.clear()

    def lines(self, walker: Walker, data: bytes, term: bytes) -> None:
        """A run of whole lines, the last ending in ``term``: as ``raw`` for each."""
        self._out += self._pending
        self._out += memoryview(data)[: len(data) - len(term)]
        self._pending = term
        if len(self._out) >= CHUNK:
            walker.emit(Body(self.part.id, bytes(self._out)))
            self._out.clear()

    def line(self, walker: Walker, content: bytes, term: bytes, continued: bool) -> None:
        """Unreachable while the enclosed message is open; nothing to do after."""

    def close(self, walker: Walker) -> None:
        walker.untap(self)
        if walker.at_eof:
            self._out += self._pending
        if self._out:
            walker.emit(Body(self.part.id, bytes(self._out)))
        walker.emit(PartEnd(self.part.id))


class LeafFrame:
    """A part with content: decodes it and hands it on in chunks."""

    def __init__(self, part: Part, decoder: Decoder, scanner: UUScanner | None) -> None:
        self.part = part
        self._decoder = decoder
        self._scanner = scanner
        self._pending = b""
        self._out = bytearray()

    def line(self, walker: Walker, content: bytes, term: bytes, continued: bool) -> None:
        if self._pending:
            self._out += self._decoder.end_line(self._pending)
        self._out += self._decoder.feed(content)
        self._pending = term
        if self._scanner is not None:
            self._scanner.line(walker, content, term)
        if len(self._out) >= CHUNK:
            walker.emit(Body(self.part.id, bytes(self._out)))
            self._out.clear()

    def stops(self) -> tuple[bytes, ...] | None:
        """Line starts that need a line of their own; None if every line does.

        Any other line only goes to the decoder, so runs of them can be
        decoded in one call (see ``lines``).
        """
        if self._scanner is None:
            return _DELIMITER
        return _DELIMITER_OR_BEGIN if self._scanner.idle else None

    def lines(self, walker: Walker, data: bytes, term: bytes) -> None:
        """A run of whole lines, none starting with a stop: as ``line`` for each."""
        if self._pending:
            self._out += self._decoder.end_line(self._pending)
        decoded = self._decoder.feed_lines(data, term)
        self._pending = term
        if len(decoded) < CHUNK:  # collected, as line() does
            self._out += decoded
            if len(self._out) >= CHUNK:
                self._flush(walker)
            return
        self._flush(walker)  # what came before goes first; the rest is not copied again
        walker.emit(Body(self.part.id, decoded))

    def _flush(self, walker: Walker) -> None:
        if self._out:
            walker.emit(Body(self.part.id, bytes(self._out)))
            self._out.clear()

    def close(self, walker: Walker) -> None:
        if walker.at_eof and self._pending:
            self._out += self._decoder.end_line(self._pending)
        self._out += self._decoder.finish()
        if self._scanner is not None:
            self._scanner.close(walker)
        if self._out:
            walker.emit(Body(self.part.id, bytes(self._out)))
        walker.emit(PartEnd(self.part.id))


class UUScanner:
    """Finds ``begin 644 name`` ... ``end`` blocks in a plain-text body.

    Mail from before MIME, and some clients since, put files in the body this
    way; each block becomes a part of its own. A ``begin`` line counts only if
    the line after it decodes, so prose that happens to start with "begin 644"
    makes no file.
    """

    def __init__(self, text: Part) -> None:
        self._text = text
        self._line = bytearray()
        self._name: str | None = None  # seen a begin line, waiting for data
        self._part: Part | None = None
        self._out = bytearray()
        self._bad = 0

    @property
    def idle(self) -> bool:
        """Neither in a file nor after a begin line: only a "begin" line can matter."""
        return self._name is None and self._part is None and not self._line

    def line(self, walker: Walker, content: bytes, term: bytes) -> None:
        if len(self._line) < 4096:  # no uuencoded line is this long
            self._line += content
        if term:
            line = bytes(self._line)
            self._line.clear()
            self._process(walker, line)

    def _process(self, walker: Walker, line: bytes) -> None:
        if self._name is not None:
            name, self._name = self._name, None
            if line.strip() != b"end" and not uu_line(line):
                return  # not uuencoded data after all
            self._begin(walker, name)
        if self._part is None:
            match = UU_BEGIN.fullmatch(line)
            if match and match.group(1):
                self._name = decode_bytes(match.group(1), None, [], what="uuencoded file name")
            return
        if line.strip() == b"end":
            self._end(walker)
            return
        data = uu_line(line)
        if data is None:
            self._bad += 1
            return
        self._out += data
        if len(self._out) >= CHUNK:
            walker.emit(Body(self._part.id, bytes(self._out)))
            self._out.clear()

    def _begin(self, walker: Walker, name: str) -> None:
        parents = (*self._text.parents, self._text.content_type)
        self._part = Part(
            walker.new_id(),
            "uuencode",
            "application/octet-stream",
            filename=name,
            parents=parents,
            parent_id=self._text.id,
        )
        walker.emit(PartStart(self._part))

    def _end(self, walker: Walker) -> None:
        assert self._part is not None
        if self._bad:
            walker.defect(f"{label(self._part)}: {self._bad} lines could not be decoded")
        if self._out:
            walker.emit(Body(self._part.id, bytes(self._out)))
            self._out.clear()
        walker.emit(PartEnd(self._part.id))
        self._part = None
        self._bad = 0

    def close(self, walker: Walker) -> None:
        if self._line:
            line = bytes(self._line)
            self._line.clear()
            self._process(walker, line)
        if self._part is not None:
            walker.defect(f"{label(self._part)}: no 'end' line; the file may be incomplete")
            self._end(walker)
