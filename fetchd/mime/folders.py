"""A message's attachment folder appears whole or not at all, and only once.

Extraction may be cut short (SIGKILL, a full disk) or run again for the same
stored message (the state was committed but the index was not, or the state
was rebuilt). So a folder is built under a hidden partial name in the
attachments root, ``.partial-<device>-<inode>`` of the stored ``.eml``, and
renamed to its readable name only when complete. Partial folders are debris
by definition: ``remove_partial`` clears them, and an extraction replaces its
own.

The folder of a message is recognised by its ``message.eml``: a hard link to
the stored ``.eml`` (same device and inode). Where linking is impossible (the
attachments are on another filesystem than the Maildir, such as a network
share) message.eml is a copy, and a hidden marker file beside it names the
stored message by its Maildir name (which holds the ``,FD=`` key of the UID
and never changes; a mail client only appends ":2,FLAGS"). A copy without a
marker (made before markers were written) counts as the same message when it
has no other link and the same size and SHA-256: byte-identical content has
identical attachments, so nothing is lost by sharing the folder. The marker is
written inside the partial folder, so a folder is never published without it.
Only the names a new folder could get are looked at: the title, then
"title (2)", "title (3)" ... up to the first that does not exist.

Whether that folder is complete is checked against the message itself (see
``fetchd.mime.attachments.extract``), not against a record kept beside it:
attachments are not fsynced, so after a power failure a named folder may hold
less than it should, and then it is made again in the same place.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from fetchd.access import Access
from fetchd.errors import StorageError
from fetchd.mime import names

#: The hard link (or copy) of the stored message inside its folder.
MESSAGE_FILE = "message.eml"
#: Beside a copy: the Maildir name of the message it copies.
MARKER_FILE = ".fetchd-message"
PARTIAL_PREFIX = ".partial-"


def partial_path(root: Path, stored: os.stat_result) -> Path:
    """The partial folder of one stored message: the same name on every attempt."""
    return root / f"{PARTIAL_PREFIX}{stored.st_dev:x}-{stored.st_ino:x}"


def find_linked(root: Path, title: str, eml: Path, stored: os.stat_result) -> Path | None:
    """The folder already made for the stored message ``eml``, if any."""
    for candidate in _candidates(root, title):
        # One stat in the common case, a message that has no folder yet.
        if not os.path.lexists(candidate):
            return None  # the first free name: no folder of ours lies beyond it
        try:
            linked = os.stat(candidate / MESSAGE_FILE, follow_symlinks=False)
        except OSError:
            continue  # not a folder, not ours, or not readable
        if _same_message(linked, stored, candidate, eml):
            return candidate
    return None


def write_marker(folder: Path, eml: Path, access: Access) -> None:
    """Name the stored message ``eml`` in ``folder``, whose message.eml is a copy of it."""
    path = folder / MARKER_FILE
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    with os.fdopen(os.open(path, flags, 0o600), "w", encoding="utf-8") as fp:
        access.set_fd(fp.fileno(), path)
        fp.write(maildir_name(eml) + "\n")


def maildir_name(eml: Path) -> str:
    """The unique part of a Maildir file name: without the ":2,FLAGS" a mail client adds."""
    return eml.name.partition(":")[0]


def publish(partial: Path, title: str, *, replacing: Path | None = None) -> Path:
    """Give the complete folder ``partial`` the first free name; returns where it is.

    ``rename`` replaces an empty directory and refuses a non-empty one or a
    file, so a name someone took meanwhile is skipped, never overwritten.
    With ``replacing`` (an incomplete folder of the same message), ``partial``
    takes that folder's place and name instead.
    """
    if replacing is not None:
        _swap(partial, replacing)
        return replacing
    for candidate in _candidates(partial.parent, title):
        if os.path.lexists(candidate):
            continue
        try:
            partial.rename(candidate)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                continue
            raise
        return candidate
    raise StorageError(f"cannot name folder {title!r} in {partial.parent}: too many of that name")


def _swap(partial: Path, old: Path) -> None:
    """Put ``partial`` where ``old`` is; killed halfway, both are partial debris."""
    retired = partial.with_name(f"{partial.name}-old")
    discard(retired)
    old.rename(retired)
    partial.rename(old)
    discard(retired)


def discard(partial: Path) -> None:
    """Remove a folder and everything in it (a missing one is fine)."""
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(partial)


def remove_partial(root: Path) -> int:
    """Remove what interrupted extractions left in ``root``; returns how many.

    Call it where no extraction runs (the account lock is held): a partial
    folder is then always debris.
    """
    try:
        entries = [entry for entry in os.scandir(root) if entry.name.startswith(PARTIAL_PREFIX)]
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise StorageError(f"cannot read the attachments folder {root}: {exc.strerror}") from exc
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise StorageError(f"cannot remove the partial folder {entry.path}: {exc}") from exc
    return len(entries)


def size_of(path: Path) -> int | None:
    """The size of a regular file at ``path`` (not through a symlink), else None."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def _candidates(root: Path, title: str) -> Iterator[Path]:
    for attempt in range(1, names.MAX_COLLISIONS + 1):
        yield root / names.numbered_folder(title, attempt)


def _same_message(linked: os.stat_result, stored: os.stat_result, folder: Path, eml: Path) -> bool:
    if (linked.st_dev, linked.st_ino) == (stored.st_dev, stored.st_ino):
        return True
    marked = _marker(folder)
    if marked is not None:
        return marked == maildir_name(eml)
    # A copy made before copies were marked: the same bytes are the same message.
    if linked.st_nlink != 1 or linked.st_size != stored.st_size:
        return False
    return _digest(folder / MESSAGE_FILE) == _digest(eml)


def _marker(folder: Path) -> str | None:
    """The message name in ``folder``'s marker; None without a readable one."""
    try:
        with open(folder / MARKER_FILE, "rb") as fp:
            return fp.read(1024).decode("utf-8", "surrogateescape").strip()
    except OSError:
        return None


def _digest(path: Path) -> str | None:
    try:
        with path.open("rb") as fp:
            return hashlib.file_digest(fp, "sha256").hexdigest()
    except OSError:
        return None
