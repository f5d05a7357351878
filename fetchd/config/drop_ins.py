"""Account drop-ins: ``accounts.d/NAME.toml`` beside the main config, one account each.

``fetchd account add`` and ``remove`` edit these files only. The main config is
the user's own text, comments and all; rewriting it with a TOML library would
lose them, so fetchd never writes to it.

Files are written whole and then linked into place, so a daemon reloading at
the same moment sees either no file or the complete one, and an existing file
is never overwritten.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w

from fetchd.config._lines import key_lines
from fetchd.config._load import DROP_IN_DIR
from fetchd.config._values import ACCOUNT_NAME
from fetchd.errors import ConfigError, StorageError, UsageError

__all__ = [
    "DROP_IN_DIR",
    "defined_at",
    "drop_in_path",
    "drop_in_text",
    "main_file_defines",
    "password_path",
    "remove_drop_in",
    "write_drop_in",
    "write_password_file",
]


def _checked(name: str) -> str:
    if not ACCOUNT_NAME.fullmatch(name):  # checked before it becomes a file name
        raise UsageError(
            f"invalid account name {name!r}: use 1 to 64 letters, digits, '.', '_' or '-', "
            "not starting with '.'"
        )
    return name


def drop_in_path(config_path: Path, name: str) -> Path:
    return config_path.parent / DROP_IN_DIR / f"{_checked(name)}.toml"


def password_path(config_path: Path, name: str) -> Path:
    return config_path.parent / DROP_IN_DIR / f"{_checked(name)}.password"


def _file_mode(config_path: Path) -> int:
    """A drop-in is never more readable than the main file (and always by its owner).

    A system service running as a dynamic user can read only what others may
    read, so the admin opens up the main file (which then must hold no
    password) and new drop-ins follow it. Password files stay 0600.
    """
    return (_main_mode(config_path) & 0o644) | 0o600


def _dir_mode(config_path: Path) -> int:
    """``accounts.d`` may be entered by whoever may read the main file."""
    readable = _main_mode(config_path)
    return 0o700 | (0o050 if readable & 0o040 else 0) | (0o005 if readable & 0o004 else 0)


def _main_mode(config_path: Path) -> int:
    try:
        return config_path.stat().st_mode & 0o777
    except OSError:
        return 0o600


def _write_new(path: Path, data: bytes, mode: int, dir_mode: int) -> None:
    """Write ``path`` whole (temporary file, fsync, link); refuse if it exists."""
    try:
        path.parent.mkdir(mode=dir_mode, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create {path.parent}: {exc.strerror}") from exc
    # A leading dot: the config loader skips hidden files, so a reload never
    # sees this half-written file.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            os.fchmod(fd, mode)  # the umask must not narrow or widen it
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(temporary, path)  # fails, rather than replaces, if path exists
    except FileExistsError as exc:
        raise UsageError(f"{path} already exists") from exc
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror}") from exc
    finally:
        temporary.unlink(missing_ok=True)


def write_drop_in(
    config_path: Path, name: str, table: Mapping[str, Any], origin: str = "`fetchd account add`"
) -> Path:
    """Create ``accounts.d/NAME.toml`` holding ``table`` (keys at top level).

    ``origin`` says in the file's first line what wrote it.
    """
    path = drop_in_path(config_path, name)
    _write_new(
        path,
        drop_in_text(name, table, origin).encode(),
        _file_mode(config_path),
        _dir_mode(config_path),
    )
    return path


def drop_in_text(name: str, table: Mapping[str, Any], origin: str) -> str:
    """The text of an account's drop-in file, as ``write_drop_in`` writes it."""
    header = f"# Account {name}, written by {origin}; edit freely.\n"
    return header + tomli_w.dumps(dict(table))


def write_password_file(config_path: Path, name: str, secret: str) -> Path:
    """Create ``accounts.d/NAME.password`` (mode 0600) holding ``secret``."""
    path = password_path(config_path, name)
    _write_new(path, secret.encode() + b"\n", 0o600, _dir_mode(config_path))
    return path


def main_file_defines(config_path: Path, name: str) -> bool:
    """Whether the main file has an ``[accounts.NAME]`` table (read raw, not validated)."""
    return _main_file_line(config_path, name) is not None


def _main_file_line(config_path: Path, name: str) -> int | None:
    """The line of the main file that defines account ``name`` (0 if not found); None: none."""
    try:
        text = config_path.read_bytes().decode()
        raw = tomllib.loads(text)
    except FileNotFoundError:
        return None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{config_path}: cannot read: {exc}") from exc
    accounts = raw.get("accounts")
    if not isinstance(accounts, dict) or name not in accounts:
        return None
    return key_lines(text).get(("accounts", name), 0)


def defined_at(config_path: Path, name: str) -> str | None:
    """Where account ``name`` is defined: its drop-in, or ``FILE:LINE`` in the main file."""
    drop_in = drop_in_path(config_path, name)
    if drop_in.exists():
        return str(drop_in)
    line = _main_file_line(config_path, name)
    if line is None:
        return None
    return f"{config_path}:{line}" if line else str(config_path)


def remove_drop_in(config_path: Path, name: str) -> list[Path]:
    """Delete the account's drop-in and the password file ``account add`` made for it.

    Returns the files removed: none if the account has no drop-in.
    """
    removed: list[Path] = []
    for path in (drop_in_path(config_path, name), password_path(config_path, name)):
        try:
            path.unlink()
        except FileNotFoundError:
            if not removed:
                return removed  # no drop-in: a stray password file is not ours to judge
            continue
        except OSError as exc:
            raise StorageError(f"cannot remove {path}: {exc.strerror}") from exc
        removed.append(path)
    return removed
