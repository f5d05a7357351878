"""Maildir delivery: write into tmp/, make durable, rename into new/.

File names follow the Maildir convention (``secs.MusecPpidRrand.host``) and
add ``,FD=<key>`` (a whole message) or ``,FH=<key>`` (its headers only, for a
message too big to fetch). The key is a digest of (account, UIDL): a message
that reached new/ just before a crash, before its UIDL was recorded, is
recognised by it on the next pass and not stored twice, and the tag says what
was stored, so that a headers-only file is never taken for the whole message
(which could then be deleted on the server).

Two layouts:

- fetchd's own Maildir (``<data_dir>/<account>/Maildir``):
  ``secs.MusecPpidRrand.host,FD=<key>.eml``; the ``.eml`` suffix lets a file
  manager open the files, and fetchd is the only writer, so under the
  account's lock everything of fetchd's in tmp/ is a leftover.
- someone else's Maildir (the ``maildir`` key, which Dovecot or a mail client
  also uses): ``secs.MusecPpidRrand,FD=<key>.host``, the key inside the
  unique part and no suffix, as the Maildir spec has it; only names that
  begin exactly so are taken for fetchd's, and in tmp/ fetchd touches only
  the files of the account that holds the lock (their tmp/ name ends in that
  account's ``,FA=`` tag; the tag is dropped by the rename into new/).

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
#: Only from the start of the name: in a Maildir others write, a key further in is not ours.
_KEY_IN_FOREIGN_NAME = re.compile(r"\A\d+\.M\d+P\d+R[0-9a-f]{8},(FD|FH)=([0-9a-f]{24})\.")
#: The Maildir++ marker file of a subfolder (``~/Maildir/.Work``).
FOLDER_MARKER = "maildirfolder"
#: Leftovers in tmp/ older than this are removed (the Maildir spec's 36 hours).
STALE_TMP_SECONDS = 36 * 3600


def message_key(account: str, uid: str) -> str:
    """The digest that names a message's file; stable across passes."""
    # surrogateescape: UIDs keep the server's exact octets (see fetchd.pop3.inventory).
    return hashlib.sha256(f"{account}\0{uid}".encode("utf-8", "surrogateescape")).hexdigest()[:24]


def owner_tag(account: str) -> str:
    """What marks an account's files in the tmp/ of a Maildir it shares with others."""
    return hashlib.sha256(f"owner\0{account}".encode()).hexdigest()[:12]


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
        unique = f"{seconds}.M{micros}P{os.getpid()}R{secrets.token_hex(4)}"
        tag = _TAGS[kind]
        if maildir.owner is None:
            self.name = tmp_name = f"{unique}.{maildir.host},{tag}={key}.eml"
        else:
            self.name = f"{unique},{tag}={key}.{maildir.host}"
            tmp_name = f"{self.name},FA={maildir.owner}"
        self.key = key
        self.kind = kind
        self.tmp_path = maildir.tmp / tmp_name
        self.new_path = maildir.new / self.name
        self.size = 0
        #: Octets given to ``write``, before CRLF became LF.
        self.received = 0
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
        self.received += len(data)
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

    def line_ends(self) -> tuple[int, int]:
        """How many LF and CRLF the octets written so far held.

        Each CRLF became LF, which is the only change of length, so the CRLF
        are counted for free; the LF (every one is still there) are counted
        in the file, read back: this is asked only of a body whose size
        differs from LIST's.
        """
        crlf = self.received - self.size - self._pending_cr
        lf = 0
        try:
            with self.tmp_path.open("rb") as written:
                while block := written.read(1 << 20):
                    lf += block.count(b"\n")
        except OSError as exc:
            raise StorageError(f"cannot read back {self.tmp_path}: {exc.strerror}") from exc
        return lf, crlf

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


def stored_keys(root: Path, *, foreign: bool = False) -> dict[str, StoredFile]:
    """Key -> file for every fetchd message in new/ and cur/ of the Maildir at ``root``
    (a mail client moves them to cur/); empty where it does not exist. Reads only.

    ``foreign``: the Maildir is one others write too, where fetchd's names
    differ. Where one key has both a whole file and a headers-only one (the
    message was fetched whole after shrinking, say), the whole one wins.
    """
    pattern = _KEY_IN_FOREIGN_NAME if foreign else _KEY_IN_NAME
    found: dict[str, StoredFile] = {}
    for directory in (root / "new", root / "cur"):
        if not directory.is_dir():
            continue
        for entry in os.scandir(directory):
            ours = _key_of(pattern, entry.name)
            if ours is None:
                continue
            kind, key = ours
            earlier = found.get(key)
            if earlier is None or earlier.kind == "headers":
                found[key] = StoredFile(Path(entry.path), kind)
    return found


def _key_of(pattern: re.Pattern[str], name: str) -> tuple[Kind, str] | None:
    match = pattern.search(name)
    if match is None:
        return None
    tag, key = match.groups()
    return _KINDS[tag], key


@dataclass
class Maildir:
    """A Maildir, created on first use, its files made as ``access`` says.

    ``owner`` is None for fetchd's own Maildir; for one that others write too
    it is the ``owner_tag`` of the account delivering, and the folders that
    exist are left as they are.
    """

    root: Path
    access: Access = PRIVATE
    owner: str | None = None

    def __post_init__(self) -> None:
        self.tmp, self.new, self.cur = (self.root / sub for sub in ("tmp", "new", "cur"))
        self.host = _hostname()
        self._key_in_name = _KEY_IN_NAME if self.owner is None else _KEY_IN_FOREIGN_NAME
        if self.owner is not None:
            _make_foreign(self.root)
            return
        for directory in (self.root, self.tmp, self.new, self.cur):
            self.access.ensure_dir(directory)

    def key_of(self, name: str) -> tuple[Kind, str] | None:
        """What a file name in new/ or cur/ says fetchd stored, or None if not fetchd's."""
        return _key_of(self._key_in_name, name)

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
        """Key -> file for every fetchd message in new/ and cur/ (``stored_keys``)."""
        return stored_keys(self.root, foreign=self.owner is not None)

    def clean_tmp(self) -> int:
        """Remove leftovers of a crash from tmp/; returns how many.

        The caller holds the account lock, so every fetchd file in tmp/ is a
        leftover; anything else is removed once older than 36 hours. In a
        Maildir others write too, only the files of the account holding the
        lock are: the rest belongs to other accounts or other programs.
        """
        removed = 0
        deadline = time.time() - STALE_TMP_SECONDS
        for entry in os.scandir(self.tmp):
            if self.owner is not None:
                ours = entry.name.endswith(f",FA={self.owner}")
                stale = False
            else:
                ours = _KEY_IN_NAME.search(entry.name) is not None
                stale = entry.stat(follow_symlinks=False).st_mtime < deadline
            if ours or stale:
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
        return removed


def _make_foreign(root: Path) -> None:
    """Create what is missing of a Maildir others use too; what exists stays as it is.

    A Maildir++ folder (``~/Maildir/.Work``) gets its parent made a Maildir
    too, and the ``maildirfolder`` marker the spec asks for (Dovecot and
    Courier read it to know a folder from a top-level Maildir).
    """
    subfolder = root.name.startswith(".") and root.name not in (".", "..")
    folders = [root.parent / sub for sub in ("tmp", "new", "cur")] if subfolder else []
    folders += [root / sub for sub in ("tmp", "new", "cur")]
    try:
        for folder in folders:
            # Parents too are made 0700 (mail is private), whatever the umask allows.
            missing = [p for p in (folder, *folder.parents) if not os.path.lexists(p)]
            for directory in reversed(missing):
                directory.mkdir(mode=0o700, exist_ok=True)
        if subfolder:
            marker = root / FOLDER_MARKER
            if not marker.exists():
                os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
    except OSError as exc:
        raise StorageError(f"cannot create the Maildir {root}: {exc.strerror}") from exc
    for sub in ("tmp", "new", "cur"):
        if not (root / sub).is_dir():
            raise StorageError(f"{root} is no Maildir: {sub} is not a folder")
