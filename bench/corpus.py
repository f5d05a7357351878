"""Deterministic benchmark mailboxes: the same bytes on every run and every machine.

Each message starts with an ``X-Bench-Id`` header. Clients that prepend headers
of their own (``Received``, ``Return-Path``, ``Delivered-To``) put them above
it, which is how ``verify`` tells their additions from the message.

Text bodies mix ASCII and UTF-8 words (8bit, as real mail is) and some lines
begin with a dot, so every client's dot-unstuffing is exercised (RFC 1939
section 3). Attachments are random bytes in base64 with CRLF line endings, as
a mail user agent would send them.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

__all__ = ["Corpus", "MailboxSpec", "generate", "normalised_digest"]

_VOCABULARY = (
    "the of and to in is that for it as with was on be at by this had not are but from or "
    "have an they which one you were her all she there would their we him been has when who "
    "will more no if out so said what up its about into than them can only other new some "
    "invoice meeting report quarter budget draft schedule attached please review thanks "
    "Grüße naïve café Straße déjà-vu 日本語 Ελληνικά привет ünïcödé"
)
_WORDS = _VOCABULARY.split()
_LINE_WIDTH = 72
_DOT_LINE_CHANCE = 0.03
#: base64 turns 57 raw bytes into a 76-character line plus CRLF (RFC 2045 section 6.8).
_B64_RAW_PER_LINE = 57
_B64_WIRE_PER_LINE = 78


@dataclass(frozen=True)
class MailboxSpec:
    """What one profile's mailbox holds.

    ``kind`` is ``"text"`` (``count`` messages of about ``size`` bytes),
    ``"mixed"`` (text messages, every fifth with 1-3 attachments whose sizes are
    log-uniform between ``attach_min`` and ``attach_max``) or ``"attachment"``
    (``count`` messages of about ``size`` bytes, nearly all one base64 attachment).
    """

    kind: str
    count: int
    size: int = 4096
    attach_min: int = 10 * 1024
    attach_max: int = 2 * 1024 * 1024


@dataclass
class Corpus:
    """Digests of what was delivered, filled in while the messages are generated."""

    messages: Counter[str] = field(default_factory=Counter)
    attachments: Counter[str] = field(default_factory=Counter)
    count: int = 0
    octets: int = 0

    def record(self, message: bytes, attachments: Iterable[bytes]) -> None:
        self.messages[normalised_digest(message)] += 1
        for blob in attachments:
            self.attachments[hashlib.sha256(blob).hexdigest()] += 1
        self.count += 1
        self.octets += len(message)


def normalised_digest(message: bytes) -> str:
    """sha256 of the message with CRLF turned into LF (Maildir files use LF)."""
    return hashlib.sha256(message.replace(b"\r\n", b"\n")).hexdigest()


def generate(name: str, spec: MailboxSpec, corpus: Corpus) -> Iterator[bytes]:
    """Yield the mailbox's messages (CRLF line endings), recording each in ``corpus``.

    Seeded with the profile name, so a profile's mailbox never changes.
    """
    rng = random.Random(f"fetchd-bench-{name}")
    for index in range(spec.count):
        message, attachments = _build(name, index, spec, rng)
        corpus.record(message, attachments)
        yield message


def _build(
    name: str, index: int, spec: MailboxSpec, rng: random.Random
) -> tuple[bytes, list[bytes]]:
    if spec.kind == "text":
        return _text_message(name, index, spec.size, rng), []
    if spec.kind == "attachment":
        raw_size = max(1, (spec.size - 2048) * _B64_RAW_PER_LINE // _B64_WIRE_PER_LINE)
        blobs = [_random_bytes(rng, raw_size)]
        return _multipart(name, index, rng, blobs), blobs
    if spec.kind == "mixed":
        if index % 5 != 0:
            return _text_message(name, index, rng.randint(1500, 8000), rng), []
        blobs = [
            _random_bytes(rng, _log_uniform(rng, spec.attach_min, spec.attach_max))
            for _ in range(rng.randint(1, 3))
        ]
        return _multipart(name, index, rng, blobs), blobs
    raise ValueError(f"unknown mailbox kind {spec.kind!r}")


def _headers(name: str, index: int, rng: random.Random, content_type: str) -> list[str]:
    day = 1 + index % 28
    return [
        f"X-Bench-Id: {name}-{index:06d}",
        f"From: Sender {index % 97} <sender{index % 97}@example.org>",
        "To: Alice <alice@example.org>",
        f"Subject: {name} message {index} {' '.join(rng.choices(_WORDS, k=4))}",
        f"Date: Mon, {day:02d} Jan 2024 12:{index % 60:02d}:00 +0000",
        f"Message-ID: <{name}.{index}@bench.example.org>",
        "MIME-Version: 1.0",
        content_type,
    ]


def _text_lines(rng: random.Random, size: int) -> list[str]:
    """Lines of words adding up to about ``size`` bytes; some start with a dot."""
    lines: list[str] = []
    total = 0
    while total < size:
        words: list[str] = []
        width = 0
        while width < _LINE_WIDTH:
            word = rng.choice(_WORDS)
            words.append(word)
            width += len(word) + 1
        line = " ".join(words)
        if rng.random() < _DOT_LINE_CHANCE:
            line = "." + line if rng.random() < 0.8 else "."
        lines.append(line)
        total += len(line.encode()) + 2
    return lines


def _text_message(name: str, index: int, size: int, rng: random.Random) -> bytes:
    head = _headers(name, index, rng, "Content-Type: text/plain; charset=utf-8")
    head.append("Content-Transfer-Encoding: 8bit")
    body = _text_lines(rng, max(0, size - 400))
    return ("\r\n".join([*head, "", *body]) + "\r\n").encode()


def _multipart(name: str, index: int, rng: random.Random, blobs: list[bytes]) -> bytes:
    boundary = f"=_bench_{name}_{index}"
    head = _headers(name, index, rng, f'Content-Type: multipart/mixed; boundary="{boundary}"')
    text = _text_lines(rng, 600)
    parts = [
        "\r\n".join([*head, "", "This is a multi-part message in MIME format.", ""]).encode(),
        (
            f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n" + "\r\n".join(text) + "\r\n"
        ).encode(),
    ]
    for number, blob in enumerate(blobs, start=1):
        filename = f"{name}-{index:06d}-{number}.bin"
        parts.append(
            (
                f'--{boundary}\r\nContent-Type: application/octet-stream; name="{filename}"\r\n'
                "Content-Transfer-Encoding: base64\r\n"
                f'Content-Disposition: attachment; filename="{filename}"\r\n\r\n'
            ).encode()
            + base64.encodebytes(blob).replace(b"\n", b"\r\n")
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts)


def _random_bytes(rng: random.Random, size: int) -> bytes:
    # In 1 MiB pieces: randbytes of hundreds of MB at once builds one huge integer.
    piece = 1 << 20
    return b"".join(rng.randbytes(min(piece, size - start)) for start in range(0, size, piece))


def _log_uniform(rng: random.Random, low: int, high: int) -> int:
    """Many small attachments and a few big ones, as in real mailboxes."""
    return round(low * math.exp(math.log(high / low) * rng.random()))
