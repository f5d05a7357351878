"""Maildir delivery: write into tmp/, make durable, rename into new/.

File names follow the Maildir convention (``secs.MusecPpidRrand.host``) and
add ``,FD=<key>`` (a whole message) or ``,FH=<key>`` (its headers only, for a
message too big to fetch) and ``.eml``. The key is a digest of (account,
UIDL): a message that reached new/ just before a crash, before its UIDL was
recorded, is recognised by it on the next pass and not stored twice, and the
tag says what was stored, so that a headers-only file is never taken for the
whole message (which could then be deleted on the server).

Line endings are normalised to LF, the Maildir convention; the bytes are
otherwise exactly what the server sent.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fetchd.access import PRIVATE, Access
from fetchd.errors import StorageError
from fetchd.store import durable

#: What a file holds: the whole message, or only its headers (TOP n 0).
Kind = Literal["stored", "headers"]
_TAGS: dict[Kind, str] = {"stored": "FD", "headers": "FH"}
_KINDS: dict[str, Kind] = {tag: kind for kind, tag in _TAGS.items()}
_KEY_IN_NAME = re.compile(r",(FD|FH)=([0-9a-f]{24})\.eml")
#: Leftovers in tmp/ older than this are removed (the Maildir spec's 36 hours).
STALE_TMP_SECONDS = 36 * 3600


def message_key(account: str, uid: str) -> str:
    """The digest that names a message's file; stable across passes."""
    # surrogateescape: UIDs keep the server's exact octets (see fetchd.pop3.inventory).
    return hashlib.sha256(f"{account}\0{uid}".encode("utf-8", "surrogateescape")).hexdigest()[:24]


def _hostname() -> str:
    # The Maildir spec: "/" and ":" in the host part are written octal-escaped.
    return socket.gethostname().replace("/", "\\057").replace(":", "\\072") or "localhost"


@dataclass(frozen=True)
class StoredFile:
    """A fetchd file found in new/ or cur/: what its name says it holds."""

    path: Path
    kind: Kind


class MessageFile:
    """A message being written into tmp/; line endings become LF on the way."""

    def __init__(self, maildir: Maildir, key: str, kind: Kind = "stored") -> None:
        now = time.time()
        seconds, micros = int(now), int(now % 1 * 1_000_000)
        rand = secrets.token_hex(4)
        tag = _TAGS[kind]
        self.name = f"{seconds}.M{micros}P{os.getpid()}R{rand}.{maildir.host},{tag}={key}.eml"
        self.key = key
        self.kind = kind
        self.tmp_path = maildir.tmp / self.name
        self.new_path = maildir.new / self.name
        self.size = 0
        self._pending_cr = False
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            self._fd = os.open(self.tmp_path, flags, 0o600)
        except OSError as exc:
            raise StorageError(f"cannot create {self.tmp_path}: {exc.strerror}") from exc
        try:
            maildir.access.set_fd(self._fd, self.tmp_path)
        except StorageError:
            self.discard()
            raise

    def write(self, data: bytes) -> None:
        if self._pending_cr:
            data = b"\r" + data
        self._pending_cr = data.endswith(b"\r")
        if self._pending_cr:
            data = data[:-1]  # may be the CR of a CRLF split across reads
        self._write(data.replace(b"\r\n", b"\n"))

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            raise StorageError(f"cannot write {self.tmp_path}: {exc.strerror}") from exc
        self.size += len(data)

    def close(self) -> None:
        if self._fd < 0:
            return
        if self._pending_cr:
            self._pending_cr = False
            self._write(b"\r")
        os.close(self._fd)
        self._fd = -1

    def discard(self) -> None:
        """Drop an unfinished message (the connection broke mid-RETR)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.tmp_path.unlink(missing_ok=True)


@dataclass
class Maildir:
    """One account's Maildir, created on first use, its files made as ``access`` says."""

    root: Path
    access: Access = PRIVATE

    def __post_init__(self) -> None:
        self.tmp, self.new, self.cur = (self.root / sub for sub in ("tmp", "new", "cur"))
        self.host = _hostname()
        for directory in (self.root, self.tmp, self.new, self.cur):
            self.access.ensure_dir(directory)

    def create(self, key: str, kind: Kind = "stored") -> MessageFile:
        return MessageFile(self, key, kind)

    def deliver(self, files: Sequence[MessageFile]) -> None:
        """Make ``files`` durable and move them into new/ (data, rename, directory)."""
        for message in files:
            message.close()
        if not files:
            return
        durable.sync_files(self.tmp, (message.tmp_path for message in files))
        try:
            for message in files:
                os.rename(message.tmp_path, message.new_path)
        except OSError as exc:
            raise StorageError(f"cannot move a message into {self.new}: {exc.strerror}") from exc
        durable.sync_directory(self.new)

    def stored_keys(self) -> dict[str, StoredFile]:
        """Key -> file for every fetchd message in new/ and cur/ (a mail client moves them).

        Where one key has both a whole file and a headers-only one (the
        message was fetched whole after shrinking, say), the whole one wins.
        """
        found: dict[str, StoredFile] = {}
        for directory in (self.new, self.cur):
            for entry in os.scandir(directory):
                match = _KEY_IN_NAME.search(entry.name)
                if match is None:
                    continue
                tag, key = match.groups()
                earlier = found.get(key)
                if earlier is None or earlier.kind == "headers":
                    found[key] = StoredFile(Path(entry.path), _KINDS[tag])
        return found

    def clean_tmp(self) -> int:
        """Remove leftovers of a crash from tmp/; returns how many.

        The caller holds the account lock, so every fetchd file in tmp/ is a
        leftover; anything else is removed once older than 36 hours.
        """
        removed = 0
        deadline = time.time() - STALE_TMP_SECONDS
        for entry in os.scandir(self.tmp):
            ours = _KEY_IN_NAME.search(entry.name) is not None
            if ours or entry.stat(follow_symlinks=False).st_mtime < deadline:
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
        return removed
