"""The MIME walker's bulk path: runs of lines in one call, the same result as line by line.

``walk(fp, bulk=False)`` feeds the walker one ``readline`` fragment at a time;
that is the reference. The default walk reads blocks and hands runs of lines
to the innermost leaf; whatever the message and the block size, the events it
gives must carry the same structure, defects and decoded bytes.
"""

from __future__ import annotations

import binascii
import hashlib
import io
import random
import tracemalloc
from collections.abc import Callable, Iterable, Sequence
from email.parser import HeaderParser
from email.policy import compat32
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fetchd.mime import walker as mime
from fetchd.mime.attachments import AttachmentPolicy, extract
from fetchd.mime.decoders import decoder_for
from fetchd.mime.lines import BlockReader
from fetchd.mime.walker import LINE_LIMIT, Body, Defect, Event, PartEnd, PartStart
from tests.mime.test_attachments import mixed_message, policy_message, related_message

Outcome = tuple[list[Event], dict[int, bytes]]


def outcome(events: Iterable[Event]) -> Outcome:
    """Every event but Body in order, and each part's decoded bytes.

    Body events may be cut differently by the two paths; each must still come
    while its part is open.
    """
    structure: list[Event] = []
    bodies: dict[int, bytes] = {}
    open_parts: set[int] = set()
    for event in events:
        if isinstance(event, Body):
            assert event.part_id in open_parts
            bodies[event.part_id] = bodies.get(event.part_id, b"") + event.data
            continue
        structure.append(event)
        if isinstance(event, PartStart):
            open_parts.add(event.part.id)
        elif isinstance(event, PartEnd):
            open_parts.remove(event.part_id)
    assert not open_parts
    return structure, bodies


def by_lines(raw: bytes) -> Outcome:
    return outcome(mime.walk(io.BytesIO(raw), bulk=False))


def in_blocks(raw: bytes, block_size: int) -> Outcome:
    return outcome(mime.walk(io.BytesIO(raw), block_size=block_size))


# --- random messages --------------------------------------------------------------------------

LONG_SIZES = (LINE_LIMIT - 2, LINE_LIMIT - 1, LINE_LIMIT, LINE_LIMIT + 1, 2 * LINE_LIMIT + 3)


@st.composite
def long_line(draw: st.DrawFn) -> bytes:
    """A line near or over LINE_LIMIT, so that readline cuts it (or just does not)."""
    unit = draw(st.sampled_from([b"A", b"QUJD", b"ab=", b"=4", b"-", b"x\r", b" ", b"\xff"]))
    size = draw(st.sampled_from(LONG_SIZES))
    return (unit * (size // len(unit) + 1))[:size]


@st.composite
def base64_lines(draw: st.DrawFn) -> list[bytes]:
    text = bytearray(binascii.b2a_base64(draw(st.binary(max_size=2000)), newline=False))
    for _ in range(draw(st.integers(0, 3))):  # junk, blanks, stray padding, lone CRs
        at = draw(st.integers(0, len(text)))
        text[at:at] = draw(st.sampled_from([b"!", b"-", b"_", b" ", b"\t", b"=", b"\r", b"*"]))
    if draw(st.integers(0, 3)) == 0:  # concatenated blocks, each with its padding
        text += binascii.b2a_base64(draw(st.binary(max_size=40)), newline=False)
    if draw(st.integers(0, 4)) == 0:  # cut off: a partial quantum, maybe one stray character
        del text[len(text) - draw(st.integers(1, 3)) :]
    width = draw(st.sampled_from([76, 72, 64]) | st.integers(1, 120))
    return [bytes(text[i : i + width]) for i in range(0, len(text), width)]


QP_PIECES = [b"=", b"==", b"=4", b"=41", b"=c3=A9", b"=\r", b" ", b"\t", b"\r", b"a", b"F", b"0"]


def qp_lines() -> st.SearchStrategy[list[bytes]]:
    line = st.lists(st.sampled_from([*QP_PIECES, b"plain text"]), max_size=8).map(b"".join)
    return st.lists(line, max_size=12)


def uu_block(name: bytes, data: bytes) -> list[bytes]:
    encoded = [binascii.b2a_uu(data[i : i + 45]).rstrip(b"\n") for i in range(0, len(data), 45)]
    return [b"begin 644 " + name, *encoded, b"`", b"end"]


@st.composite
def text_lines(draw: st.DrawFn, boundaries: Sequence[bytes]) -> list[bytes]:
    """Lines of a 7bit/8bit body: lookalike delimiters, uuencode, odd bytes."""
    lookalikes = [b"--", b"-", b"--not-the-boundary", b"-- ", b"begin 644", b"end", b"From x"]
    for boundary in boundaries:
        lookalikes += [b"--" + boundary + b"x", b"--" + boundary + b"-", b" --" + boundary]
    piece = st.sampled_from(lookalikes) | st.binary(max_size=30).map(
        lambda b: b.replace(b"\n", b"")
    )
    lines: list[bytes] = []
    for _ in range(draw(st.integers(0, 30))):
        choice = draw(st.integers(0, 9))
        if choice == 0:
            lines += uu_block(b"f.bin", draw(st.binary(max_size=100)))
        elif choice == 1 and boundaries:  # a real delimiter inside the part: it ends the part
            lines.append(b"--" + draw(st.sampled_from(boundaries)) + b"--" * draw(st.booleans()))
        else:
            lines.append(draw(piece))
    return lines


LEAF_TYPES = [
    b"application/octet-stream; name=f.bin",
    b"text/plain",  # no file name: a uuencoded file in it is found
    b"text/plain; name=notes.txt",
    b"text/html",
]
ENCODINGS = [b"base64", b"quoted-printable", b"7bit", b"8bit", b"binary", b"x-uuencode", b"bogus"]
ENCODINGS += [b"base64", b"quoted-printable", b"7bit"]  # the ones that matter most, more often


@st.composite
def header_lines(draw: st.DrawFn, boundaries: Sequence[bytes]) -> list[bytes]:
    """Header fields, and now and then what a header block should not hold."""
    odd = [b"X-Folded: a", b" continued", b"\tcontinued", b"not a header", b"X-Cr: a\r"]
    odd += [b"\r", b"X-Empty:", b"From x", b"8bit\xff: v", b"X-Long: " + b"h" * LINE_LIMIT]
    odd += [b"-- x", b"--x: y", b"Subject: =?utf-8?q?caf=C3=A9?="]
    for boundary in boundaries:  # a delimiter among the headers ends the part
        odd += [b"--" + boundary, b"--" + boundary + b"--", b"--" + boundary + b":"]
    if draw(st.integers(0, 3)):
        return []
    return draw(st.lists(st.sampled_from(odd), max_size=3))


@st.composite
def leaf(draw: st.DrawFn, boundaries: Sequence[bytes]) -> list[bytes]:
    encoding = draw(st.sampled_from(ENCODINGS))
    head = [b"Content-Type: " + draw(st.sampled_from(LEAF_TYPES))]
    head.append(b"Content-Transfer-Encoding: " + encoding)
    head[draw(st.integers(0, 2)) : 0] = draw(header_lines(boundaries))
    if encoding == b"base64":
        body = draw(base64_lines())
    elif encoding == b"quoted-printable":
        body = draw(qp_lines())
    elif encoding == b"x-uuencode":
        body = uu_block(b"u.bin", draw(st.binary(max_size=200)))
    else:
        body = draw(text_lines(boundaries))
    if draw(st.integers(0, 9)) == 0:
        body.insert(draw(st.integers(0, len(body))), draw(long_line()))
    return [*head, b"", *body]


@st.composite
def entity(draw: st.DrawFn, depth: int, boundaries: tuple[bytes, ...]) -> list[bytes]:
    kinds = ["multipart", "leaf", "multipart", "message", "leaf"]
    kind = draw(st.sampled_from(kinds if depth < 3 else ["leaf"]))
    if kind == "leaf":
        return draw(leaf(boundaries))
    if kind == "message":
        return [b"Content-Type: message/rfc822", b"", *draw(entity(depth + 1, boundaries))]
    boundary = str(depth).encode() + draw(st.sampled_from([b"b", b"outer", b"=_x", b"b-1", b":"]))
    inner = (*boundaries, boundary)
    subtype = draw(st.sampled_from([b"mixed", b"digest", b"alternative"]))
    lines = [b"Content-Type: multipart/" + subtype + b'; boundary="' + boundary + b'"', b""]
    lines += draw(st.lists(st.sampled_from([b"preamble", b"--", b""]), max_size=2))
    for _ in range(draw(st.integers(0, 4))):
        lines.append(b"--" + boundary + draw(st.sampled_from([b"", b"  ", b"\t"])))
        lines += draw(entity(depth + 1, inner))
    if draw(st.integers(0, 4)):
        lines.append(b"--" + boundary + b"--")
        lines += draw(st.lists(st.sampled_from([b"epilogue", b"-- x"]), max_size=2))
    return lines


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """A random message: LF or CRLF (sometimes mixed), maybe cut short or without a last break."""
    lines = [b"From: a@example.org", *draw(header_lines(())), b"Subject: random"]
    lines += draw(entity(0, ()))
    if draw(st.integers(0, 5)) == 0:
        lines.insert(0, b"From a@example.org Thu Nov 26 14:02:00 2026")
    eol = draw(st.sampled_from([b"\n", b"\r\n"]))
    mixed = draw(st.integers(0, 4)) == 0
    other = b"\n" if eol == b"\r\n" else b"\r\n"
    raw = b"".join(line + (other if mixed and draw(st.booleans()) else eol) for line in lines)
    if draw(st.integers(0, 5)) == 0:  # cut short, mostly near the end
        raw = raw[: max(0, len(raw) - draw(st.integers(0, 300)))]
    elif draw(st.integers(0, 3)) == 0:
        raw = raw[: -len(eol)]
    return raw


BLOCK_SIZES = st.integers(1, 100) | st.sampled_from([4096, 65536, 1 << 20])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages(), st.lists(BLOCK_SIZES, min_size=1, max_size=3))
def test_the_bulk_walk_equals_the_line_by_line_walk(raw: bytes, sizes: list[int]) -> None:
    expected = by_lines(raw)
    for size in sizes:
        assert in_blocks(raw, size) == expected


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"], ids=["LF", "CRLF"])
@pytest.mark.parametrize("size", [1, 2, 3, 7, 77, 78, 4096, 1 << 20])
@pytest.mark.parametrize("build", [mixed_message, related_message, policy_message])
def test_known_messages_at_every_block_size(
    build: Callable[[], bytes], size: int, eol: bytes
) -> None:
    raw = build().replace(b"\n", eol)
    expected = by_lines(raw)
    assert expected[1]  # something was decoded: the comparison means something
    assert in_blocks(raw, size) == expected


@pytest.mark.parametrize("extra", [-1, 0, 1, 2])
@pytest.mark.parametrize("eol", [b"\n", b"\r\n"], ids=["LF", "CRLF"])
@pytest.mark.parametrize("encoding", [b"7bit", b"quoted-printable", b"base64"])
def test_lines_at_the_fragment_limit(extra: int, eol: bytes, encoding: bytes) -> None:
    """A line one byte over LINE_LIMIT is two fragments, the first ending in its CR."""
    line = (b"QUJD" * LINE_LIMIT)[: LINE_LIMIT + extra - len(eol)]
    raw = eol.join(
        [
            b"Content-Type: multipart/mixed; boundary=b",
            b"",
            b"--b",
            b"Content-Type: application/octet-stream; name=a.bin",
            b"Content-Transfer-Encoding: " + encoding,
            b"",
            b"QUJD",
            line,  # the last line before the delimiter: its break is not content
            b"--b",
            b"",
            line,
            b"QUJD",
            b"--b--",
            b"",
        ]
    )
    expected = by_lines(raw)
    for size in (1, 7, 4096, 1 << 20):
        assert in_blocks(raw, size) == expected


ODD_HEADERS = {
    "delimiter that looks like a field": [b"--b:", b"Content-Type: text/plain"],
    "closing delimiter that looks like a field": [b"--b:--: x"],
    "not a field": [b"Content-Type: text/plain", b"this is body text", b"X: y"],
    "lone CR line": [b"X: y", b"\r", b"Content-Type: application/pdf"],
    "blank after CR": [b"Content-Type: application/pdf\r"],
    "folded": [b"Content-Type: application/octet-stream;", b"\tname=f.bin", b" "],
    "line at the limit": [b"X-Long: " + b"h" * (LINE_LIMIT - 12)],
    "line over the limit": [b"X-Long: " + b"h" * LINE_LIMIT],
    "colon past the limit": [b"X" * LINE_LIMIT + b": v"],
    "no fields": [],
}


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r\n\n"], ids=["LF", "CRLF", "mixed"])
@pytest.mark.parametrize("head", list(ODD_HEADERS.values()), ids=list(ODD_HEADERS))
@pytest.mark.parametrize("mbox", [b"", b"From a@example.org", b"From : x"], ids=["", "mbox", ":"])
def test_header_blocks_read_whole_equal_line_by_line(
    head: list[bytes], eol: bytes, mbox: bytes
) -> None:
    """A header block is taken at once only where line by line would read it the same."""
    first = eol[:-1] if eol == b"\r\n\n" else eol  # mixed: CRLF, then LF lines
    rest = eol[-1:]
    top = [mbox] if mbox else []
    top += [b'Content-Type: multipart/mixed; boundary="b:"', *head, b""]
    part = [*head, b"", b"text", b"--b:", b"--b:--: x", b"", b"--b:--", b"epilogue"]
    raw = first.join(top) + first + b"pre" + rest + b"--b:" + rest + rest.join(part) + rest
    expected = by_lines(raw), headers_of(mime.walk(io.BytesIO(raw), bulk=False))
    for size in (1, 7, 4096, 1 << 20):
        walked = headers_of(mime.walk(io.BytesIO(raw), block_size=size))
        assert (in_blocks(raw, size), walked) == expected


def headers_of(events: Iterable[Event]) -> list[list[tuple[str, str]]]:
    """The header fields of each part, which ``outcome`` leaves out."""
    return [
        [(name, str(value)) for name, value in event.part.headers.items()]
        for event in events
        if isinstance(event, PartStart) and event.part.headers is not None
    ]


def test_header_blocks_are_read_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """Header blocks cost no trip through the walker per line; delimiters still do."""
    fed: list[bytes] = []
    feed = mime.MimeWalker.feed

    def recording(self: mime.MimeWalker, fragment: bytes) -> list[Event]:
        fed.append(fragment)
        return feed(self, fragment)

    raw = mixed_message()
    expected = by_lines(raw)
    monkeypatch.setattr(mime.MimeWalker, "feed", recording)
    assert in_blocks(raw, 1 << 20) == expected
    assert fed
    assert not [line for line in fed if b": " in line and not line.startswith(b"M")]


def count_fragments(monkeypatch: pytest.MonkeyPatch, raw: bytes) -> tuple[int, Outcome]:
    """How many fragments the bulk walk fed line by line, and what it found."""
    calls = 0
    feed = mime.MimeWalker.feed

    def counting(self: mime.MimeWalker, fragment: bytes) -> list[Event]:
        nonlocal calls
        calls += 1
        return feed(self, fragment)

    monkeypatch.setattr(mime.MimeWalker, "feed", counting)
    found = in_blocks(raw, 1 << 20)
    return calls, found


def test_a_long_base64_part_is_decoded_in_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of the bulk path: not one trip through the walker per line."""
    data = random.Random(3).randbytes(2_000_000)
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\n\n--b\n"
        b"Content-Type: application/pdf; name=a.pdf\nContent-Transfer-Encoding: base64\n\n"
        + base64_wrapped(data, b"\n")
        + b"--b--\n"
    )
    calls, (structure, bodies) = count_fragments(monkeypatch, raw)
    assert bodies[1] == data
    assert not [e for e in structure if isinstance(e, Defect)]
    assert calls < 50  # instead of ~35,000 lines


def test_a_long_text_body_is_taken_in_runs_around_its_uuencoded_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = random.Random(4).randbytes(2_000)
    prose = b"a line of prose, with a - and a -- in it\n" * 20_000
    body = prose + b"\n".join(uu_block(b"f.bin", data)) + b"\n-- \nsignature\n" + prose
    raw = b"Content-Type: text/plain\nContent-Transfer-Encoding: 8bit\n\n" + body
    calls, (structure, bodies) = count_fragments(monkeypatch, raw)
    assert bodies == {0: body, 1: data}
    assert [e.part.kind for e in structure if isinstance(e, PartStart)] == ["leaf", "uuencode"]
    assert calls < 100  # the file's lines and the signature line, not 40,000 lines of prose


# --- the pieces: the block reader and the decoders --------------------------------------------


def base64_wrapped(data: bytes, eol: bytes) -> bytes:
    """Base64 in 76-character lines, as mail user agents send it (RFC 2045 section 6.8)."""
    return b"".join(
        binascii.b2a_base64(data[i : i + 57], newline=False) + eol for i in range(0, len(data), 57)
    )


@st.composite
def line_soup(draw: st.DrawFn) -> bytes:
    """Bytes with many short lines, some long ones and stray CRs."""
    pieces = st.sampled_from([b"\n", b"\r\n", b"\r", b"--", b"-", b"ab", b"begin"]) | long_line()
    return b"".join(draw(st.lists(pieces, max_size=40)))


@settings(deadline=None)
@given(line_soup(), BLOCK_SIZES)
def test_the_reader_gives_what_readline_gives(data: bytes, size: int) -> None:
    expected = io.BytesIO(data)
    reader = BlockReader(io.BytesIO(data), size)
    while True:
        fragment = reader.readline()
        assert fragment == expected.readline(LINE_LIMIT)
        if not fragment:
            break


@settings(deadline=None)
@given(line_soup(), BLOCK_SIZES, st.data())
def test_runs_of_lines_hold_whole_short_lines_without_stops(
    data: bytes, size: int, draw: st.DataObject
) -> None:
    reader = BlockReader(io.BytesIO(data), size)
    got = bytearray()
    line_start = True
    while True:
        stops = draw.draw(st.sampled_from([(b"--",), (b"--", b"begin")]))
        run = reader.lines(stops) if line_start else b""
        if run:
            lines = run.split(b"\n")
            assert lines.pop() == b""  # whole lines only
            for line in lines:
                assert len(line) + 1 <= LINE_LIMIT
                assert not line.startswith(stops)
            got += run
            continue
        fragment = reader.readline()
        if not fragment:
            break
        got += fragment
        line_start = fragment.endswith(b"\n")
    assert got == data  # nothing lost, nothing twice, in order


def possible_line(content: bytes, brk: bytes) -> tuple[bytes, bytes]:
    """A CR that ends the content would have made the break a CRLF."""
    return (content, b"\r\n") if content.endswith(b"\r") else (content, brk)


decoder_lines = st.lists(
    st.builds(
        possible_line,
        st.lists(
            st.sampled_from([*QP_PIECES, b"QUJD", b"YQ", b"-", b"!", b"begin 644 x", b"#0V)C"])
        ).map(b"".join),
        st.sampled_from([b"\n", b"\r\n"]),
    ),
    min_size=1,
    max_size=12,
)


@settings(deadline=None, max_examples=400)
@given(
    st.sampled_from(["base64", "quoted-printable", "7bit", "x-uuencode"]),
    decoder_lines,
    st.booleans(),
    st.data(),
)
def test_feed_lines_equals_feed_and_end_line(
    encoding: str, lines: list[tuple[bytes, bytes]], boundary: bool, data: st.DataObject
) -> None:
    """Whatever the lines, however they are grouped into runs, whether a boundary follows."""
    expected_reports: list[str] = []
    reference = decoder_for(encoding, expected_reports.append)
    expected = bytearray()
    for index, (content, brk) in enumerate(lines):
        expected += reference.feed(content)
        if index < len(lines) - 1 or not boundary:
            expected += reference.end_line(brk)
    expected += reference.finish()

    reports: list[str] = []
    decoder = decoder_for(encoding, reports.append)
    got = bytearray()
    rest = lines
    while rest:
        count = data.draw(st.integers(1, len(rest)))
        group, rest = rest[:count], rest[count:]
        if data.draw(st.booleans()):
            got += decoder.feed_lines(b"".join(c + b for c, b in group), group[-1][1])
        else:
            for content, brk in group[:-1]:
                got += decoder.feed(content)
                got += decoder.end_line(brk)
            got += decoder.feed(group[-1][0])
        if rest or not boundary:
            got += decoder.end_line(group[-1][1])
    got += decoder.finish()
    assert bytes(got) == bytes(expected)
    assert reports == expected_reports


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"], ids=["LF", "CRLF"])
@pytest.mark.parametrize(
    "odd",
    [b"a==", b"a=  ", b"a \t", b"a=\t", b"x=\ry", b"x=\r", b"=", b"= ", b"=4", b"=41", b"a=\r\r"],
)
def test_quoted_printable_lines_that_do_not_join(odd: bytes, eol: bytes) -> None:
    """Where the stdlib would read joined lines otherwise than one by one (RFC 2045 6.7)."""
    lines = [(b"before", eol), possible_line(odd, eol), (b"after=41", eol), (b"last", eol)]
    reports: list[str] = []
    reference = decoder_for("quoted-printable", reports.append)
    expected = b"".join(reference.feed(c) + reference.end_line(b) for c, b in lines)
    decoder = decoder_for("quoted-printable", reports.append)
    got = decoder.feed_lines(b"".join(c + b for c, b in lines), eol) + decoder.end_line(eol)
    assert got == expected


# --- memory -----------------------------------------------------------------------------------


def test_a_50_mb_attachment_is_extracted_in_bounded_memory(tmp_path: Path) -> None:
    block = random.Random(11).randbytes(57 * 1024)
    encoded = base64_wrapped(block, b"\n")
    eml = tmp_path / "big.eml"
    with eml.open("wb") as fp:
        fp.write(
            b"From: a@example.org\nSubject: big\nMIME-Version: 1.0\n"
            b'Content-Type: multipart/mixed; boundary="XX"\n\n--XX\n\nbig file\n--XX\n'
            b'Content-Type: application/octet-stream; name="big.bin"\n'
            b"Content-Transfer-Encoding: base64\n\n"
        )
        copies = 50 * 1024 * 1024 // len(encoded) + 1
        for _ in range(copies):
            fp.write(encoded)
        fp.write(b"--XX--\n")
    assert eml.stat().st_size > 50 * 1024 * 1024
    tracemalloc.start()
    try:
        result = extract(eml, tmp_path / "attachments", AttachmentPolicy())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024
    assert result.warnings == ()
    (big,) = result.files
    digest = hashlib.sha256()
    for _ in range(copies):
        digest.update(block)
    with big.open("rb") as fp:
        assert hashlib.file_digest(fp, "sha256").hexdigest() == digest.hexdigest()


def test_single_part_text_mail_costs_no_work_per_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The common case: one header parse, then no walk of the body at all."""
    header = b"From: a@example.org\nSubject: plain\nContent-Type: text/plain; charset=utf-8\n\n"
    raw = header + b"Hello,\nsome lines of text\n-- \nsigned\n" * 50
    eml = tmp_path / "plain.eml"
    eml.write_bytes(raw)
    expected = by_lines(raw)
    fed: list[bytes] = []
    parsed: list[bytes] = []
    feed, parse = mime.MimeWalker.feed, mime._parse_entity

    def recording(self: mime.MimeWalker, fragment: bytes) -> list[Event]:
        fed.append(fragment)
        return feed(self, fragment)

    def parsing(block: bytes, default_type: str, defects: list[str]) -> mime._Entity:
        parsed.append(block)
        return parse(block, default_type, defects)

    monkeypatch.setattr(mime.MimeWalker, "feed", recording)
    monkeypatch.setattr(mime.MimeWalker, "feed_lines", None)  # the body is not walked
    monkeypatch.setattr(mime, "_parse_entity", parsing)
    result = extract(eml, tmp_path / "attachments", AttachmentPolicy())
    assert (result.folder, result.warnings, result.info.subject) == (None, (), "plain")
    assert fed == []
    assert parsed == [header[:-1]]
    assert expected[0][0] == PartStart(mime.Part(0, "leaf", "text/plain"))


HEADER_PIECES = [b"Subject", b"X-A", b"From", b"From ", b":", b": ", b" ", b"\t", b"\r", b"\n"]
HEADER_PIECES += [b"\r\n", b"value", b"caf\xc3\xa9", b"\xff", b"=?utf-8?q?x?=", b";", b"\x85"]


@given(st.lists(st.sampled_from(HEADER_PIECES) | st.binary(max_size=4), max_size=40))
@example([b"From : envelope\n", b"X: y\n"])
@example([b"X: y\r\n", b"From  : misplaced\r\n", b"X: y\r\n"])
@example([b"X: y\rZ: lone CR\n"])
@example([b"Subject", b"From ", b":"])
def test_plain_header_blocks_parse_as_the_stdlib_does(pieces: list[bytes]) -> None:
    """Blocks of plain fields skip the stdlib's parser, with the same result."""
    block = b"".join(pieces)
    for candidate in (block, b"Subject: s\n" + block + b"\n", b"A: b\r\n X: " + block + b"\r\n"):
        text = "".join(mime._header_line(line) for line in io.BytesIO(candidate))
        expected = HeaderParser(policy=compat32).parsestr(text, headersonly=True)
        parsed = mime._parse_block(candidate)
        assert parsed.items() == expected.items()
        assert parsed.get_payload() == expected.get_payload()
        assert parsed.get_unixfrom() == expected.get_unixfrom()
        assert [type(d) for d in parsed.defects] == [type(d) for d in expected.defects]


def test_typical_header_blocks_take_the_plain_path() -> None:
    raw = mixed_message()
    block = raw[: raw.index(b"\n\n") + 1]
    assert mime._plain_fields(block.decode()) is not None
    assert mime._plain_fields(block.decode().replace("\n", "\r\n")) is not None
