"""Content-Transfer-Encoding decoders for the MIME walker (RFC 2045 section 6).

Each decoder takes one body a line at a time, in bounded memory, and never
raises: characters it cannot use are skipped and reported through ``report``.
"""

from __future__ import annotations

import binascii
import functools
import re
from collections.abc import Callable
from typing import Literal, Protocol

from fetchd.mime.lines import whole_lines
from fetchd.mime.parts import CHUNK, LINE_LIMIT

_SIMD_B64DECODE: Callable[[bytes], bytes] | None
try:  # optional: tens of times faster than binascii on large attachments
    from pybase64 import b64decode as _pybase64_decode
except ImportError:  # pragma: no cover - the stdlib decodes the same, slower
    _SIMD_B64DECODE = None
else:
    _SIMD_B64DECODE = functools.partial(_pybase64_decode, validate=True)

#: Encodings whose bytes are the content itself.
IDENTITY = frozenset({"7bit", "8bit", "binary"})
_UUENCODE = frozenset({"x-uuencode", "uuencode", "x-uue", "uue"})
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_B64_DATA = _B64_ALPHABET[:-1]  # without the "=" of padding
_B64_SPACE = b" \t\r\n"
_B64_JUNK = bytes(b for b in range(256) if b not in _B64_ALPHABET and b not in _B64_SPACE)
#: Line ends where joined quoted-printable lines decode otherwise than one by one:
#: trailing blanks (rule 3), "==" before a soft line break (rule 5).
_QP_ODD_ENDS = (b" \n", b"\t\n", b"==\n")
_QP_ODD_CRLF_ENDS = (b" \r\n", b"\t\r\n", b"==\r\n")
#: The line that opens a uuencoded file: ``begin MODE NAME``.
UU_BEGIN = re.compile(rb"begin[ \t]+[0-7]{1,4}[ \t]+(.*?)[ \t]*")

Report = Callable[[str], None]


class Decoder(Protocol):
    """Decodes one body: content arrives per line, minus its line break.

    ``end_line`` says the line ended and the body goes on (RFC 2046 section
    5.1.1: the break before a boundary belongs to the boundary, so the last
    line of a body gets ``finish`` instead).

    ``feed_lines`` takes a run of whole lines at a line start, each with its
    break and none longer than ``LINE_LIMIT``, the last one ending in
    ``term``. It returns what ``feed`` and ``end_line`` line by line would,
    except that the last break is left to the caller: it may yet turn out to
    belong to a boundary.
    """

    def feed(self, content: bytes) -> bytes: ...
    def end_line(self, term: bytes) -> bytes: ...
    def feed_lines(self, data: bytes, term: bytes) -> bytes: ...
    def finish(self) -> bytes: ...


class _Identity:
    """7bit, 8bit, binary: the bytes are the content."""

    def feed(self, content: bytes) -> bytes:
        return content

    def end_line(self, term: bytes) -> bytes:
        return term

    def feed_lines(self, data: bytes, term: bytes) -> bytes:
        return data[: len(data) - len(term)]

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
        return _qp_line(self._take(), term)

    def feed_lines(self, data: bytes, term: bytes) -> bytes:
        body = len(data) - len(term)
        cut = data.rfind(b"\n", 0, body) + 1
        whole = data[:cut]
        self._line += data[cut:body]  # the last line waits for what follows it
        if _qp_joinable(whole):
            return binascii.a2b_qp(whole)
        return b"".join(_qp_line(content, brk) for content, brk in whole_lines(whole))

    def finish(self) -> bytes:
        return _qp_line(self._take(), b"")

    def _take(self) -> bytes:
        line = bytes(self._line)
        self._line.clear()
        return line


def _qp_joinable(lines: bytes) -> bool:
    """Whether the stdlib decodes these whole lines joined as it would each one."""
    if any(end in lines for end in _QP_ODD_ENDS):
        return False
    if b"\r" not in lines:  # the common case: stored messages end their lines in LF
        return True
    if any(end in lines for end in _QP_ODD_CRLF_ENDS):
        return False
    # A "=" before a CR that is no line break: the stdlib would skip to the next line feed.
    return lines.count(b"=\r") == lines.count(b"=\r\n")


def _qp_line(line: bytes, term: bytes) -> bytes:
    """One whole line of quoted-printable and the break after it (b"" for none)."""
    line = line.rstrip(b" \t")  # rule 3: trailing blanks were added in transport
    if line.endswith(b"="):  # rule 5: soft line break
        return binascii.a2b_qp(line[:-1])
    return binascii.a2b_qp(line) + term


class _Base64:
    """Base64 (RFC 2045 section 6.8): characters outside the alphabet are ignored."""

    def __init__(self, report: Report) -> None:
        self._report = report
        self._raw = bytearray()
        self._carry = b""
        self._junk = 0

    def feed(self, content: bytes) -> bytes:
        self._raw += content
        return self._drain(final=False) if len(self._raw) >= CHUNK else b""

    def end_line(self, term: bytes) -> bytes:
        return b""

    def feed_lines(self, data: bytes, term: bytes) -> bytes:
        # Line breaks carry nothing in base64, so the last one needs no care either.
        if self._raw:
            data = bytes(self._raw) + data
            self._raw.clear()
        return self._decode_block(data)

    def _decode_block(self, data: bytes) -> bytes:
        """Clean lines in one strict C call; anything unusual takes the careful path."""
        stream = self._carry + data.translate(None, b"\r\n")
        keep = len(stream) % 4
        head, tail = stream[: len(stream) - keep], stream[len(stream) - keep :]
        if not tail.translate(None, _B64_DATA):
            try:
                # Strict: any junk, blank or "=" but final padding makes it refuse.
                out = strict_b64decode(head)
            except binascii.Error:
                pass
            else:
                self._carry = tail
                return out
        self._raw += data
        return self._drain(final=False)

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


def strict_b64decode(data: bytes) -> bytes:
    """``binascii.a2b_base64(data, strict_mode=True)``, with SIMD where pybase64 is installed.

    pybase64 accepts less than strict binascii (no padding before the end),
    and where it accepts it decodes the same; what it refuses goes to binascii.
    """
    if _SIMD_B64DECODE is not None:
        try:
            return _SIMD_B64DECODE(data)
        except binascii.Error:
            pass
    return binascii.a2b_base64(data, strict_mode=True)


def uu_line(line: bytes) -> bytes | None:
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

    def feed_lines(self, data: bytes, term: bytes) -> bytes:
        # Rare enough to go line by line.
        body = len(data) - len(term)
        cut = data.rfind(b"\n", 0, body) + 1
        out = bytearray()
        for content, brk in whole_lines(data[:cut]):
            self.feed(content)
            out += self.end_line(brk)
        self.feed(data[cut:body])
        return bytes(out)

    def end_line(self, term: bytes) -> bytes:
        line = bytes(self._line)
        self._line.clear()
        if self._state == "before":
            self._state = "inside" if UU_BEGIN.fullmatch(line) else "before"
        elif self._state == "inside":
            if line.strip() == b"end":
                self._state = "after"
                return b""
            data = uu_line(line)
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


def decoder_for(encoding: str, report: Report) -> Decoder:
    """The decoder for one Content-Transfer-Encoding; an unknown one keeps the bytes."""
    if encoding == "base64":
        return _Base64(report)
    if encoding == "quoted-printable":
        return _QuotedPrintable()
    if encoding in _UUENCODE:
        return _UUBody(report)
    if encoding not in IDENTITY:
        report(f"unknown Content-Transfer-Encoding {encoding[:40]!r}; content kept as is")
    return _Identity()
