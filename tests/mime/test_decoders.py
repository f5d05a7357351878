"""Base64 with pybase64 (SIMD) decodes exactly as with binascii alone, corrupt input included."""

from __future__ import annotations

import binascii

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fetchd.mime import decoders
from fetchd.mime.decoders import decoder_for, strict_b64decode

pytest.importorskip("pybase64")

#: Base64 text with what breaks it: padding anywhere, junk, blanks, line breaks.
PIECES = [b"QUJD", b"QQ==", b"QUI=", b"QR==", b"=", b"==", b"A", b"+/", b"-_", b" ", b"\n", b"!"]


def corrupt_base64() -> st.SearchStrategy[bytes]:
    clean = st.binary(max_size=300).map(lambda raw: binascii.b2a_base64(raw, newline=False))
    return st.lists(clean | st.sampled_from(PIECES), max_size=12).map(b"".join)


def strict_or_error(decode: object, data: bytes) -> bytes | str:
    assert callable(decode)
    try:
        result = decode(data)
    except binascii.Error:
        return "error"
    assert isinstance(result, bytes)
    return result


@given(corrupt_base64() | st.binary(max_size=64))
def test_strict_decoding_equals_binascii_strict_mode(data: bytes) -> None:
    expected = strict_or_error(lambda d: binascii.a2b_base64(d, strict_mode=True), data)
    assert strict_or_error(strict_b64decode, data) == expected


@given(corrupt_base64(), st.sampled_from([76, 64, 5]), st.sampled_from([b"\n", b"\r\n"]))
def test_base64_bodies_decode_the_same_without_pybase64(
    data: bytes, width: int, eol: bytes
) -> None:
    lines = [data[i : i + width] for i in range(0, len(data), width)] or [b""]
    run = b"".join(line + eol for line in lines)

    def decode() -> tuple[bytes, list[str]]:
        reports: list[str] = []
        decoder = decoder_for("base64", reports.append)
        return decoder.feed_lines(run, eol) + decoder.finish(), reports

    with_simd = decode()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(decoders, "_SIMD_B64DECODE", None)
        assert decode() == with_simd
