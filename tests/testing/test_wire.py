"""The test server's wire encoding, checked against a line-by-line reference."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fetchd.testing import _wire


def reference(content: bytes, eol: bytes = b"\r\n") -> bytes:
    """RFC 1939 section 3, the slow obvious way: per line, ``eol``, stuff leading dots."""
    if not content:
        return b""
    lines = content.replace(b"\r\n", b"\n").split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return b"".join((b"." + line if line.startswith(b".") else line) + eol for line in lines)


def unstuff(wire: bytes) -> bytes:
    lines = wire.split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


lines_with_dots = st.lists(
    st.sampled_from([b".", b"..", b".x", b"x.", b"\r", b"", b"abc", b"\x00", b"From "]),
    max_size=40,
).map(b"\n".join)
contents = st.one_of(st.binary(max_size=400), lines_with_dots)


@given(content=contents, block=st.integers(min_value=1, max_value=50))
def test_blocks_match_the_reference_at_any_block_size(content: bytes, block: int) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_wire, "BLOCK", block)
        wire = b"".join(_wire.body_blocks(content))
    assert wire == reference(content)
    assert len(unstuff(wire)) == _wire.served_size(content)


@given(content=contents)
def test_lf_only_blocks(content: bytes) -> None:
    assert b"".join(_wire.body_blocks(content, b"\n")) == reference(content, b"\n")


def test_top_keeps_headers_and_n_body_lines() -> None:
    message = b"A: 1\r\nB: 2\r\n\r\none\r\ntwo\r\nthree"
    assert _wire.top(message, 0) == b"A: 1\nB: 2\n\n"
    assert _wire.top(message, 2) == b"A: 1\nB: 2\n\none\ntwo\n"
    assert _wire.top(message, 5) == b"A: 1\nB: 2\n\none\ntwo\nthree"
    assert _wire.top(b"A: 1\r\n", 3) == b"A: 1\r\n"
