"""The value types of fetchd's config: durations, sizes, paths, names, commands.

``parse_duration`` and ``parse_size`` read the human forms (``"1h30m"``,
``"10M"``); the ``Annotated`` types below are what the models in
``fetchd.config`` declare their fields as, so that every field of one kind is
checked, and its error worded, the same way.
"""

from __future__ import annotations

import importlib
import ipaddress
import math
import re
import shlex
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, Strict, ValidationInfo

from fetchd import access

_NUMBER = r"\d+(?:\.\d+)?"
_DURATION = re.compile(
    rf"(?:(?P<d>{_NUMBER})\s*d)?\s*(?:(?P<h>{_NUMBER})\s*h)?\s*"
    rf"(?:(?P<m>{_NUMBER})\s*m)?\s*(?:(?P<s>{_NUMBER})\s*s)?"
)
_DURATION_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_SIZE = re.compile(rf"(?P<n>{_NUMBER})\s*(?P<unit>[kmgt]?)(?:i?b)?", re.IGNORECASE)
_SIZE_BYTES = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_DURATION_HINT = (
    'expected a number of seconds or a duration string such as "90s", "5m", "1h30m" or "1d"'
)
_SIZE_HINT = (
    'expected a number of bytes (an integer) or a size string such as "512K", "10M", '
    '"2.5MB" or "1G"'
)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine: localhost, 127.0.0.0/8 or ::1."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


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


# Field types. Their messages never repeat the input: it could be a secret typed
# into the wrong key.


def _negative(value: object) -> bool:
    """A negative TOML number, which the field's bound then words ("must be positive")."""
    return isinstance(value, int | float) and not isinstance(value, bool) and value < 0


def _as_duration(value: object) -> object:
    if value is None or _negative(value):
        return value
    try:
        if isinstance(value, str | int | float):
            return parse_duration(value)
    except ValueError:
        pass
    raise ValueError(_DURATION_HINT)


def _as_size(value: object) -> object:
    if value is None or (_negative(value) and isinstance(value, int)):
        return value
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


#: Account names become directory names (Maildir, attachments): no "/", no hidden dirs.
ACCOUNT_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")


def _account_name(name: str) -> str:
    if not ACCOUNT_NAME.fullmatch(name):
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


def _keyring_entry(entry: str) -> str:
    service, _, user = entry.rpartition("/")
    if not service.strip() or not user.strip():
        raise ValueError('must be "SERVICE/USER", as stored with `keyring set SERVICE USER`')
    return entry


def _command(command: str) -> str:
    try:
        words = shlex.split(command)
    except ValueError:
        raise ValueError("cannot be split into words (unbalanced quotes?)") from None
    if not words:
        raise ValueError("must name a program to run")
    return command


#: What an ``mda`` argument may name in braces: the account, and its POP3 login.
MDA_PLACEHOLDERS = ("account", "user")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def _argv(example: str) -> Callable[[tuple[str, ...]], tuple[str, ...]]:
    """The check of a command run without a shell (a hook, an MDA): a program, then its
    arguments. ``example`` is a command of its kind, which the error shows."""

    def check(argv: tuple[str, ...]) -> tuple[str, ...]:
        if not argv or not argv[0]:
            raise ValueError(f"must list a program and its arguments, such as {example}")
        if any("\0" in word for word in argv):
            raise ValueError("cannot contain a NUL character")
        return argv

    return check


def _placeholders(argv: tuple[str, ...]) -> tuple[str, ...]:
    """Only the braces an MDA argument may name: a typo would reach the MDA as it is."""
    for word in argv:
        for name in _PLACEHOLDER.findall(word):
            if name not in MDA_PLACEHOLDERS:
                known = ", ".join("{" + n + "}" for n in MDA_PLACEHOLDERS)
                raise ValueError(f"unknown placeholder {{{name}}} in {word!r}: use {known}")
    return argv


def parse_lmtp_address(text: str) -> tuple[str, int | None]:
    """Where an LMTP server listens: ``("/path", None)`` for a socket, else (host, port).

    ``"unix:/run/dovecot/lmtp"``, ``"127.0.0.1:24"``, ``"[::1]:24"``,
    ``"mail.example.org:2424"``. Raises ``ValueError`` for anything else.
    """
    if text.startswith("unix:"):
        path = text.removeprefix("unix:")
        if not path.startswith("/"):
            raise ValueError(f"{text!r}: the socket must be an absolute path, as in unix:/run/lmtp")
        return path, None
    host, colon, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]") if host.startswith("[") else host
    if not colon or not host or any(c.isspace() for c in host) or not port.isdecimal():
        raise ValueError(
            f"{text!r}: expected unix:/path/to/socket or host:port, as in 127.0.0.1:24"
        )
    number = int(port)
    if not 1 <= number <= 65535:
        raise ValueError(f"{text!r}: the port must be 1 to 65535")
    return host, number


def _lmtp(text: str) -> str:
    parse_lmtp_address(text)
    return text


def _recipients(value: object) -> object:
    """One recipient or a list, kept as a tuple; each a non-empty address without spaces."""
    recipients = (value,) if isinstance(value, str) else value
    if not isinstance(recipients, list | tuple) or not recipients:
        raise ValueError('must be a recipient ("alice") or a non-empty list of them')
    for recipient in recipients:
        if not isinstance(recipient, str) or not recipient:
            raise ValueError("each recipient must be a non-empty string")
        if any(c.isspace() or c in "<>" for c in recipient):
            raise ValueError(f"{recipient!r}: a recipient has no spaces or angle brackets")
    return tuple(recipients)


def _group(name: str) -> str:
    """A group that exists here: sharing with a group that does not is a typo, found at start."""
    if not name or ":" in name or any(c.isspace() for c in name):
        raise ValueError('must be a group name, such as "office"')
    try:
        access.group_id(name)
    except LookupError as exc:
        raise ValueError(f"{exc} (create it, or correct the name)") from None
    return name


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


# Booleans and integers must be TOML's own types: a lax parser would read
# delete_after_fetch = "no" as true, or port = true as 1, and a wrong guess can delete mail.
Flag = Annotated[bool, Strict()]
Integer = Annotated[int, Strict()]
Duration = Annotated[float, Field(ge=0), BeforeValidator(_as_duration)]
PositiveDuration = Annotated[float, Field(gt=0), BeforeValidator(_as_duration)]
Size = Annotated[int, Field(gt=0), BeforeValidator(_as_size)]
ResolvedPath = Annotated[Path, AfterValidator(_resolve_path)]
ExistingFile = Annotated[Path, AfterValidator(_resolve_path), AfterValidator(_existing_file)]
AccountName = Annotated[str, AfterValidator(_account_name)]
HostName = Annotated[str, AfterValidator(_host)]
EnvName = Annotated[str, AfterValidator(_env_name)]
CredentialName = Annotated[str, AfterValidator(_credential_name)]
CommandLine = Annotated[str, AfterValidator(_command)]
KeyringEntry = Annotated[str, AfterValidator(_keyring_entry)]
HookCommand = Annotated[tuple[str, ...], AfterValidator(_argv('["notify-send", "mail"]'))]
CronExpression = Annotated[str, AfterValidator(_cron)]
GroupName = Annotated[str, AfterValidator(_group)]
MdaCommand = Annotated[
    tuple[str, ...],
    AfterValidator(_argv('["/usr/lib/dovecot/dovecot-lda", "-d", "alice"]')),
    AfterValidator(_placeholders),
]
LmtpAddress = Annotated[str, AfterValidator(_lmtp)]
Recipients = Annotated[tuple[str, ...], BeforeValidator(_recipients)]
