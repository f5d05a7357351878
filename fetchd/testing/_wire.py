"""How the test server puts message content on the wire (RFC 1939 section 3).

Pure functions, so that the octet counts LIST reports and the bytes RETR sends
are computed from one definition: line ends become CRLF, a final line end is
added if missing, and lines starting with "." get one more.
"""

from __future__ import annotations

from collections.abc import Iterator

BLOCK = 64 * 1024


def served_size(content: bytes) -> int:
    """Octets RETR sends for ``content`` before dot-stuffing (what LIST and STAT report)."""
    bare_lf = content.count(b"\n") - content.count(b"\r\n")
    size = len(content) + bare_lf
    return size if content.endswith(b"\n") or not content else size + 2


def body_blocks(content: bytes, eol: bytes = b"\r\n") -> Iterator[bytes]:
    """``content`` in ~64 KB blocks cut at line ends, with ``eol`` endings, dot-stuffed.

    Cutting right after a newline means every block starts at the start of a
    line, so stuffing is a per-block replace: a 50 MB message is never copied whole.
    The terminating "." line is not included.
    """
    start, end = 0, len(content)
    while start < end:
        cut = content.find(b"\n", min(start + BLOCK, end) - 1)
        stop = end if cut == -1 else cut + 1
        block = content[start:stop].replace(b"\r\n", b"\n")
        if eol != b"\n":
            block = block.replace(b"\n", eol)
        if not block.endswith(b"\n"):
            block += eol  # the terminating "." must start a line of its own
        block = block.replace(b"\n.", b"\n..")
        yield b"." + block if block.startswith(b".") else block
        start = stop


def top(content: bytes, lines: int) -> bytes:
    """Headers, the blank line and the first ``lines`` body lines (RFC 1939 section 7)."""
    normal = content.replace(b"\r\n", b"\n")
    head, sep, body = normal.partition(b"\n\n")
    if not sep:
        return content  # no body at all: the whole message is header
    end = 0
    for _ in range(lines):
        newline = body.find(b"\n", end)
        if newline == -1:
            end = len(body)
            break
        end = newline + 1
    return head + b"\n\n" + body[:end]
