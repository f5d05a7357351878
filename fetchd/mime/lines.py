"""Lines for the MIME walker: line breaks, and reading a stored message in blocks.

Reading a message with ``readline`` costs a trip through the walker for every
76-character line of a base64 attachment, millions for a large one.
``BlockReader`` reads about a megabyte at a time and hands out either exactly
what ``readline(LINE_LIMIT)`` would return (one fragment, for the walker's
line-by-line path) or a run of whole lines that a leaf can take in one call.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from fetchd.mime.parts import BLOCK_SIZE, LINE_LIMIT


def split_break(fragment: bytes) -> tuple[bytes, bytes]:
    """A fragment's content and the line break that ends it (b"" if none does)."""
    if fragment.endswith(b"\r\n"):
        return fragment[:-2], b"\r\n"
    if fragment.endswith(b"\n"):
        return fragment[:-1], b"\n"
    return fragment, b""


def whole_lines(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Content and break of each line of ``data``, which ends with a line feed."""
    for piece in data.split(b"\n")[:-1]:
        yield (piece[:-1], b"\r\n") if piece.endswith(b"\r") else (piece, b"\n")


class BlockReader:
    """Reads a binary file in blocks; hands out fragments or runs of whole lines."""

    def __init__(self, fp: BinaryIO, block_size: int = BLOCK_SIZE) -> None:
        if block_size < 1:
            raise ValueError("block_size must be positive")
        self._fp = fp
        self._size = block_size
        self._buf = b""
        self._pos = 0
        self._eof = False

    def readline(self) -> bytes:
        """The next fragment, exactly what ``fp.readline(LINE_LIMIT)`` would return."""
        buf, start = self._buf, self._pos
        hit = buf.find(b"\n", start, start + LINE_LIMIT)
        if hit >= 0:  # the common case, kept short: header and text lines come this way
            self._pos = hit + 1
            return buf[start : hit + 1]
        return self._read_fragment()

    def _read_fragment(self) -> bytes:
        searched = 0
        while True:
            limit = min(len(self._buf), self._pos + LINE_LIMIT)
            hit = self._buf.find(b"\n", self._pos + searched, limit)
            if hit >= 0:
                return self._take(hit + 1)
            if limit == self._pos + LINE_LIMIT:
                return self._take(limit)
            searched = limit - self._pos  # _more() moves what is left to the front
            if not self._more():
                return self._take(len(self._buf))

    def lines(self, stops: tuple[bytes, ...]) -> bytes:
        """Whole lines from here, which must be a line start; b"" if there are none.

        The run ends before the first line that starts with one of ``stops`` or
        is longer than ``LINE_LIMIT``, and at the last line the buffer holds
        whole: each of its lines would have been one ``readline`` fragment.
        """
        buf, start = self._buf, self._pos
        end = len(buf)
        for stop in stops:
            end = _first_line_with(buf, stop, start, end)
        taken = start
        while taken < end:
            # Each window is LINE_LIMIT long, so every line it holds whole is short enough.
            last = buf.rfind(b"\n", taken, min(end, taken + LINE_LIMIT))
            if last < 0:
                break
            taken = last + 1
        return self._take(taken)

    def window(self, size: int) -> tuple[bytes, int, int]:
        """The buffer and where up to ``size`` bytes from here lie in it, not taken.

        Fewer only at the end of the file. Given as a window, not a copy:
        a header block is looked for here before each part of a multipart.
        """
        while len(self._buf) - self._pos < size and self._more():
            pass
        return self._buf, self._pos, min(len(self._buf), self._pos + size)

    def skip(self, size: int) -> None:
        """Take ``size`` bytes that ``window`` showed."""
        self._pos += size

    def _take(self, end: int) -> bytes:
        piece = self._buf[self._pos : end]
        self._pos = end
        return piece

    def _more(self) -> bool:
        """Read one more block; False at the end of the file."""
        if self._eof:
            return False
        rest = self._buf[self._pos :]
        # At least as much as is left: a long line then costs a few reads, not one per block.
        block = self._fp.read(max(self._size, len(rest)))
        if not block:
            self._eof = True
            return False
        self._buf = rest + block
        self._pos = 0
        return True


def _first_line_with(buf: bytes, prefix: bytes, start: int, end: int) -> int:
    """Where the first line in ``buf[start:end]`` starting with ``prefix`` begins, else end."""
    if buf.startswith(prefix, start, end):
        return start
    if buf.find(prefix[:1], start, end) < 0:  # one memchr, e.g. no "-" in base64 at all
        return end
    hit = buf.find(b"\n" + prefix, start, end)
    return end if hit < 0 else hit + 1
