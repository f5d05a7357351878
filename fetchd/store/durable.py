"""Making a batch of writes durable with as few disk flushes as possible.

Every message file and the directory entry that names it must be on disk
before its UIDL is committed (and so before any DELE). One ``fsync`` per file
costs a journal commit each; Linux's ``syncfs(2)`` flushes the whole
filesystem in one, so a batch of hundreds of messages costs two flushes
(data, then the renames). Elsewhere we fall back to ``fsync`` per file.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from fetchd.errors import StorageError


@functools.cache
def _syncfs() -> Callable[[int], int] | None:
    """libc's syncfs, looked up on first use (ctypes costs start-up time)."""
    if os.environ.get("FETCHD_FSYNC_MODE") == "file":
        return None
    import ctypes  # noqa: PLC0415 - only a pass that stores mail needs it
    import ctypes.util  # noqa: PLC0415

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    except OSError:
        return None
    syncfs = getattr(libc, "syncfs", None)
    if syncfs is None:
        return None
    syncfs.argtypes = [ctypes.c_int]
    syncfs.restype = ctypes.c_int

    def call(fd: int) -> int:
        result: int = syncfs(fd)
        if result != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno))
        return result

    return call


def _fsync_path(path: Path, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_files(directory: Path, files: Iterable[Path]) -> None:
    """Flush the contents of ``files`` (all on ``directory``'s filesystem)."""
    try:
        if _syncfs() is not None:
            _syncfs_at(directory)
        else:
            for path in files:
                _fsync_path(path)
    except OSError as exc:
        raise StorageError(f"cannot flush messages to disk in {directory}: {exc}") from exc


def sync_directory(directory: Path) -> None:
    """Flush ``directory``'s entries, so that renames into it survive a power cut."""
    try:
        if _syncfs() is not None:
            _syncfs_at(directory)
        else:
            _fsync_path(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise StorageError(f"cannot flush directory {directory} to disk: {exc}") from exc


def _syncfs_at(directory: Path) -> None:
    syncfs = _syncfs()
    assert syncfs is not None
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        syncfs(fd)
    finally:
        os.close(fd)
