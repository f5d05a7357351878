"""What a message says about itself: date, sender, subject and Message-ID.

Decoded from its top-level headers (RFC 2047 encoded words included); junk in
them yields empty fields, never an error.
"""

from __future__ import annotations

import email.utils
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


def _sender(headers: Message, warnings: list[str]) -> tuple[str, str]:
    raw = headers.get("from") or headers.get("sender")
    if raw is None:
        return "", ""
    try:
        name, address = email.utils.parseaddr(unfold(str(raw)))
    except Exception:  # address parsing is not hardened against hostile input
        name, address = "", ""
    # Encoded words are decoded after parsing: a decoded name may contain ',' or '<'.
    name = " ".join(decode_words(name, warnings).split())
    return name, " ".join(address.split())
