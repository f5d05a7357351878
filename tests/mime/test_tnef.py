"""The TNEF reader, against streams built here the way Outlook lays them out."""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fetchd.mime import tnef

# --- a small TNEF writer ([MS-OXTNEF] 2.1.3) ----------------------------------------------------

ATP_STRING = 0x0001
ATP_BYTE = 0x0006
ATP_WORD = 0x0007
ATP_DWORD = 0x0008
PT_LONG = 0x0003
PT_BOOLEAN = 0x000B
PT_SYSTIME = 0x0040
MV_LONG = 0x1003
MV_UNICODE = 0x101F


def attribute(level: int, attr_id: int, attr_type: int, data: bytes) -> bytes:
    """level, id (type in the high word), length, data, 16-bit checksum of the data."""
    header = struct.pack("<BII", level, (attr_type << 16) | attr_id, len(data))
    return header + data + struct.pack("<H", sum(data) & 0xFFFF)


def pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


Prop = tuple[int, int, bytes | list[bytes] | int]


def mapi_props(props: list[Prop], *, named: bool = False) -> bytes:
    """A MAPI property list; variable values get a count, a length and padding."""
    out = struct.pack("<I", len(props) + (1 if named else 0))
    if named:  # a named string property first: the reader must skip its GUID and name
        name = "X-Custom".encode("utf-16-le") + b"\0\0"
        out += struct.pack("<HH", tnef.PT_UNICODE, 0x8001) + b"G" * 16
        out += struct.pack("<II", 1, len(name)) + pad(name)
        out += struct.pack("<II", 1, 6) + pad(b"v\0a\0\0\0")
    for kind, prop, value in props:
        out += struct.pack("<HH", kind, prop)
        if isinstance(value, int):
            out += pad(struct.pack("<I", value) if kind != PT_SYSTIME else struct.pack("<Q", value))
        elif isinstance(value, list):
            out += struct.pack("<I", len(value))
            variable = kind & 0x0FFF in (tnef.PT_STRING8, tnef.PT_UNICODE, tnef.PT_BINARY)
            for item in value:
                out += struct.pack("<I", len(item)) + pad(item) if variable else item
        else:
            out += struct.pack("<II", 1, len(value)) + pad(value)
    return out


@dataclass
class TnefEntry:
    title: str | None = None
    data: bytes | None = None
    long_name: str | None = None
    mime_type: str | None = None
    prop_data: bytes | None = None
    extra: list[Prop] = field(default_factory=list)


def build_tnef(entries: list[TnefEntry], *, codepage: int = 1252) -> bytes:
    """A TNEF stream as Outlook writes it: message attributes, then each attachment."""
    out = struct.pack("<IH", tnef.SIGNATURE, 0x4E2A)
    out += attribute(1, 0x9006, ATP_DWORD, struct.pack("<I", 0x00010000))  # attTnefVersion
    out += attribute(1, tnef.ATT_OEM_CODEPAGE, ATP_BYTE, struct.pack("<II", codepage, 0))
    out += attribute(1, 0x8008, ATP_WORD, b"IPM.Microsoft Mail.Note\0")  # attMessageClass
    for entry in entries:
        out += attribute(2, tnef.ATT_ATTACH_REND_DATA, ATP_BYTE, b"\x01\x00" + b"\xff" * 12)
        if entry.title is not None:
            title = entry.title.encode(f"cp{codepage}") + b"\0"
            out += attribute(2, tnef.ATT_ATTACH_TITLE, ATP_STRING, title)
        if entry.data is not None:
            out += attribute(2, tnef.ATT_ATTACH_DATA, ATP_BYTE, entry.data)
        props: list[Prop] = [(PT_LONG, 0x3705, 1), (PT_BOOLEAN, 0x7FFE, 0)]
        props += [(PT_SYSTIME, 0x3007, 0x01D9_0000_0000_0000), *entry.extra]
        if entry.long_name is not None:
            long_name = entry.long_name.encode("utf-16-le") + b"\0\0"
            props.append((tnef.PT_UNICODE, tnef.PR_ATTACH_LONG_FILENAME, long_name))
        if entry.mime_type is not None:
            mime_tag = entry.mime_type.encode() + b"\0"
            props.append((tnef.PT_STRING8, tnef.PR_ATTACH_MIME_TAG, mime_tag))
        if entry.prop_data is not None:
            props.append((tnef.PT_BINARY, tnef.PR_ATTACH_DATA, entry.prop_data))
        out += attribute(2, tnef.ATT_ATTACHMENT, ATP_BYTE, mapi_props(props, named=True))
    return out


def extract_all(stream: bytes) -> tuple[dict[str | None, bytes], list[str]]:
    fp = io.BytesIO(stream)
    files, defects = tnef.scan(fp)
    contents = {}
    for item in files:
        out = io.BytesIO()
        assert tnef.copy_data(fp, item, out) == item.length
        contents[item.name] = out.getvalue()
    return contents, defects


# --- tests --------------------------------------------------------------------------------------


def test_files_and_their_data_are_found() -> None:
    stream = build_tnef(
        [
            TnefEntry(title="report.pdf", data=b"%PDF-1.7 report"),
            TnefEntry(title="photo.jpg", data=bytes(range(256)) * 10),
        ]
    )
    contents, defects = extract_all(stream)
    assert contents == {"report.pdf": b"%PDF-1.7 report", "photo.jpg": bytes(range(256)) * 10}
    assert defects == []


def test_the_long_file_name_wins_over_the_short_title() -> None:
    entry = TnefEntry(title="QUARTE~1.XLS", data=b"xls", long_name="Quarterly figures 2026.xlsx")
    contents, _ = extract_all(build_tnef([entry]))
    assert list(contents) == ["Quarterly figures 2026.xlsx"]


def test_the_mime_type_is_read() -> None:
    stream = build_tnef([TnefEntry(title="a.pdf", data=b"x", mime_type="application/pdf")])
    files, _ = tnef.scan(io.BytesIO(stream))
    assert files[0].mime_type == "application/pdf"


def test_data_may_come_from_the_mapi_property_instead() -> None:
    payload = b"binary property data" * 3 + b"x"  # not a multiple of 4: padded in the stream
    entry = TnefEntry(long_name="notes.txt", prop_data=payload)
    contents, defects = extract_all(build_tnef([entry, TnefEntry(title="b", data=b"b")]))
    assert contents == {"notes.txt": payload, "b": b"b"}
    assert defects == []


def test_titles_are_decoded_in_the_stream_codepage() -> None:
    stream = build_tnef([TnefEntry(title="Отчёт.doc", data=b"d")], codepage=1251)
    contents, defects = extract_all(stream)
    assert list(contents) == ["Отчёт.doc"]
    assert defects == []


def test_multi_valued_and_named_properties_are_skipped_correctly() -> None:
    extra: list[Prop] = [
        (MV_LONG, 0x6000, [struct.pack("<I", 7), struct.pack("<I", 8)]),
        (MV_UNICODE, 0x6001, ["a".encode("utf-16-le"), "bcd".encode("utf-16-le")]),
    ]
    entry = TnefEntry(title="t.bin", data=b"d", long_name="after the skipped ones.bin", extra=extra)
    contents, defects = extract_all(build_tnef([entry]))
    assert list(contents) == ["after the skipped ones.bin"]
    assert defects == []


def test_a_numbered_named_property_is_skipped() -> None:
    named = struct.pack("<HH", PT_LONG, 0x8005) + b"G" * 16 + struct.pack("<III", 0, 0x8233, 1)
    props = mapi_props(
        [(tnef.PT_UNICODE, tnef.PR_ATTACH_LONG_FILENAME, pad("n.txt\0".encode("utf-16-le")))]
    )
    count, rest = props[:4], props[4:]
    props = struct.pack("<I", struct.unpack("<I", count)[0] + 1) + named + rest
    stream = build_tnef([TnefEntry(title="T", data=b"x")])
    stream += attribute(2, tnef.ATT_ATTACHMENT, ATP_BYTE, props)
    contents, defects = extract_all(stream)
    assert list(contents) == ["n.txt"]
    assert defects == []


@pytest.mark.parametrize(
    ("prop", "expected"),
    [(tnef.PR_ATTACH_FILENAME, "SHORT.TXT"), (tnef.PR_DISPLAY_NAME, "SHORT.TXT")],
)
def test_other_name_properties_are_used_when_nothing_better_exists(
    prop: int, expected: str
) -> None:
    extra: list[Prop] = [(tnef.PT_STRING8, prop, b"SHORT.TXT\0")]
    contents, _ = extract_all(build_tnef([TnefEntry(data=b"d", extra=extra)]))
    assert list(contents) == [expected]


def test_an_absurd_value_count_is_reported() -> None:
    props = struct.pack("<I", 1) + struct.pack("<HHI", tnef.PT_BINARY, 0x6003, 10**9)
    stream = build_tnef([TnefEntry(title="kept", data=b"k")])
    stream += attribute(2, tnef.ATT_ATTACHMENT, ATP_BYTE, props)
    contents, defects = extract_all(stream)
    assert contents == {"kept": b"k"}
    assert any("property list is truncated" in d for d in defects)
    huge = struct.pack("<I", 10**9)
    stream = build_tnef([TnefEntry(title="kept", data=b"k")])
    stream += attribute(2, tnef.ATT_ATTACHMENT, ATP_BYTE, huge)
    assert extract_all(stream)[0] == {"kept": b"k"}


def test_an_attachment_without_data_is_reported_and_skipped() -> None:
    stream = build_tnef([TnefEntry(long_name="Embedded message"), TnefEntry(title="x", data=b"1")])
    contents, defects = extract_all(stream)
    assert contents == {"x": b"1"}
    assert any("Embedded message" in d and "no file data" in d for d in defects)


def test_an_unknown_property_type_stops_the_list_but_keeps_the_file() -> None:
    entry = TnefEntry(title="kept.txt", data=b"data", extra=[(0x0999, 0x6002, b"????")])
    contents, defects = extract_all(build_tnef([entry]))
    assert contents == {"kept.txt": b"data"}
    assert any("unknown property type 0x0999" in d for d in defects)


def test_not_a_tnef_stream() -> None:
    files, defects = tnef.scan(io.BytesIO(b"PK\x03\x04 this is a zip file"))
    assert files == []
    assert defects == ["winmail.dat is not a TNEF stream"]
    files, defects = tnef.scan(io.BytesIO(b"\x78"))
    assert files == []
    assert "too short" in defects[0]


def test_a_truncated_stream_keeps_what_is_complete() -> None:
    stream = build_tnef(
        [TnefEntry(title="one", data=b"1" * 100), TnefEntry(title="two", data=b"2")]
    )
    cut = stream.index(b"two") - 3
    files, defects = tnef.scan(io.BytesIO(stream[:cut]))
    assert [f.name for f in files] == ["one"]
    assert any("truncated" in d for d in defects)


def test_data_cut_short_is_reported_by_its_length() -> None:
    stream = build_tnef([TnefEntry(title="big", data=b"z" * 1000)])
    cut = stream.index(b"z" * 1000) + 400
    fp = io.BytesIO(stream[:cut])
    files, defects = tnef.scan(fp)
    assert [f.name for f in files] == ["big"]
    assert files[0].length == 400
    assert any("truncated" in d for d in defects)


def test_an_unknown_level_stops_the_scan() -> None:
    stream = build_tnef([TnefEntry(title="a", data=b"a")]) + b"\x07" + b"\0" * 12
    files, defects = tnef.scan(io.BytesIO(stream))
    assert [f.name for f in files] == ["a"]
    assert any("level 7" in d for d in defects)


def test_copy_data_copies_in_chunks() -> None:
    data = bytes(range(256)) * 1000
    stream = build_tnef([TnefEntry(title="x", data=data)])
    fp = io.BytesIO(stream)
    (item,), _ = tnef.scan(fp)
    out = io.BytesIO()
    assert tnef.copy_data(fp, item, out, chunk=1000) == len(data)
    assert out.getvalue() == data


@given(st.binary(max_size=600))
def test_garbage_after_the_signature_never_raises(tail: bytes) -> None:
    stream = struct.pack("<IH", tnef.SIGNATURE, 0) + tail
    files, defects = tnef.scan(io.BytesIO(stream))
    for item in files:
        assert 0 <= item.offset <= len(stream)
        assert item.length >= 0
    assert all(isinstance(d, str) for d in defects)


@given(st.integers(min_value=0, max_value=10_000), st.binary(min_size=1, max_size=4))
def test_truncated_or_corrupted_streams_never_raise(cut: int, junk: bytes) -> None:
    stream = build_tnef(
        [
            TnefEntry(title="a.txt", data=b"abc" * 50, long_name="A long name.txt"),
            TnefEntry(long_name="b.bin", prop_data=b"\x00\x01" * 30, mime_type="x/y"),
        ]
    )
    cut %= len(stream)
    corrupted = stream[:cut] + junk + stream[cut + len(junk) :]
    for candidate in (stream[:cut], corrupted):
        fp = io.BytesIO(candidate)
        files, _ = tnef.scan(fp)
        for item in files:
            out = io.BytesIO()
            tnef.copy_data(fp, item, out)
            assert len(out.getvalue()) <= item.length
