"""A small TNEF reader: the files inside a ``winmail.dat`` (application/ms-tnef).

Outlook wraps a rich-text message's attachments in TNEF [MS-OXTNEF]; people
who do not use Outlook see one useless ``winmail.dat``. A TNEF stream is a
signature, a legacy key, then attributes: level (1 byte), attribute id
(4 bytes: the id in the low word, its type in the high word), length
(4 bytes), data, 16-bit checksum. An attachment starts at attAttachRendData
and gathers attAttachTitle, attAttachData, and attAttachment (a MAPI
property list: long file name, MIME type, and sometimes the data itself).

The reader works on a seekable file in two steps so that memory stays small
whatever the attachment sizes: ``scan`` reads the small attributes and notes
where each file's data lies; ``copy_data`` copies one such range. Checksums
are not verified: a wrong one would not change what can be recovered.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import BinaryIO

from fetchd.mime.walker import decode_bytes

SIGNATURE = 0x223E9F78
_LEVELS = (0x01, 0x02)  # message, attachment

ATT_ATTACH_DATA = 0x800F
ATT_ATTACH_TITLE = 0x8010
ATT_ATTACH_REND_DATA = 0x9002
ATT_ATTACHMENT = 0x9005
ATT_OEM_CODEPAGE = 0x9007

PR_DISPLAY_NAME = 0x3001
PR_ATTACH_DATA = 0x3701
PR_ATTACH_FILENAME = 0x3704
PR_ATTACH_LONG_FILENAME = 0x3707
PR_ATTACH_MIME_TAG = 0x370E

PT_STRING8 = 0x001E
PT_UNICODE = 0x001F
PT_BINARY = 0x0102
PT_OBJECT = 0x000D
_MV = 0x1000
_VARIABLE = frozenset({PT_STRING8, PT_UNICODE, PT_BINARY, PT_OBJECT})
# Fixed-size property types and their encoded size, each padded to 4 bytes.
_FIXED = {
    0x0001: 0,  # PT_NULL
    0x0002: 4,  # PT_I2
    0x0003: 4,  # PT_LONG
    0x0004: 4,  # PT_R4
    0x0005: 8,  # PT_DOUBLE
    0x0006: 8,  # PT_CURRENCY
    0x0007: 8,  # PT_APPTIME
    0x000A: 4,  # PT_ERROR
    0x000B: 4,  # PT_BOOLEAN
    0x0014: 8,  # PT_I8
    0x0040: 8,  # PT_SYSTIME
    0x0048: 16,  # PT_CLSID
}
_NAME_PROPS = frozenset(
    {PR_DISPLAY_NAME, PR_ATTACH_FILENAME, PR_ATTACH_LONG_FILENAME, PR_ATTACH_MIME_TAG}
)
#: Longest string property kept; names and MIME types are far shorter.
_MAX_STRING = 64 * 1024
#: More values than this in one list means the stream is garbage.
_MAX_COUNT = 65536


@dataclass(frozen=True)
class TnefFile:
    """One attachment found in a TNEF stream: its data is ``length`` bytes at ``offset``."""

    name: str | None
    mime_type: str | None
    offset: int
    length: int


class _Truncated(Exception):
    """An attribute or property runs past the end of its container."""


@dataclass
class _Pending:
    title: str | None = None
    long_name: str | None = None
    short_name: str | None = None
    display_name: str | None = None
    mime_type: str | None = None
    data: tuple[int, int] | None = None
    prop_data: tuple[int, int] | None = None

    def started(self) -> bool:
        return any(value is not None for value in vars(self).values())

    def result(self) -> TnefFile | None:
        where = self.data or self.prop_data
        if where is None:
            return None
        name = self.long_name or self.title or self.short_name or self.display_name
        return TnefFile(name, self.mime_type, where[0], where[1])


class _Cursor:
    """Reads little-endian fields of one byte range of ``fp``, never past its end."""

    def __init__(self, fp: BinaryIO, start: int, end: int) -> None:
        self._fp = fp
        self.pos = start
        self.end = end

    def take(self, size: int) -> bytes:
        if size < 0 or self.pos + size > self.end:
            raise _Truncated
        self._fp.seek(self.pos)
        data = self._fp.read(size)
        if len(data) != size:
            raise _Truncated
        self.pos += size
        return data

    def skip(self, size: int) -> None:
        if size < 0 or self.pos + size > self.end:
            raise _Truncated
        self.pos += size

    def u16(self) -> int:
        value: int = struct.unpack("<H", self.take(2))[0]
        return value

    def u32(self) -> int:
        value: int = struct.unpack("<I", self.take(4))[0]
        return value


def scan(fp: BinaryIO) -> tuple[list[TnefFile], list[str]]:
    """The attachments in the TNEF stream ``fp`` (seekable), and what was wrong with it."""
    defects: list[str] = []
    end = fp.seek(0, io.SEEK_END)
    cursor = _Cursor(fp, 0, end)
    try:
        if cursor.u32() != SIGNATURE:
            return [], ["winmail.dat is not a TNEF stream"]
        cursor.skip(2)  # legacy key
    except _Truncated:
        return [], ["winmail.dat is too short to be a TNEF stream"]
    files: list[TnefFile] = []
    state = _Scan(fp, files, defects)
    try:
        while cursor.pos < end:
            level, attribute, length = struct.unpack("<BII", cursor.take(9))
            if level not in _LEVELS:
                defects.append(f"TNEF: unknown attribute level {level}; rest ignored")
                break
            start = cursor.pos
            if start + length > end:
                defects.append("TNEF: stream is truncated")
                length = end - start
            state.attribute(attribute & 0xFFFF, start, length)
            cursor.skip(min(length + 2, end - start))  # data and checksum
    except _Truncated:
        defects.append("TNEF: stream is truncated")
    state.finish()
    return files, defects


class _Scan:
    """Groups attributes into attachments (each starts at attAttachRendData)."""

    def __init__(self, fp: BinaryIO, files: list[TnefFile], defects: list[str]) -> None:
        self._fp = fp
        self._files = files
        self._defects = defects
        self._codepage = "cp1252"  # Outlook's usual; attOemCodepage overrides it
        self._current = _Pending()

    def attribute(self, attribute: int, start: int, length: int) -> None:
        current = self._current
        if attribute == ATT_ATTACH_REND_DATA:
            self.finish()
        elif attribute == ATT_ATTACH_TITLE:
            raw = _Cursor(self._fp, start, start + length).take(min(length, _MAX_STRING))
            current.title = self._string(raw)
        elif attribute == ATT_ATTACH_DATA:
            current.data = (start, length)
        elif attribute == ATT_ATTACHMENT:
            try:
                self._properties(_Cursor(self._fp, start, start + length))
            except _Truncated:
                self._defects.append("TNEF: an attachment's property list is truncated")
        elif attribute == ATT_OEM_CODEPAGE and length >= 4:
            page = _Cursor(self._fp, start, start + length).u32()
            self._codepage = f"cp{page}"

    def finish(self) -> None:
        """The current attachment is complete: record it if it has data."""
        current, self._current = self._current, _Pending()
        found = current.result()
        if found is not None:
            self._files.append(found)
        elif current.started():
            name = current.long_name or current.title or "an attachment"
            self._defects.append(
                f"TNEF: {name[:60]!r} has no file data (an embedded message or object); skipped"
            )

    def _properties(self, cursor: _Cursor) -> None:
        count = cursor.u32()
        if count > _MAX_COUNT:
            raise _Truncated
        for _ in range(count):
            kind, prop = cursor.u16(), cursor.u16()
            if prop >= 0x8000:  # a named property: GUID, then a number or a name
                cursor.skip(16)
                if cursor.u32() == 0:
                    cursor.skip(4)
                else:
                    cursor.skip(_padded(cursor.u32()))
            if not self._value(cursor, kind, prop):
                self._defects.append(f"TNEF: unknown property type 0x{kind:04x}; rest skipped")
                return

    def _value(self, cursor: _Cursor, kind: int, prop: int) -> bool:
        base = kind & ~_MV
        if base in _VARIABLE:
            count = cursor.u32()
            if count > _MAX_COUNT:
                raise _Truncated
            for _ in range(count):
                self._variable(cursor, base, prop, cursor.u32())
            return True
        if base not in _FIXED:
            return False
        count = cursor.u32() if kind & _MV else 1
        cursor.skip(count * _FIXED[base])
        return True

    def _variable(self, cursor: _Cursor, base: int, prop: int, size: int) -> None:
        current = self._current
        if prop == PR_ATTACH_DATA and base == PT_BINARY:
            current.prop_data = (cursor.pos, size)
        elif prop in _NAME_PROPS and base in (PT_STRING8, PT_UNICODE) and size <= _MAX_STRING:
            raw = cursor.take(size)
            cursor.skip(_padded(size) - size)
            unicode = base == PT_UNICODE
            decoded = raw.decode("utf-16-le", "replace") if unicode else self._string(raw)
            text = decoded.split("\0", 1)[0].strip() or None
            if prop == PR_ATTACH_LONG_FILENAME:
                current.long_name = text
            elif prop == PR_ATTACH_FILENAME:
                current.short_name = text
            elif prop == PR_DISPLAY_NAME:
                current.display_name = text
            else:
                current.mime_type = text
            return
        cursor.skip(_padded(size))

    def _string(self, raw: bytes) -> str:
        text = decode_bytes(raw.split(b"\0", 1)[0], self._codepage, self._defects, what="TNEF")
        return text.strip()


def _padded(size: int) -> int:
    return size + (-size % 4)


def copy_data(fp: BinaryIO, item: TnefFile, out: BinaryIO, *, chunk: int = 65536) -> int:
    """Copy ``item``'s data from ``fp`` to ``out``; returns the bytes copied."""
    fp.seek(item.offset)
    remaining = item.length
    while remaining > 0:
        data = fp.read(min(chunk, remaining))
        if not data:
            break
        out.write(data)
        remaining -= len(data)
    return item.length - remaining
