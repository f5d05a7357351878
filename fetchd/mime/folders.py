"""A message's attachment folder appears whole or not at all, and only once.

Extraction may be cut short (SIGKILL, a full disk) or run again for the same
stored message (the state was committed but the index was not, or the state
was rebuilt). So a folder is built under a hidden partial name in the
attachments root, ``.partial-<device>-<inode>`` of the stored ``.eml``, and
renamed to its readable name only when complete. Partial folders are debris
by definition: ``remove_partial`` clears them, and an extraction replaces its
own.

The folder of a message is recognised by its ``message.eml``: a hard link to
the stored ``.eml`` (same device and inode). Where linking failed and the file
was copied, a ``message.eml`` with no other link and the same size and
SHA-256 as the stored message counts as the same message: byte-identical
content has identical attachments, so nothing is lost by sharing the folder.
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

from fetchd.errors import StorageError
from fetchd.mime import names

#: The hard link (or copy) of the stored message inside its folder.
MESSAGE_FILE = "message.eml"
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
        if _same_message(linked, stored, candidate / MESSAGE_FILE, eml):
            return candidate
    return None


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


def _same_message(linked: os.stat_result, stored: os.stat_result, copy: Path, eml: Path) -> bool:
    if (linked.st_dev, linked.st_ino) == (stored.st_dev, stored.st_ino):
        return True
    if linked.st_nlink != 1 or linked.st_size != stored.st_size:
        return False
    return _digest(copy) == _digest(eml)


def _digest(path: Path) -> str | None:
    try:
        with path.open("rb") as fp:
            return hashlib.file_digest(fp, "sha256").hexdigest()
    except OSError:
        return None
