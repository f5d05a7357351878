"""Builders for the test messages that many test modules need.

Messages are deterministic (fixed Date, Message-ID derived from the subject) so
that a failing test can be rerun and compared byte for byte.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from email.message import EmailMessage
from email.policy import SMTP


def make_message(
    subject: str,
    body: str = "Hello.\n",
    *,
    sender: str = "Sender <sender@example.org>",
    to: str = "Alice <alice@example.org>",
    date: str = "Mon, 01 Jan 2024 12:00:00 +0000",
    message_id: str | None = None,
    attachments: Sequence[tuple[str, bytes, str]] = (),
) -> bytes:
    """An RFC 5322 message with CRLF line endings.

    ``attachments`` are ``(filename, content, "type/subtype")`` triples; with
    any, the message becomes multipart/mixed.
    """
    message = EmailMessage(policy=SMTP)
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = date
    digest = hashlib.sha256(subject.encode()).hexdigest()[:16]
    message["Message-ID"] = message_id or f"<{digest}@test.example.org>"
    message.set_content(body)
    for filename, content, mime_type in attachments:
        maintype, _, subtype = mime_type.partition("/")
        message.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return message.as_bytes()


def make_raw_message(subject: str, body: bytes, *, line_ending: bytes = b"\r\n") -> bytes:
    """A minimal message whose body bytes are kept exactly (bare LF, NUL, 8-bit, dots)."""
    head = line_ending.join(
        [
            b"From: sender@example.org",
            b"To: alice@example.org",
            b"Subject: " + subject.encode(),
            b"",
            b"",
        ]
    )
    return head + body


def make_large_message(size: int, *, subject: str = "large") -> bytes:
    """A message of about ``size`` octets, 76-character lines, some starting with a dot."""
    line = b"." + b"x" * 74 + b"\r\n"
    count = max(size // len(line), 1)
    return make_raw_message(subject, line * count)
