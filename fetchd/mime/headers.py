"""Header decoding for the MIME walker: encoded words, folding, parameters.

Every function here takes hostile input and never raises: text that cannot be
decoded is kept as written or read in a fallback charset, and the problem is
appended to the caller's ``defects`` list.
"""

from __future__ import annotations

import binascii
import re
from email.message import Message

_ENCODED_WORD = re.compile(r"=\?([^?\s]+?)(?:\*[^?\s]*)?\?([bBqQ])\?([^?]*)\?=")
_FOLD = re.compile(r"\r?\n(?=[ \t])|\r|\n")
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


def param(msg: Message, name: str, header: str, defects: list[str]) -> str | None:
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


def first_token(value: object) -> str | None:
    """The first word of a header value, lowercased (a type, encoding or disposition)."""
    match = _TOKEN.match(str(value)) if value is not None else None
    return match.group(1).lower() if match else None
