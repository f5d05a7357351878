"""Reading fetchd's config files: TOML, drop-in merging, and readable error lines.

``gather`` reads the main file and the ``accounts.d/*.toml`` drop-ins beside it
into one raw mapping, remembering which file each account came from, so that
``describe_errors`` can turn pydantic's errors into ``FILE: key.path: message``
lines. ``fetchd.config.load_config`` validates what ``gather`` returns.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fetchd.errors import ConfigError

#: The folder beside the main config file that holds one file per account.
DROP_IN_DIR = "accounts.d"

if TYPE_CHECKING:
    from pydantic import ValidationError


def _read_toml(path: Path) -> dict[str, Any]:
    """Parse one TOML file; syntax errors keep tomllib's line and column."""
    try:
        with path.open("rb") as stream:
            return tomllib.load(stream)
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


def _mode_problem(path: Path, key: str) -> str | None:
    """Refuse an inline password (or client secret) in a file other users can read."""
    mode = path.stat().st_mode & 0o777
    if not mode & 0o077:
        return None
    base = key.rsplit(".", 1)[-1]
    what = base.replace("_", " ")
    return (
        f"{path}: {key}: this file holds a {what} but is readable by group or others "
        f"(mode {mode:03o}); run `chmod 600 {path}`, or use {base}_file, "
        f"{base}_command or {base}_credential instead"
    )


class Sources:
    """The merged raw config plus which file each account came from."""

    def __init__(self, main: Path) -> None:
        self.main = main
        self.raw: dict[str, Any] = {}
        self.account_files: dict[str, Path] = {}
        self.problems: list[str] = []
        self.passwords: list[str] = []

    def file_of(self, account: object) -> Path:
        return self.account_files.get(account, self.main) if isinstance(account, str) else self.main

    def add_account(self, name: str, table: Any, file: Path, key: str) -> None:
        """Record one account table; ``key`` is its dotted path inside ``file``."""
        accounts: dict[str, Any] = self.raw["accounts"]
        self.account_files[name] = file
        if not isinstance(table, dict):
            accounts[name] = table
            return
        if "name" in table:
            where = f"{key}.name" if key else "name"
            self.problems.append(f"{file}: {where}: unknown key (the name is the {_origin(file)})")
        if "password" in table:
            if isinstance(table["password"], str):
                self.passwords.append(table["password"])
            problem = _mode_problem(file, f"{key}.password" if key else "password")
            if problem:
                self.problems.append(problem)
        oauth2 = table.get("oauth2")
        if isinstance(oauth2, dict) and "client_secret" in oauth2:
            if isinstance(oauth2["client_secret"], str):
                self.passwords.append(oauth2["client_secret"])
            where = f"{key}.oauth2.client_secret" if key else "oauth2.client_secret"
            problem = _mode_problem(file, where)
            if problem:
                self.problems.append(problem)
        accounts[name] = {**table, "name": name}


def _origin(file: Path) -> str:
    return "file name" if file.parent.name == DROP_IN_DIR else "table key"


def gather(path: Path) -> Sources:
    """Read the main file and its drop-ins into one raw mapping."""
    try:
        raw = _read_toml(path)
    except ConfigError as exc:
        if isinstance(exc.__cause__, FileNotFoundError):
            raise ConfigError(
                f"{path}: no such file. fetchd reads $FETCHD_CONFIG if set, else "
                "/etc/fetchd/config.toml (root) or ~/.config/fetchd/config.toml; "
                "`fetchd init` writes a starter config"
            ) from exc
        raise
    sources = Sources(path)
    accounts = raw.pop("accounts", {})
    if "path" in raw:
        sources.problems.append(f"{path}: path: unknown key")
        del raw["path"]
    sources.raw.update(raw)
    if not isinstance(accounts, dict):
        sources.raw["accounts"] = accounts  # validation reports the wrong type
        return sources
    sources.raw["accounts"] = {}
    for name, table in accounts.items():
        sources.add_account(name, table, path, f"accounts.{toml_key(name)}")
    for file in _drop_in_files(path.parent / DROP_IN_DIR):
        _merge_drop_in(sources, file)
    return sources


def _merge_drop_in(sources: Sources, file: Path) -> None:
    name = file.stem
    if name in sources.account_files:
        sources.problems.append(
            f"{file}: account {name!r} is also defined in {sources.account_files[name]} "
            f"as [accounts.{toml_key(name)}]; define it in one file only"
        )
        return
    try:
        table = _read_toml(file)
    except ConfigError as exc:
        sources.problems.append(str(exc))
        return
    sources.add_account(name, table, file, "")


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required key is missing",
}


def toml_key(key: str) -> str:
    """Write ``key`` as TOML would in a dotted path, quoting it when it is not bare."""
    if _BARE_KEY.fullmatch(key):
        return key
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dotted(loc: Iterable[int | str]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + toml_key(part)
    return path


def describe_errors(exc: ValidationError, sources: Sources) -> Iterator[str]:
    """Turn pydantic errors into ``FILE: key.path: message`` lines, without input values."""
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = list(error["loc"])
        if loc[-1:] == ["name"] and len(loc) == 3 and loc[0] == "accounts":
            loc.pop()  # the name was filled in from the table key or file name
        file = sources.main
        if len(loc) >= 2 and loc[0] == "accounts" and sources.file_of(loc[1]) != sources.main:
            file, loc = sources.file_of(loc[1]), loc[2:]
        message = _MESSAGES.get(error["type"], error["msg"]).removeprefix("Value error, ")
        where = f"{file}: {_dotted(loc)}: " if loc else f"{file}: "
        for line in message.split("\n"):
            yield where + line


def scrub(message: str, passwords: Iterable[str]) -> str:
    """Last line of defence: mask any inline password that reached a message anyway."""
    for password in passwords:
        if len(password) >= 4:
            message = message.replace(password, "********")
    return message
