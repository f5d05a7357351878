"""A streaming MIME walker: a message's structure and decoded parts, in bounded memory.

``email.message_from_bytes`` holds the whole message, several times over; a
200 MB message must not. This walker sees the stored message one line at a
time (a long line arrives in fragments of at most ``LINE_LIMIT`` bytes), keeps
a stack of the entities that are open, parses each header block (small) with
the stdlib, and decodes bodies as they stream past.

It is sans-IO: ``MimeWalker.feed`` takes fragments as ``readline(LINE_LIMIT)``
returns them and hands back events; ``walk`` drives it from a binary file::

    PartStart(part)   an entity begins: the message, each multipart, each leaf,
                      each message/rfc822, each uuencoded file in a text body
    Body(id, data)    decoded content of a leaf or uuencoded file; for a
                      message/rfc822 part, its raw content (the .eml bytes)
    PartEnd(id)       that entity is complete (or cut short: see Defect)
    Defect(text)      something was malformed; the walk goes on

Malformed input never raises: structure is recovered the way mail clients do
and the problem is reported as a ``Defect``.
"""

from __future__ import annotations

import binascii
import dataclasses
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32
from typing import BinaryIO, Literal, Protocol

#: Longest line fragment read at once; longer lines arrive in pieces.
LINE_LIMIT = 65536
#: Decoded data is handed on in chunks of about this size.
_CHUNK = 65536
#: Header blocks are small; a larger one is cut and the rest ignored.
MAX_HEADER_BYTES = 512 * 1024
#: Multiparts and messages nested deeper than this are not opened.
MAX_DEPTH = 32
#: After this many defects one more says the rest were not listed.
MAX_DEFECTS = 50

Kind = Literal["multipart", "message", "leaf", "uuencode"]


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


def walk(fp: BinaryIO) -> Iterator[Event]:
    """Walk the message in ``fp`` (binary, positioned at its start)."""
    walker = MimeWalker()
    while fragment := fp.readline(LINE_LIMIT):
        yield from walker.feed(fragment)
    yield from walker.close()


def read_headers(fp: BinaryIO) -> Message:
    """The top-level header block of the message in ``fp``, without reading its body."""
    for event in walk(fp):
        if isinstance(event, PartStart):
            assert event.part.headers is not None  # every entity but a uuencoded file has them
            return event.part.headers
    raise AssertionError("walk() always starts the top-level entity")  # pragma: no cover


# --- header decoding ------------------------------------------------------------------------

_ENCODED_WORD = re.compile(r"=\?([^?\s]+?)(?:\*[^?\s]*)?\?([bBqQ])\?([^?]*)\?=")
_FOLD = re.compile(r"\r?\n(?=[ \t])|\r|\n")
_FIELD = re.compile(rb"[!-9;-~]+[ \t]*:")
_TOKEN = re.compile(r"\s*([^\s;()]+)")


def decode_bytes(data: bytes, charset: str | None, defects: list[str], *, what: str) -> str:
    """Decode ``data`` in its declared charset; if that lies, as UTF-8, then Latin-1.

    Latin-1 maps every byte, so this never raises.
    """
    name = (charset or "").strip().strip('"').lower()
    if name:
        try:
            return data.decode(name)
        except (LookupError, UnicodeError, ValueError):
            pass
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    if name:
        defects.append(f"{what}: not valid in charset {name[:40]!r}, read as a fallback")
    return text


def decode_words(text: str, defects: list[str]) -> str:
    """Decode the RFC 2047 encoded words in ``text``, leaving other text alone.

    Also accepts what clients send against the rules: words inside quoted
    strings, spaces inside Q words, and multi-byte characters split across
    adjacent words (so adjacent words of one charset are decoded together).
    """
    out: list[str] = []
    run: list[tuple[str, bytes]] = []  # adjacent words not yet decoded
    pos = 0
    for match in _ENCODED_WORD.finditer(text):
        gap = text[pos : match.start()]
        # RFC 2047 section 6.2: whitespace between adjacent encoded words is dropped.
        if gap and not (run and gap.isspace()):
            out.extend(_flush_words(run, defects))
            out.append(gap)
        charset = match.group(1).lower()
        data = _word_bytes(match.group(2).upper(), match.group(3))
        if data is None:
            defects.append("an encoded word could not be decoded; kept as written")
            out.extend(_flush_words(run, defects))
            out.append(match.group(0))
        elif run and run[-1][0] == charset:
            run[-1] = (charset, run[-1][1] + data)
        else:
            run.append((charset, data))
        pos = match.end()
    out.extend(_flush_words(run, defects))
    out.append(text[pos:])
    return "".join(out)


def _flush_words(run: list[tuple[str, bytes]], defects: list[str]) -> list[str]:
    texts = [decode_bytes(data, charset, defects, what="encoded word") for charset, data in run]
    run.clear()
    return texts


def _word_bytes(encoding: str, payload: str) -> bytes | None:
    if encoding == "Q":
        return binascii.a2b_qp(payload.encode("utf-8"), header=True)
    data = "".join(payload.split()).encode("ascii", "ignore").rstrip(b"=")
    if len(data) % 4 == 1:
        return None
    try:  # senders often get the padding wrong: restore it
        return binascii.a2b_base64(data + b"=" * (-len(data) % 4))
    except binascii.Error:
        return None


def unfold(value: str) -> str:
    """Undo header folding (RFC 5322 section 2.2.3): line breaks go, the blanks stay."""
    return _FOLD.sub("", value)


def header_text(msg: Message, name: str, defects: list[str]) -> str:
    """Header ``name`` unfolded and decoded; empty if absent."""
    value = msg.get(name)
    return "" if value is None else decode_words(unfold(str(value)), defects)


def _param(msg: Message, name: str, header: str, defects: list[str]) -> str | None:
    """A parameter's decoded value: RFC 2231 (charset, continuations) or RFC 2047."""
    params = msg.get_params(header=header)
    if not params:
        return None
    found = [value for key, value in params if key.strip().lower() == name]
    if not found:
        return None
    # A client that sends both forms means the RFC 2231 one (RFC 2231 section 4).
    encoded = [value for value in found if isinstance(value, tuple)]
    value = encoded[0] if encoded else found[0]
    if isinstance(value, tuple):
        charset, _language, raw = value
        text = decode_bytes(_octets(raw), charset, defects, what=f"{name} parameter")
    else:
        text = decode_words(unfold(value), defects)
    return text.strip() or None


def _octets(raw: str) -> bytes:
    # The stdlib hands RFC 2231 values over as one character per octet, except
    # for unencoded continuations holding raw UTF-8, which arrive decoded.
    try:
        return raw.encode("latin-1")
    except UnicodeEncodeError:
        return b"".join(c.encode("latin-1" if ord(c) < 256 else "utf-8") for c in raw)


def _first_token(value: object) -> str | None:
    match = _TOKEN.match(str(value)) if value is not None else None
    return match.group(1).lower() if match else None


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
    # Line by line: UTF-8 where valid (RFC 6532 headers, raw UTF-8 names), else Latin-1,
    # so that one stray byte does not spoil the other headers.
    lines = [_header_line(line) for line in io.BytesIO(block)]
    return HeaderParser(policy=compat32).parsestr("".join(lines), headersonly=True)


def _header_line(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return line.decode("latin-1")


def _describe(msg: Message, default_type: str, defects: list[str]) -> _Entity:
    msg.set_default_type(default_type)
    content_type = msg.get_content_type()
    boundary = msg.get_boundary() if content_type.startswith("multipart/") else None
    filename = _param(msg, "filename", "content-disposition", defects) or _param(
        msg, "name", "content-type", defects
    )
    content_id = str(msg.get("content-id") or "").strip()
    return _Entity(
        headers=msg,
        content_type=content_type,
        encoding=_first_token(msg.get("content-transfer-encoding")) or "7bit",
        boundary=boundary.encode("utf-8") if boundary else None,
        disposition=_first_token(msg.get("content-disposition")),
        filename=filename,
        content_id=content_id or None,
    )


# --- body decoders --------------------------------------------------------------------------

_IDENTITY = frozenset({"7bit", "8bit", "binary"})
_UUENCODE = frozenset({"x-uuencode", "uuencode", "x-uue", "uue"})
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_B64_SPACE = b" \t\r\n"
_B64_JUNK = bytes(b for b in range(256) if b not in _B64_ALPHABET and b not in _B64_SPACE)
_UU_BEGIN = re.compile(rb"begin[ \t]+[0-7]{1,4}[ \t]+(.*?)[ \t]*")

Report = Callable[[str], None]


class _Decoder(Protocol):
    """Decodes one body: content arrives per line, minus its line break.

    ``end_line`` says the line ended and the body goes on (RFC 2046 section
    5.1.1: the break before a boundary belongs to the boundary, so the last
    line of a body gets ``finish`` instead).
    """

    def feed(self, content: bytes) -> bytes: ...
    def end_line(self, term: bytes) -> bytes: ...
    def finish(self) -> bytes: ...


class _Identity:
    """7bit, 8bit, binary: the bytes are the content."""

    def feed(self, content: bytes) -> bytes:
        return content

    def end_line(self, term: bytes) -> bytes:
        return term

    def finish(self) -> bytes:
        return b""


class _QuotedPrintable:
    """Quoted-printable (RFC 2045 section 6.7), one line at a time."""

    def __init__(self) -> None:
        self._line = bytearray()

    def feed(self, content: bytes) -> bytes:
        self._line += content
        if len(self._line) <= LINE_LIMIT:
            return b""
        # A runaway line: decode what cannot be part of an =XX escape or trailing blanks.
        cut = len(self._line.rstrip(b" \t"))
        for back in (1, 2):
            if self._line[cut - back : cut - back + 1] == b"=":
                cut -= back
                break
        out = binascii.a2b_qp(bytes(self._line[:cut]))
        del self._line[:cut]
        return out

    def end_line(self, term: bytes) -> bytes:
        line = self._take()
        if line.endswith(b"="):  # rule 5: soft line break
            return binascii.a2b_qp(line[:-1])
        return binascii.a2b_qp(line) + term

    def finish(self) -> bytes:
        line = self._take()
        return binascii.a2b_qp(line[:-1] if line.endswith(b"=") else line)

    def _take(self) -> bytes:
        # Rule 3: trailing blanks were added in transport and are deleted.
        line = bytes(self._line).rstrip(b" \t")
        self._line.clear()
        return line


class _Base64:
    """Base64 (RFC 2045 section 6.8): characters outside the alphabet are ignored."""

    def __init__(self, report: Report) -> None:
        self._report = report
        self._raw = bytearray()
        self._carry = b""
        self._junk = 0

    def feed(self, content: bytes) -> bytes:
        self._raw += content
        return self._drain(final=False) if len(self._raw) >= _CHUNK else b""

    def end_line(self, term: bytes) -> bytes:
        return b""

    def finish(self) -> bytes:
        out = self._drain(final=True)
        if self._junk:
            self._report(f"{self._junk} characters outside the base64 alphabet were ignored")
        return out

    def _drain(self, *, final: bool) -> bytes:
        data = bytes(self._raw).translate(None, _B64_SPACE)
        self._raw.clear()
        clean = data.translate(None, _B64_JUNK)
        self._junk += len(data) - len(clean)
        # '=' ends a block; some encoders concatenate padded blocks, so decode each.
        *padded, tail = (self._carry + clean).split(b"=")
        out = b"".join(self._decode(piece) for piece in padded if piece)
        if final:
            self._carry = b""
            return out + self._decode(tail)
        keep = len(tail) % 4
        self._carry = tail[len(tail) - keep :]
        return out + binascii.a2b_base64(tail[: len(tail) - keep])

    def _decode(self, piece: bytes) -> bytes:
        if len(piece) % 4 == 1:
            self._report("base64 data ends with a stray character")
            piece = piece[:-1]
        return binascii.a2b_base64(piece + b"=" * (-len(piece) % 4))


def _uu_line(line: bytes) -> bytes | None:
    """One uuencoded line; tolerates the trailing garbage some encoders add."""
    if not line:
        return b""
    try:
        return binascii.a2b_uu(line)
    except binascii.Error:
        count = (line[0] - 32) & 63
        try:
            return binascii.a2b_uu(line[: 1 + (count + 2) // 3 * 4])
        except binascii.Error:
            return None


class _UUBody:
    """Content-Transfer-Encoding x-uuencode: one begin ... end block is the body."""

    def __init__(self, report: Report) -> None:
        self._report = report
        self._line = bytearray()
        self._state: Literal["before", "inside", "after"] = "before"
        self._bad = 0

    def feed(self, content: bytes) -> bytes:
        if len(self._line) < 4096:
            self._line += content
        return b""

    def end_line(self, term: bytes) -> bytes:
        line = bytes(self._line)
        self._line.clear()
        if self._state == "before":
            self._state = "inside" if _UU_BEGIN.fullmatch(line) else "before"
        elif self._state == "inside":
            if line.strip() == b"end":
                self._state = "after"
                return b""
            data = _uu_line(line)
            self._bad += data is None
            return data or b""
        return b""

    def finish(self) -> bytes:
        out = self.end_line(b"") if self._line else b""
        if self._state != "after":
            self._report("uuencoded data has no begin or no end line")
        if self._bad:
            self._report(f"{self._bad} uuencoded lines could not be decoded")
        return out


def _decoder(encoding: str, report: Report) -> _Decoder:
    if encoding == "base64":
        return _Base64(report)
    if encoding == "quoted-printable":
        return _QuotedPrintable()
    if encoding in _UUENCODE:
        return _UUBody(report)
    if encoding not in _IDENTITY:
        report(f"unknown Content-Transfer-Encoding {encoding[:40]!r}; content kept as is")
    return _Identity()


# --- the walker -----------------------------------------------------------------------------


class _Frame(Protocol):
    def line(self, walker: MimeWalker, content: bytes, term: bytes, continued: bool) -> None: ...
    def close(self, walker: MimeWalker) -> None: ...


class MimeWalker:
    """Turns line fragments of one message into events (see the module docstring)."""

    def __init__(self) -> None:
        self._events: list[Event] = []
        self._stack: list[_Frame] = [_HeaderFrame("text/plain", (), 0)]
        self._taps: list[_MessageFrame] = []
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

    def close(self) -> list[Event]:
        """The message ended: close every open entity."""
        self.at_eof = True
        while self._stack:
            self._stack.pop().close(self)
        events, self._events = self._events, []
        return events

    def _line(self, fragment: bytes) -> None:
        content, term = _split(fragment)
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
            if isinstance(frame, _MultipartFrame):
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
        assert isinstance(frame, _MultipartFrame)
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

    def push(self, frame: _Frame) -> None:
        self._stack.append(frame)

    def top(self) -> _Frame:
        return self._stack[-1]

    def headers_done(self, head: _HeaderFrame) -> None:
        """``head``, the innermost frame, is complete: replace it by its entity."""
        popped = self._stack.pop()
        assert popped is head
        self.open_entity(head)

    def open_entity(self, head: _HeaderFrame) -> None:
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
            headers=entity.headers,
        )
        for text in defects:
            self.defect(f"{_label(part)}: {text}")
        depth = sum(isinstance(f, _MultipartFrame | _MessageFrame) for f in self._stack)
        if depth >= MAX_DEPTH and entity.content_type.split("/")[0] in ("multipart", "message"):
            self.defect(f"{_label(part)}: nested too deep; not opened")
        elif entity.content_type.startswith("multipart/") and entity.boundary:
            self._open_multipart(part, entity.boundary)
            return
        elif entity.content_type.startswith("multipart/"):
            self.defect(f"{_label(part)}: multipart without a boundary; not opened")
        elif entity.content_type in _MESSAGE_TYPES and entity.encoding in _IDENTITY:
            self._open_message(part)
            return
        self._open_leaf(part, entity.encoding)

    def _open_multipart(self, part: Part, boundary: bytes) -> None:
        part = dataclasses.replace(part, kind="multipart")
        self.emit(PartStart(part))
        self.push(_MultipartFrame(part, boundary))

    def _open_message(self, part: Part) -> None:
        # RFC 2046 section 5.2.1: message/rfc822 is 7bit, 8bit or binary, so its
        # content is a message to walk; its raw bytes also go out as Body events.
        part = dataclasses.replace(part, kind="message")
        self.emit(PartStart(part))
        tap = _MessageFrame(part)
        self._taps.append(tap)
        self.push(tap)
        self.push(_HeaderFrame("text/plain", (*part.parents, part.content_type), 0))

    def _open_leaf(self, part: Part, encoding: str) -> None:
        self.emit(PartStart(part))
        label = _label(part)
        decoder = _decoder(encoding, lambda text: self.defect(f"{label}: {text}"))
        scan = part.content_type == "text/plain" and encoding in _IDENTITY and not part.filename
        self.push(_LeafFrame(part, decoder, _UUScanner(part) if scan else None))

    def untap(self, tap: _MessageFrame) -> None:
        self._taps.remove(tap)


_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global"})


def _split(fragment: bytes) -> tuple[bytes, bytes]:
    if fragment.endswith(b"\r\n"):
        return fragment[:-2], b"\r\n"
    if fragment.endswith(b"\n"):
        return fragment[:-1], b"\n"
    return fragment, b""


def _label(part: Part) -> str:
    name = f" {part.filename[:60]!r}" if part.filename else ""
    return f"part {part.id} ({part.content_type}{name})"


class _HeaderFrame:
    """Collects one header block, up to the blank line (RFC 5322 section 2.1)."""

    def __init__(self, default_type: str, parents: tuple[str, ...], index: int) -> None:
        self.default_type = default_type
        self.parents = parents
        self.index = index
        self.block = bytearray()
        self._full = False

    def line(self, walker: MimeWalker, content: bytes, term: bytes, continued: bool) -> None:
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

    def close(self, walker: MimeWalker) -> None:
        # No blank line and no body: allowed (RFC 5322 section 3.5, RFC 2046 5.1.1).
        # The frames this pushes are closed by the caller, which closes down to a level.
        walker.open_entity(self)


class _MultipartFrame:
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

    def delimiter(self, walker: MimeWalker, closing: bool) -> None:
        if closing:
            self.done = True
            return
        # RFC 2046 section 5.1.5: parts of a digest default to message/rfc822.
        default = "message/rfc822" if self._digest else "text/plain"
        parents = (*self.part.parents, self.part.content_type)
        walker.push(_HeaderFrame(default, parents, self._count))
        self._count += 1

    def line(self, walker: MimeWalker, content: bytes, term: bytes, continued: bool) -> None:
        """Preamble and epilogue lines carry nothing (RFC 2046 section 5.1.1)."""

    def close(self, walker: MimeWalker) -> None:
        if not self._count:
            walker.defect(f"{_label(self.part)}: no part delimiter found")
        elif not self.done:
            walker.defect(f"{_label(self.part)}: closing boundary missing")
        walker.emit(PartEnd(self.part.id))


class _MessageFrame:
    """An open message/rfc822 part: passes its raw lines on as its Body."""

    def __init__(self, part: Part) -> None:
        self.part = part
        self._pending = b""
        self._out = bytearray()

    def raw(self, walker: MimeWalker, content: bytes, term: bytes) -> None:
        self._out += self._pending
        self._out += content
        self._pending = term
        if len(self._out) >= _CHUNK:
            walker.emit(Body(self.part.id, bytes(self._out)))
            self._out.clear()

    def line(self, walker: MimeWalker, content: bytes, term: bytes, continued: bool) -> None:
        """Unreachable while the enclosed message is open; nothing to do after."""

    def close(self, walker: MimeWalker) -> None:
        walker.untap(self)
        if walker.at_eof:
            self._out += self._pending
        if self._out:
            walker.emit(Body(self.part.id, bytes(self._out)))
        walker.emit(PartEnd(self.part.id))


class _LeafFrame:
    """A part with content: decodes it and hands it on in chunks."""

    def __init__(self, part: Part, decoder: _Decoder, scanner: _UUScanner | None) -> None:
        self.part = part
        self._decoder = decoder
        self._scanner = scanner
        self._pending = b""
        self._out = bytearray()

    def line(self, walker: MimeWalker, content: bytes, term: bytes, continued: bool) -> None:
        if self._pending:
            self._out += self._decoder.end_line(self._pending)
        self._out += self._decoder.feed(content)
        self._pending = term
        if self._scanner is not None:
            self._scanner.line(walker, content, term)
        if len(self._out) >= _CHUNK:
            walker.emit(Body(self.part.id, bytes(self._out)))
            self._out.clear()

    def close(self, walker: MimeWalker) -> None:
        if walker.at_eof and self._pending:
            self._out += self._decoder.end_line(self._pending)
        self._out += self._decoder.finish()
        if self._scanner is not None:
            self._scanner.close(walker)
        if self._out:
            walker.emit(Body(self.part.id, bytes(self._out)))
        walker.emit(PartEnd(self.part.id))


class _UUScanner:
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

    def line(self, walker: MimeWalker, content: bytes, term: bytes) -> None:
        if len(self._line) < 4096:  # no uuencoded line is this long
            self._line += content
        if term:
            line = bytes(self._line)
            self._line.clear()
            self._process(walker, line)

    def _process(self, walker: MimeWalker, line: bytes) -> None:
        if self._name is not None:
            name, self._name = self._name, None
            if line.strip() != b"end" and not _uu_line(line):
                return  # not uuencoded data after all
            self._begin(walker, name)
        if self._part is None:
            match = _UU_BEGIN.fullmatch(line)
            if match and match.group(1):
                self._name = decode_bytes(match.group(1), None, [], what="uuencoded file name")
            return
        if line.strip() == b"end":
            self._end(walker)
            return
        data = _uu_line(line)
        if data is None:
            self._bad += 1
            return
        self._out += data
        if len(self._out) >= _CHUNK:
            walker.emit(Body(self._part.id, bytes(self._out)))
            self._out.clear()

    def _begin(self, walker: MimeWalker, name: str) -> None:
        parents = (*self._text.parents, self._text.content_type)
        self._part = Part(
            walker.new_id(), "uuencode", "application/octet-stream", filename=name, parents=parents
        )
        walker.emit(PartStart(self._part))

    def _end(self, walker: MimeWalker) -> None:
        assert self._part is not None
        if self._bad:
            walker.defect(f"{_label(self._part)}: {self._bad} lines could not be decoded")
        if self._out:
            walker.emit(Body(self._part.id, bytes(self._out)))
            self._out.clear()
        walker.emit(PartEnd(self._part.id))
        self._part = None
        self._bad = 0

    def close(self, walker: MimeWalker) -> None:
        if self._line:
            line = bytes(self._line)
            self._line.clear()
            self._process(walker, line)
        if self._part is not None:
            walker.defect(f"{_label(self._part)}: no 'end' line; the file may be incomplete")
            self._end(walker)
