"""What a message says about itself: date, sender, subject and Message-ID.

Decoded from its top-level headers (RFC 2047 encoded words included); junk in
them yields empty fields, never an error.
"""

from __future__ import annotations

import email.utils
import re
from dataclasses import dataclass
from datetime import datetime
from email.message import Message

from fetchd.mime.headers import decode_words, header_text, unfold


@dataclass(frozen=True)
class MessageInfo:
    """The message's own description of itself, decoded (RFC 2047) and never raising."""

    date: datetime | None
    sender: str  # display name if any, else the address
    sender_address: str
    subject: str
    message_id: str | None


def info_from_headers(headers: Message, warnings: list[str]) -> MessageInfo:
    """Decode the describing headers of a message; junk yields empty fields, not errors."""
    name, address = _sender(headers, warnings)
    message_id = " ".join(unfold(str(headers.get("message-id") or "")).split())
    return MessageInfo(
        date=_date(headers.get("date")),
        sender=name or address,
        sender_address=address,
        subject=" ".join(header_text(headers, "subject", warnings).split()),
        message_id=message_id or None,
    )


def _date(value: object) -> datetime | None:
    if value is None:
        return None
    try:
        return email.utils.parsedate_to_datetime(unfold(str(value)))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ADDRESS = rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
#: The From forms nearly all mail uses, which ``parse_address`` reads without
#: the stdlib's character-by-character parser: a bare address, or one in
#: angle brackets after a name of plain words or a quoted name without escapes.
_SIMPLE_FROM = re.compile(
    rf"[ \t]*(?:(?P<bare>{_ADDRESS})"
    rf'|(?:(?P<words>{_ATOM}(?: {_ATOM})*)|"(?P<quoted>[^"\\\r\n]*)")? ?<(?P<angled>{_ADDRESS})>)'
    r"[ \t]*"
)


def parse_address(value: str) -> tuple[str, str]:
    """``email.utils.parseaddr``, the same result, faster for the common forms."""
    simple = _SIMPLE_FROM.fullmatch(value)
    if simple is None:
        return email.utils.parseaddr(value)
    if simple["bare"] is not None:
        return "", simple["bare"]
    return simple["words"] or simple["quoted"] or "", simple["angled"]


def _sender(headers: Message, warnings: list[str]) -> tuple[str, str]:
    raw = headers.get("from") or headers.get("sender")
    if raw is None:
        return "", ""
    try:
        name, address = parse_address(unfold(str(raw)))
    except Exception:  # address parsing is not hardened against hostile input
        name, address = "", ""
    # Encoded words are decoded after parsing: a decoded name may contain ',' or '<'.
    name = " ".join(decode_words(name, warnings).split())
    return name, " ".join(address.split())
