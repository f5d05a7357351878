"""Reading fetchd's config files: TOML, drop-in merging, and where each key was set.

``gather`` reads the main file and the ``accounts.d/*.toml`` drop-ins beside it
into one raw mapping, remembering which file each account came from and each
file's text, so that every problem can start ``FILE:LINE: key.path:`` (see
``Sources.where``). ``fetchd.config.load_config`` validates what ``gather``
returns; ``_messages`` words pydantic's errors.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fetchd.config._lines import KeyPath, key_lines
from fetchd.errors import ConfigError
from fetchd.paths import DEFAULT_CONFIG_WORDS

#: The folder beside the main config file that holds one file per account.
DROP_IN_DIR = "accounts.d"


def _read_toml(path: Path) -> tuple[dict[str, Any], str]:
    """Parse one TOML file, and return its text too; syntax errors keep tomllib's line."""
    try:
        text = path.read_bytes().decode()
        return tomllib.loads(text), text
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such file") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def _drop_in_files(directory: Path) -> list[Path]:
    """The ``*.toml`` files in ``accounts.d``; hidden files (editor temporaries) are skipped."""
    try:
        entries = list(directory.iterdir())
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"{directory}: cannot list drop-in files: {exc.strerror}") from exc
    return sorted(p for p in entries if p.suffix == ".toml" and not p.name.startswith("."))


def _mode_problem(path: Path, key: str = "password") -> str | None:
    """Refuse an inline password (or client secret) in a file other users can read."""
    mode = path.stat().st_mode & 0o777
    if not mode & 0o077:
        return None
    return (
        f"this file holds a {key.replace('_', ' ')} but is readable by group or others "
        f"(mode {mode:03o}); run `chmod 600 {path}`, or use {key}_file, "
        f"{key}_command or {key}_credential instead"
    )


class Sources:
    """The merged raw config, which file each account came from, and each file's text."""

    def __init__(self, main: Path) -> None:
        self.main = main
        self.raw: dict[str, Any] = {}
        self.account_files: dict[str, Path] = {}
        self.problems: list[str] = []
        self.passwords: list[str] = []
        self.texts: dict[Path, str] = {}
        self._lines: dict[Path, dict[KeyPath, int]] = {}

    def file_of(self, account: object) -> Path:
        return self.account_files.get(account, self.main) if isinstance(account, str) else self.main

    def locate(self, loc: KeyPath) -> tuple[Path, KeyPath]:
        """The file that set ``loc`` (a path in the merged config), and the path inside it."""
        if len(loc) >= 2 and loc[0] == "accounts" and self.file_of(loc[1]) != self.main:
            return self.file_of(loc[1]), loc[2:]
        return self.main, loc

    def line_of(self, file: Path, keys: KeyPath) -> int | None:
        """The line of ``file`` that sets ``keys``, if one does (a missing key has none)."""
        if file not in self._lines:
            self._lines[file] = key_lines(self.texts.get(file, ""))
        return self._lines[file].get(keys)

    def where(self, file: Path, keys: KeyPath) -> str:
        """``FILE:LINE: key.path: ``, the start of a problem's line; parts unknown are left out."""
        line = self.line_of(file, keys) if keys else None
        place = f"{file}:{line}" if line else str(file)
        return f"{place}: {dotted(keys)}: " if keys else f"{place}: "

    def problem(self, file: Path, keys: KeyPath, message: str) -> None:
        self.problems.append(self.where(file, keys) + message)

    def add_account(self, name: str, table: Any, file: Path, prefix: KeyPath) -> None:
        """Record one account table; ``prefix`` is its key path inside ``file``."""
        accounts: dict[str, Any] = self.raw["accounts"]
        self.account_files[name] = file
        if not isinstance(table, dict):
            accounts[name] = table
            return
        if "name" in table:
            origin = f"the name is the {_origin(file)}"
            self.problem(file, (*prefix, "name"), f"unknown key `name` ({origin})")
        if "password" in table:
            if isinstance(table["password"], str):
                self.passwords.append(table["password"])
            problem = _mode_problem(file)
            if problem:
                self.problem(file, (*prefix, "password"), problem)
        oauth2 = table.get("oauth2")
        if isinstance(oauth2, dict) and "client_secret" in oauth2:
            if isinstance(oauth2["client_secret"], str):
                self.passwords.append(oauth2["client_secret"])
            problem = _mode_problem(file, "client_secret")
            if problem:
                self.problem(file, (*prefix, "oauth2", "client_secret"), problem)
        accounts[name] = {**table, "name": name}


def _origin(file: Path) -> str:
    return "file name" if file.parent.name == DROP_IN_DIR else "table key"


def gather(path: Path) -> Sources:
    """Read the main file and its drop-ins into one raw mapping."""
    try:
        raw, text = _read_toml(path)
    except ConfigError as exc:
        if isinstance(exc.__cause__, FileNotFoundError):
            raise ConfigError(
                f"{path}: no such file. Without -c, fetchd reads {DEFAULT_CONFIG_WORDS}; "
                "`fetchd init` writes a starter config"
            ) from exc
        raise
    sources = Sources(path)
    sources.texts[path] = text
    accounts = raw.pop("accounts", {})
    if "path" in raw:
        sources.problem(path, ("path",), "unknown key `path`")
        del raw["path"]
    sources.raw.update(raw)
    if not isinstance(accounts, dict):
        sources.raw["accounts"] = accounts  # validation reports the wrong type
        return sources
    sources.raw["accounts"] = {}
    for name, table in accounts.items():
        sources.add_account(name, table, path, ("accounts", name))
    for file in _drop_in_files(path.parent / DROP_IN_DIR):
        _merge_drop_in(sources, file)
    return sources


def _merge_drop_in(sources: Sources, file: Path) -> None:
    name = file.stem
    if name in sources.account_files:
        other = sources.where(sources.main, ("accounts", name)).removesuffix(": ")
        sources.problems.append(
            f"{file}: account {name!r} is also defined at {other}; define it in one file only"
        )
        return
    try:
        table, sources.texts[file] = _read_toml(file)
    except ConfigError as exc:
        sources.problems.append(str(exc))
        return
    sources.add_account(name, table, file, ())


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_key(key: str) -> str:
    """Write ``key`` as TOML would in a dotted path, quoting it when it is not bare."""
    if _BARE_KEY.fullmatch(key):
        return key
    return '"' + "".join(map(_escaped, key)) + '"'


def _escaped(char: str) -> str:
    """One character of a quoted key; anything unprintable (a line break that
    would split the message, say) as a TOML escape."""
    if char in '\\"':
        return "\\" + char
    if char.isprintable():
        return char
    return f"\\u{ord(char):04X}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08X}"


def dotted(keys: Iterable[int | str]) -> str:
    """A key path as a TOML user writes it: ``accounts.work.attachments.exclude[0]``."""
    path = ""
    for part in keys:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + toml_key(part)
    return path


def scrub(message: str, passwords: Iterable[str]) -> str:
    """Last line of defence: mask any inline password that reached a message anyway."""
    for password in passwords:
        if len(password) >= 4:
            message = message.replace(password, "********")
    return message
