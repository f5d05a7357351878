"""Check what a client stored against what was delivered, before its time counts.

What is compared: every stored message, with CRLF turned into LF and the
header lines a client prepends removed, must have the sha256 of one delivered
message (also CRLF -> LF), and the multisets must be equal: nothing missing,
nothing extra, nothing twice. The prepended lines are whatever precedes the
``X-Bench-Id`` header each generated message starts with, and only inside the
header block: mpop adds ``Received``, fetchmail ``Received``, getmail6
``Return-Path``, ``Delivered-To`` and ``Received``. Their names are reported.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.corpus import Corpus

__all__ = [
    "Verification",
    "attachment_problem",
    "bsmtp_messages",
    "maildir_messages",
    "verify_messages",
]

_MARK = b"X-Bench-Id: "


@dataclass
class Verification:
    """The outcome of comparing one client's output with the corpus."""

    stored: int = 0
    problem: str | None = None
    prepended: set[str] = field(default_factory=set)


def maildir_messages(maildir: Path) -> Iterator[bytes]:
    """The messages in a Maildir's ``new`` and ``cur`` (``tmp`` holds no delivered mail)."""
    for sub in ("new", "cur"):
        directory = maildir / sub
        if directory.is_dir():
            for path in sorted(directory.iterdir()):
                yield path.read_bytes()


def bsmtp_messages(path: Path) -> Iterator[bytes]:
    """Each DATA section of a batch-SMTP file, dot-stuffing undone (RFC 5321 4.5.2)."""
    if not path.exists():
        return
    data = path.read_bytes().replace(b"\r\n", b"\n")
    pos = 0
    while (start := data.find(b"\nDATA\n", pos)) >= 0:
        start += len(b"\nDATA\n")
        end = data.find(b"\n.\n", start - 1)
        if end < 0:
            raise ValueError(f"{path}: a DATA section has no terminating '.' line")
        yield (b"\n" + data[start : end + 1]).replace(b"\n..", b"\n.")[1:]
        pos = end + 2


def _strip_prepended(message: bytes) -> tuple[bytes, list[str]]:
    """The message from its ``X-Bench-Id`` header on, and the names of the lines before it."""
    if message.startswith(_MARK):
        return message, []
    at = message.find(b"\n" + _MARK)
    header_end = message.find(b"\n\n")
    if at < 0 or (0 <= header_end < at):
        return message, []
    names = [
        line.split(b":", 1)[0].decode("ascii", "replace")
        for line in message[:at].split(b"\n")
        if line and not line[:1].isspace()
    ]
    return message[at + 1 :], names


def verify_messages(messages: Iterable[bytes], corpus: Corpus) -> Verification:
    """Compare the stored messages with the corpus; ``problem`` says what differs."""
    result = Verification()
    found: Counter[str] = Counter()
    for raw in messages:
        body, names = _strip_prepended(raw.replace(b"\r\n", b"\n"))
        result.prepended.update(names)
        found[hashlib.sha256(body).hexdigest()] += 1
        result.stored += 1
    missing = corpus.messages - found
    extra = found - corpus.messages
    if missing or extra:
        result.problem = (
            f"stored {result.stored} of {corpus.count} messages; "
            f"{missing.total()} delivered messages not found byte-identical, "
            f"{extra.total()} stored messages match none (or are duplicates)"
        )
    return result


def attachment_problem(root: Path, corpus: Corpus) -> str | None:
    """Whether every delivered attachment is among the files under ``root``, byte-identical."""
    if not corpus.attachments:
        return None
    found: Counter[str] = Counter()
    if root.is_dir():
        for path in root.rglob("*"):
            if path.is_file():
                found[_file_digest(path)] += 1
    missing = corpus.attachments - found
    if missing:
        return (
            f"{missing.total()} of {corpus.attachments.total()} attachments "
            f"not extracted byte-identical under {root.name}/"
        )
    return None


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
