"""A message file counts the line ends it converts: the size check may rely on it.

``Reply.read_into`` judges a body of another size than LIST's by its LF and
CRLF counts. Given ``line_ends`` (``MessageFile.line_ends``) it skips counting
every chunk on the way; its verdict must be the very one it gives counting.
"""

from __future__ import annotations

import io
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fetchd.errors import SizeMismatchError
from fetchd.pop3.commands import Command
from fetchd.store.maildir import Maildir, MessageFile, message_key
from tests.pop3.scripted import session_after_login

#: Bodies of letters, CR and LF in any order (no dot: the wire needs no stuffing).
bodies = st.lists(st.sampled_from([b"a", b"\r", b"\n", b"\r\n"]), max_size=40).map(b"".join)


def cuts(data: bytes, sizes: list[int]) -> list[bytes]:
    """``data`` in pieces of the given sizes (cycled), every octet in one."""
    pieces, pos = [], 0
    for size in sizes * (len(data) + 1):
        if pos >= len(data):
            break
        pieces.append(data[pos : pos + size])
        pos += size
    return pieces


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, sizes=st.lists(st.integers(1, 5), min_size=1, max_size=6))
def test_the_counts_are_those_of_the_octets_written(
    tmp_path: Path, body: bytes, sizes: list[int]
) -> None:
    file = MessageFile(Maildir(tmp_path / "Maildir"), message_key("a", repr((body, sizes))))
    for piece in cuts(body, sizes):
        file.write(piece)
    assert file.line_ends() == (body.count(b"\n"), body.count(b"\r\n"))
    file.close()
    assert file.tmp_path.read_bytes() == body.replace(b"\r\n", b"\n")


def verdict(body: bytes, size: int, chunk: int | None, sink: object) -> bool:
    """Whether a RETR reply of ``body`` passes as LIST's ``size``, read into ``sink``."""
    session = session_after_login([b"+OK\r\n" + body + b".\r\n"], chunk)
    reply = session.exchange(Command.retr(1))
    line_ends = sink.line_ends if isinstance(sink, MessageFile) else None
    try:
        reply.read_into(sink, expect=size, line_ends=line_ends)  # type: ignore[arg-type]
    except SizeMismatchError:
        return False
    return True


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=bodies,
    off=st.integers(-12, 12),
    chunk=st.sampled_from([None, 1, 2, 3, 7]),
)
def test_a_size_is_judged_alike_counted_on_the_way_or_by_the_file(
    tmp_path: Path, text: bytes, off: int, chunk: int | None
) -> None:
    body = text + b"\r\n"  # a body ends with its last line's CRLF
    size = max(0, len(body) + off)
    file = MessageFile(Maildir(tmp_path / "Maildir"), message_key("a", repr((text, off, chunk))))
    try:
        assert verdict(body, size, chunk, file) == verdict(body, size, chunk, io.BytesIO())
    finally:
        file.discard()
