"""A message's attachment folder appears whole or not at all, and only once.

Extraction may be cut short (SIGKILL, a full disk) or run again for the same
stored message (the state was committed but the index was not, or the state
was rebuilt). So a folder is built under a hidden partial name in the
attachments root, ``.partial-<device>-<inode>`` of the stored ``.eml``, and
renamed to its readable name only when complete, with a small manifest
(``MANIFEST``: the files in extraction order and the warnings) inside. Partial
folders are debris by definition: ``remove_partial`` clears them, and an
extraction replaces its own.

A complete folder is recognised by its ``message.eml``: a hard link to the
stored ``.eml`` (same device and inode). Where linking failed and the file was
copied, a ``message.eml`` with no other link and the same size and SHA-256 as
the stored message counts as the same message: byte-identical content has
identical attachments, so nothing is lost by sharing the folder. Only the
names a new folder could get are looked at: the title, then "title (2)",
"title (3)" ... up to the first that does not exist.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from fetchd.errors import StorageError
from fetchd.mime import names

#: The hard link (or copy) of the stored message inside its folder.
MESSAGE_FILE = "message.eml"
#: What the extraction made of the message, written before the folder gets its name.
MANIFEST = ".fetchd-extracted.json"
PARTIAL_PREFIX = ".partial-"
_MANIFEST_VERSION = 1
#: Bigger than any manifest 1000 files and 50 warnings can make: a larger one is not ours.
_MAX_MANIFEST = 4 * 1024 * 1024


@dataclass(frozen=True)
class Folder:
    """A complete attachment folder: where it is, its files, the warnings of its making."""

    path: Path
    files: tuple[Path, ...]
    warnings: tuple[str, ...]


def partial_path(root: Path, stored: os.stat_result) -> Path:
    """The partial folder of one stored message: the same name on every attempt."""
    return root / f"{PARTIAL_PREFIX}{stored.st_dev:x}-{stored.st_ino:x}"


def find_complete(root: Path, title: str, eml: Path, stored: os.stat_result) -> Folder | None:
    """The complete folder already made for the stored message ``eml``, if any."""
    for candidate in _candidates(root, title):
        try:
            linked = os.stat(candidate / MESSAGE_FILE, follow_symlinks=False)
        except FileNotFoundError:
            if not os.path.lexists(candidate):
                return None  # the first free name: no folder of ours lies beyond it
            continue
        except OSError:
            continue  # not a folder, or not readable: not ours
        if _same_message(linked, stored, candidate / MESSAGE_FILE, eml):
            return _read_folder(candidate)
    return None


def publish(
    partial: Path, root: Path, title: str, files: Sequence[str], warnings: Sequence[str]
) -> Folder:
    """Write the manifest into ``partial`` and give it the first free name.

    ``rename`` replaces an empty directory and refuses a non-empty one or a
    file, so a name someone took meanwhile is skipped, never overwritten.
    """
    manifest = {"version": _MANIFEST_VERSION, "files": list(files), "warnings": list(warnings)}
    (partial / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    for candidate in _candidates(root, title):
        if os.path.lexists(candidate):
            continue
        try:
            partial.rename(candidate)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                continue
            raise
        return Folder(candidate, tuple(candidate / name for name in files), tuple(warnings))
    raise StorageError(f"cannot name folder {title!r} in {root}: too many of that name")


def discard(partial: Path) -> None:
    """Remove a partial folder and everything in it (a missing one is fine)."""
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


def _read_folder(folder: Path) -> Folder:
    """The files and warnings of a complete folder, as its manifest records them.

    A folder without a readable manifest was made before manifests existed;
    its files are what it holds, in name order, and nothing is known of warnings.
    """
    try:
        with (folder / MANIFEST).open("rb") as fp:
            manifest = json.loads(fp.read(_MAX_MANIFEST))
        files = [str(name) for name in manifest["files"]]
        warnings = [str(text) for text in manifest["warnings"]]
    except (OSError, ValueError, KeyError, TypeError):
        return Folder(folder, _listed(folder), ())
    return Folder(folder, tuple(folder / name for name in files), tuple(warnings))


def _listed(folder: Path) -> tuple[Path, ...]:
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError:
        return ()
    return tuple(
        Path(entry.path)
        for entry in entries
        if entry.name != MESSAGE_FILE
        and not entry.name.startswith(".")
        and entry.is_file(follow_symlinks=False)
    )
