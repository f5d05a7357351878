"""fetchd's configuration: one TOML file plus one drop-in file per account.

Flow: ``load_config(path)`` reads the main file, merges ``accounts.d/NAME.toml``
files found beside it, and validates everything at once with frozen pydantic
models. Every problem is reported together, one line each, as
``FILE: dotted.key.path: what is wrong``, inside a single ``ConfigError``: a
daemon started by systemd should not be fixed one error per restart.

Secrets stay out of the models' ``repr`` (``SecretStr``) and out of every error
message: pydantic echoes input values, so the messages built here drop them.
Passwords from files, the environment, commands or systemd credentials are read
only by ``AccountConfig.resolve_secret()``, at each login.

Relative paths in the config (``data_dir``, ``ca_file``, ``password_file``) are
taken relative to the directory holding the main config file, so a config
behaves the same whatever directory fetchd is started from.

Import cost matters (the CLI imports this module for every command): beyond
pydantic and the standard library, apscheduler is imported only to check a
``schedule``.
"""

from __future__ import annotations

import importlib
import ipaddress
import math
import os
import re
import shlex
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from fetchd import secrets
from fetchd.errors import ConfigError

__all__ = [
    "AccountConfig",
    "AttachmentsConfig",
    "Config",
    "DaemonConfig",
    "default_config_path",
    "load_config",
    "parse_duration",
    "parse_size",
]

# ---------------------------------------------------------------------------
# Durations and sizes


_NUMBER = r"\d+(?:\.\d+)?"
_DURATION = re.compile(
    rf"(?:(?P<d>{_NUMBER})\s*d)?\s*(?:(?P<h>{_NUMBER})\s*h)?\s*"
    rf"(?:(?P<m>{_NUMBER})\s*m)?\s*(?:(?P<s>{_NUMBER})\s*s)?"
)
_DURATION_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_SIZE = re.compile(rf"(?P<n>{_NUMBER})\s*(?P<unit>[kmgt]?)(?:i?b)?", re.IGNORECASE)
_SIZE_BYTES = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_DURATION_HINT = "expected seconds as a number, or a duration such as '90s', '5m', '1h30m', '1d'"
_SIZE_HINT = "expected bytes as a whole number, or a size such as '512K', '10M', '2.5MB', '1G'"


def _plain_number(value: object) -> float | None:
    """Return a finite, non-negative TOML number as float, else None (bools excluded)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and number >= 0 else None


def parse_duration(text: str | int | float) -> float:
    """Return the number of seconds in ``text``.

    Accepts a plain number of seconds (``300``, ``"300"``, ``2.5``) or units in
    descending order, each at most once: ``"1d"``, ``"1h30m"``, ``"90s"``,
    ``"1.5h"``. Raises ``ValueError`` for anything else, including negatives.
    """
    if not isinstance(text, str):
        number = _plain_number(text)
        if number is None:
            raise ValueError(f"invalid duration {text!r}: {_DURATION_HINT}")
        return number
    stripped = text.strip()
    if re.fullmatch(_NUMBER, stripped):
        return float(stripped)
    match = _DURATION.fullmatch(stripped)
    if not stripped or match is None:
        raise ValueError(f"invalid duration {text!r}: {_DURATION_HINT}")
    return sum(
        float(amount) * _DURATION_SECONDS[unit]
        for unit, amount in match.groupdict().items()
        if amount is not None
    )


def parse_size(text: str | int) -> int:
    """Return the number of bytes in ``text``.

    Accepts a whole number of bytes or a number with a binary unit: K, M, G, T
    (optionally followed by ``B`` or ``iB``, any case): ``"512K"`` is 524288 and
    ``"2.5MB"`` is 2621440, rounded down to whole bytes. Raises
    ``ValueError`` for anything else, including negatives.
    """
    if not isinstance(text, str):
        if isinstance(text, bool) or not isinstance(text, int) or text < 0:
            raise ValueError(f"invalid size {text!r}: {_SIZE_HINT}")
        return text
    match = _SIZE.fullmatch(text.strip())
    if match is None or ("." in match["n"] and not match["unit"]):
        raise ValueError(f"invalid size {text!r}: {_SIZE_HINT}")
    # Fraction keeps "2.5M" exact where float arithmetic could land one byte short.
    return int(Fraction(match["n"]) * _SIZE_BYTES[match["unit"].lower()])


# ---------------------------------------------------------------------------
# Field types. Their messages never repeat the input: it could be a secret typed
# into the wrong key.


def _as_duration(value: object) -> object:
    if value is None:
        return None
    try:
        if isinstance(value, str | int | float):
            return parse_duration(value)
    except ValueError:
        pass
    raise ValueError(_DURATION_HINT)


def _as_size(value: object) -> object:
    if value is None:
        return None
    try:
        if isinstance(value, str | int):
            return parse_size(value)
    except ValueError:
        pass
    raise ValueError(_SIZE_HINT)


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Expand ``~`` and anchor relative paths at the config file's directory."""
    path = value.expanduser()
    base = info.context.get("base_dir") if isinstance(info.context, dict) else None
    if isinstance(base, Path) and not path.is_absolute():
        path = base / path
    return path


def _existing_file(path: Path) -> Path:
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    return path


_ACCOUNT_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")


def _account_name(name: str) -> str:
    # Names become directory names (Maildir, attachments): no '/', no hidden dirs.
    if not _ACCOUNT_NAME.fullmatch(name):
        raise ValueError(
            "invalid account name: use 1 to 64 letters, digits, '.', '_' or '-', "
            "not starting with '.' (the name becomes a directory name)"
        )
    return name


def _host(host: str) -> str:
    if not host or any(c.isspace() for c in host):
        raise ValueError("host must be a non-empty name or address without spaces")
    return host


def _env_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError("must be an environment variable name such as FETCHD_WORK_PASSWORD")
    return name


def _credential_name(name: str) -> str:
    # systemd credential names are file names inside $CREDENTIALS_DIRECTORY.
    if not name or "/" in name or name.startswith("."):
        raise ValueError("must be a systemd credential name: no '/', not starting with '.'")
    return name


def _command(command: str) -> str:
    try:
        words = shlex.split(command)
    except ValueError:
        raise ValueError("cannot be split into words (unbalanced quotes?)") from None
    if not words:
        raise ValueError("must name a program to run")
    return command


def _cron(expression: str) -> str:
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError("must be a 5-field cron expression: minute hour day month weekday")
    # Imported here: only configs with a schedule pay apscheduler's import time.
    # The same parser the scheduler uses, so a schedule accepted here also runs there.
    cron = importlib.import_module("apscheduler.triggers.cron")
    try:
        cron.CronTrigger.from_crontab(expression, timezone="UTC")
    except ValueError as exc:
        raise ValueError(f"invalid cron expression: {exc}") from None
    return expression


Duration = Annotated[float, BeforeValidator(_as_duration)]
PositiveDuration = Annotated[float, Field(gt=0), BeforeValidator(_as_duration)]
Size = Annotated[int, Field(ge=1), BeforeValidator(_as_size)]
ResolvedPath = Annotated[Path, AfterValidator(_resolve_path)]
ExistingFile = Annotated[Path, AfterValidator(_resolve_path), AfterValidator(_existing_file)]


class _Frozen(BaseModel):
    # hide_input_in_errors: a ValidationError printed anywhere must not echo a password.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


# ---------------------------------------------------------------------------
# Models


class DaemonConfig(_Frozen):
    """Settings for the process as a whole (the ``[daemon]`` table)."""

    data_dir: ResolvedPath = Field(default=Path("~/Mail/fetchd"), validate_default=True)
    interval: PositiveDuration = 300.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    transcript: bool = True
    max_parallel: Annotated[int, Field(ge=1, le=64)] = 4
    jitter: Annotated[Duration, Field(ge=0)] = 0.0


class AttachmentsConfig(_Frozen):
    """How attachments are copied out of fetched messages."""

    extract: bool = True
    inline: bool = False
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    max_size: Size | None = None


PASSWORD_SOURCES = (
    "password",
    "password_file",
    "password_env",
    "password_command",
    "password_credential",
)
_DEFAULT_PORTS = {"tls": 995, "starttls": 110, "plain": 110}


def _is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine: localhost, 127.0.0.0/8 or ::1."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _combination_problems(values: Mapping[str, Any]) -> Iterator[str]:
    """Problems between keys of one account; ``values`` is validated or raw TOML.

    It accepts raw tables too because pydantic skips cross-field checks once a
    field is invalid, and one run of fetchd should still report everything.
    """
    given = [source for source in PASSWORD_SOURCES if values.get(source) is not None]
    if len(given) != 1:
        found = f"found {', '.join(given)}" if given else "found none"
        yield f"exactly one of {', '.join(PASSWORD_SOURCES)} is required ({found})"
    host = values.get("host")
    if (
        values.get("security") == "plain"
        and values.get("allow_plaintext", False) is False
        and isinstance(host, str)
        and not _is_loopback(host)
    ):
        yield (
            f'security = "plain" would send the password across the network to {host} '
            'in clear text; use security = "tls" or "starttls", or set '
            "allow_plaintext = true if that network path is trusted"
        )
    if values.get("interval") is not None and values.get("schedule") is not None:
        yield "set either interval or schedule, not both"
    if values.get("delete_after_fetch") is True and values.get("delete_after_days") is not None:
        yield "set either delete_after_fetch or delete_after_days, not both"


class AccountConfig(_Frozen):
    """One POP3 account (an ``[accounts.NAME]`` table or ``accounts.d/NAME.toml``)."""

    name: Annotated[str, AfterValidator(_account_name)]
    host: Annotated[str, AfterValidator(_host)]
    port: Annotated[int, Field(ge=1, le=65535)]
    security: Literal["tls", "starttls", "plain"] = "tls"
    ca_file: ExistingFile | None = None
    allow_plaintext: bool = False
    username: Annotated[str, Field(min_length=1)]
    password: SecretStr | None = None
    password_file: ResolvedPath | None = None
    password_env: Annotated[str, AfterValidator(_env_name)] | None = None
    password_command: Annotated[str, AfterValidator(_command)] | None = None
    password_credential: Annotated[str, AfterValidator(_credential_name)] | None = None
    auth: Literal["auto", "user", "apop", "plain", "login", "xoauth2", "oauthbearer"] = "auto"
    delete_after_fetch: bool = False
    delete_after_days: Annotated[int, Field(ge=0)] | None = None
    max_message_size: Size | None = None
    fetch_oversized: Literal["skip", "headers"] = "skip"
    interval: PositiveDuration | None = None
    schedule: Annotated[str, AfterValidator(_cron)] | None = None
    timeout: PositiveDuration = 60.0
    pipelining: Literal["auto", "off"] = "auto"
    enabled: bool = True
    attachments: AttachmentsConfig = Field(default_factory=AttachmentsConfig)

    @model_validator(mode="before")
    @classmethod
    def _default_port(cls, data: Any) -> Any:
        """Fill ``port`` from ``security``: 995 for implicit TLS (RFC 8314), else 110."""
        if isinstance(data, dict) and "port" not in data:
            security = data.get("security", "tls")
            port = _DEFAULT_PORTS.get(security, 995) if isinstance(security, str) else 995
            return {**data, "port": port}
        return data

    @model_validator(mode="after")
    def _check_combinations(self) -> Self:
        """Reject settings that are valid alone but contradict each other."""
        problems = list(_combination_problems(dict(self)))
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def resolve_secret(self) -> str:
        """Return the password or token, read now from its configured source.

        Raises ``ConfigError`` naming the account and the source (never the secret).
        """
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            return secrets.read_file(self.name, self.password_file)
        if self.password_env is not None:
            return secrets.read_env(self.name, self.password_env)
        if self.password_command is not None:
            return secrets.run_command(self.name, self.password_command)
        if self.password_credential is not None:
            return secrets.read_credential(self.name, self.password_credential)
        raise ConfigError(f"account {self.name}: no password source is configured")


class Config(_Frozen):
    """The whole validated configuration and the file it came from."""

    path: Path
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    accounts: dict[str, AccountConfig] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _keys_match_names(self) -> Self:
        for key, account in self.accounts.items():
            if key != account.name:
                raise ValueError(f"account key {key!r} differs from its name {account.name!r}")
        return self


# ---------------------------------------------------------------------------
# Loading


def default_config_path() -> Path:
    """Where fetchd looks for its config when none is given.

    ``$FETCHD_CONFIG`` if set, else ``/etc/fetchd/config.toml`` for root (the
    system service) and ``~/.config/fetchd/config.toml`` for everyone else.
    """
    override = os.environ.get("FETCHD_CONFIG")
    if override:
        return Path(override).expanduser()
    if os.geteuid() == 0:
        return Path("/etc/fetchd/config.toml")
    return Path("~/.config/fetchd/config.toml").expanduser()


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
    """Refuse an inline password in a file other users can read."""
    mode = path.stat().st_mode & 0o777
    if not mode & 0o077:
        return None
    return (
        f"{path}: {key}: this file holds a password but is readable by group or others "
        f"(mode {mode:03o}); run `chmod 600 {path}`, or use password_file, "
        "password_command or password_credential instead"
    )


class _Sources:
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
        accounts[name] = {**table, "name": name}


def _origin(file: Path) -> str:
    return "file name" if file.parent.name == "accounts.d" else "table key"


def _gather(path: Path) -> _Sources:
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
    sources = _Sources(path)
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
        sources.add_account(name, table, path, f"accounts.{_toml_key(name)}")
    for file in _drop_in_files(path.parent / "accounts.d"):
        _merge_drop_in(sources, file)
    return sources


def _merge_drop_in(sources: _Sources, file: Path) -> None:
    name = file.stem
    if name in sources.account_files:
        sources.problems.append(
            f"{file}: account {name!r} is also defined in {sources.account_files[name]} "
            f"as [accounts.{_toml_key(name)}]; define it in one file only"
        )
        return
    try:
        table = _read_toml(file)
    except ConfigError as exc:
        sources.problems.append(str(exc))
        return
    sources.add_account(name, table, file, "")


def load_config(path: Path) -> Config:
    """Read, merge and validate the config at ``path``.

    Raises ``ConfigError`` whose message lists every problem found, one per line.
    """
    path = path.expanduser().absolute()
    sources = _gather(path)
    data = {**sources.raw, "path": path}
    problems = sources.problems
    config = None
    try:
        config = Config.model_validate(data, context={"base_dir": path.parent})
    except ValidationError as exc:
        problems.extend(_describe(exc, sources))
        problems.extend(_unchecked_combinations(exc, sources))
    if problems or config is None:
        raise ConfigError(_scrub("\n".join(problems), sources.passwords))
    return config


# ---------------------------------------------------------------------------
# Error messages


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required key is missing",
}


def _toml_key(key: str) -> str:
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
            path += ("." if path else "") + _toml_key(part)
    return path


def _describe(exc: ValidationError, sources: _Sources) -> Iterator[str]:
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


def _unchecked_combinations(exc: ValidationError, sources: _Sources) -> Iterator[str]:
    """Cross-field problems of accounts whose field errors stopped pydantic early."""
    failed = {
        error["loc"][1]
        for error in exc.errors(include_url=False, include_input=False)
        if len(error["loc"]) > 2 and error["loc"][0] == "accounts"
    }
    tables = sources.raw.get("accounts")
    for name in sorted(n for n in failed if isinstance(n, str)):
        table = tables.get(name) if isinstance(tables, dict) else None
        if not isinstance(table, dict):
            continue
        file = sources.file_of(name)
        where = f"{file}: " if file != sources.main else f"{file}: accounts.{_toml_key(name)}: "
        for problem in _combination_problems(table):
            yield where + problem


def _scrub(message: str, passwords: Iterable[str]) -> str:
    """Last line of defence: mask any inline password that reached a message anyway."""
    for password in passwords:
        if len(password) >= 4:
            message = message.replace(password, "********")
    return message
