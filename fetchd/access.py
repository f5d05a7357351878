"""Who may read what fetchd writes: the service alone, or also one group.

An account's mail and attachments are private to the service (files 0600,
folders 0700) unless the account names a ``share_group``: then they belong to
that group and it may read them (files 0640, folders 2750; the setgid bit
makes what others add inside inherit the group). The state database, lock
files and anything else fetchd keeps for itself are ``SECRET_FILE`` (0600)
whatever an account shares.

Modes are set explicitly after each file or folder is made (``fchmod``,
``chmod``), never left to the umask, which a service manager may set to 0027
or 0077 and a shell to anything. A file that fetchd rewrites (an OAuth2
grant, a systemd unit) is replaced whole by ``replace_file``.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fetchd.errors import StorageError

#: Files only the service may read or write: the state, locks.
SECRET_FILE = 0o600
#: Folders only the service may enter.
SECRET_DIR = 0o700


def replace_file(path: Path, data: bytes, mode: int) -> None:
    """Make ``path`` hold ``data`` with ``mode``: all of it, or what it held before.

    A hidden temporary file beside it is written and flushed, renamed over
    ``path``, and the folder is flushed: a crash leaves the old content or the
    new, never part of either, and the rename survives a power cut. Raises
    ``OSError`` (for the caller to word), with the temporary file removed.
    """
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), mode)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def group_id(name: str) -> int:
    """The gid of the group ``name``; ``LookupError`` when this machine has none."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise LookupError(f"no group named {name!r} on this machine") from None


@dataclass(frozen=True)
class Access:
    """How the files and folders of one account are made: private, or shared with ``gid``."""

    gid: int | None = None
    group: str | None = None  # its name, for error messages

    @classmethod
    def for_group(cls, name: str | None) -> Access:
        """Shared with the group ``name``, or private when None; ``StorageError`` if unknown."""
        if name is None:
            return PRIVATE
        try:
            return cls(group_id(name), name)
        except LookupError as exc:
            raise StorageError(f"share_group: {exc}") from exc

    @property
    def shared(self) -> bool:
        return self.gid is not None

    @property
    def file_mode(self) -> int:
        return 0o640 if self.shared else SECRET_FILE

    @property
    def dir_mode(self) -> int:
        return 0o2750 if self.shared else SECRET_DIR

    def set_fd(self, fd: int, path: Path) -> None:
        """Give the open file ``fd`` (at ``path``) its group, then its mode."""
        try:
            if self.gid is not None:
                os.fchown(fd, -1, self.gid)
            os.fchmod(fd, self.file_mode)
        except OSError as exc:
            raise StorageError(self._refused(path, exc)) from exc

    def set_dir(self, path: Path) -> None:
        """Give the folder ``path`` its group, then its mode (chown first: it clears setgid)."""
        try:
            if self.gid is not None:
                os.chown(path, -1, self.gid, follow_symlinks=False)
            os.chmod(path, self.dir_mode, follow_symlinks=False)
        except OSError as exc:
            raise StorageError(self._refused(path, exc)) from exc

    def make_dir(self, path: Path) -> None:
        """Create the folder ``path`` (it must not exist) with this group and mode."""
        path.mkdir(mode=SECRET_DIR)
        self.set_dir(path)

    def make_missing(self, path: Path) -> None:
        """Create ``path`` and any missing parents with this group and mode; existing ones stay."""
        missing = _missing(path)
        try:
            for directory in reversed(missing):
                with contextlib.suppress(FileExistsError):  # made meanwhile by someone else
                    directory.mkdir(mode=SECRET_DIR)
                self.set_dir(directory)
        except OSError as exc:
            raise StorageError(f"cannot create the directory {path}: {exc.strerror}") from exc
        if not path.is_dir():
            raise StorageError(f"cannot create the directory {path}: something else has its name")

    def ensure_dir(self, path: Path) -> None:
        """Like ``make_missing``, and ``path`` itself is set when it existed too.

        Only if it is the service's own: a folder someone else owns, such as a
        share's root, stays theirs. So turning sharing on or off reaches the
        folders fetchd made before; parents that existed stay as they are.
        """
        if _missing(path):
            self.make_missing(path)
        elif _owned(path) and not self.matches(path):
            self.set_dir(path)

    def matches(self, path: Path) -> bool:
        """Whether the folder ``path`` has this group and mode already."""
        try:
            st = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        right_group = self.gid is None or st.st_gid == self.gid
        return right_group and stat.S_IMODE(st.st_mode) == self.dir_mode

    def apply_tree(self, root: Path) -> None:
        """Give everything of ours under ``root`` (made before sharing changed) this access.

        Folders and regular files the service owns; symlinks and what others own are left.
        """
        for path, is_dir in _walk(root):
            if is_dir:
                self.set_dir(path)
                continue
            try:
                if self.gid is not None:
                    os.chown(path, -1, self.gid, follow_symlinks=False)
                os.chmod(path, self.file_mode, follow_symlinks=False)
            except FileNotFoundError:
                continue  # a mail client moved it meanwhile
            except OSError as exc:
                raise StorageError(self._refused(path, exc)) from exc

    def _refused(self, path: Path, exc: OSError) -> str:
        if self.group is not None and exc.errno == errno.EPERM:  # not a member of the group
            return (
                f"cannot give {path} to the group {self.group!r} (share_group): "
                f"{exc.strerror}; the user fetchd runs as must be a member of that group"
            )
        return f"cannot set the permissions of {path}: {exc.strerror}"


#: Readable by the service alone.
PRIVATE = Access()


def _missing(path: Path) -> list[Path]:
    """``path`` and its parents, up to the first that exists."""
    missing = []
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            break
        missing.append(candidate)
    return missing


def _owned(path: Path) -> bool:
    try:
        return os.lstat(path).st_uid == os.geteuid()
    except FileNotFoundError:
        return False


def _walk(root: Path) -> Iterator[tuple[Path, bool]]:
    """The service's own folders and regular files under ``root``, folders first."""
    if not root.is_dir() or root.is_symlink():
        return
    me = os.geteuid()
    for directory, subdirs, files in os.walk(root):
        base = Path(directory)
        if _owned(base):
            yield base, True
        for name in files:
            try:
                st = os.lstat(base / name)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_uid == me:
                yield base / name, False
        subdirs[:] = [name for name in subdirs if not (base / name).is_symlink()]
