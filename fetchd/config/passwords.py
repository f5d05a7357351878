"""Where an account's password (or OAuth2 token) comes from.

Secrets are read at each login, not when the config is loaded: an OAuth2
token printed by a command may expire, and a systemd credential is only
present while the service runs. Every failure becomes a ``ConfigError`` that
names the account and the kind of source. Messages never carry the secret, nor
anything a password command printed (its output may be the secret itself).
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from fetchd.errors import ConfigError

#: Seconds a ``password_command`` may run before fetchd gives up on it.
PASSWORD_COMMAND_TIMEOUT = 30.0


def _strip_newline(text: str) -> str:
    """Drop the line ending that editors and ``echo`` append; keep other whitespace."""
    return text.rstrip("\r\n")


def _non_empty(account: str, source: str, secret: str, key: str = "password") -> str:
    """An empty secret is always a mistake; say so here rather than as an AUTH failure."""
    if not secret:
        raise ConfigError(f"account {account}: {source} gave an empty {key.replace('_', ' ')}")
    return secret


def _read_text(account: str, path: Path, what: str) -> str:
    """A secret file's text without its trailing newline."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"account {account}: {what} {path} is not UTF-8 text") from exc
    except OSError as exc:
        raise ConfigError(f"account {account}: cannot read {what} {path}: {exc.strerror}") from exc
    return _strip_newline(text)


def read_file(account: str, path: Path, *, key: str = "password") -> str:
    """Return the contents of ``password_file`` without its trailing newline.

    ``key`` names the secret (``client_secret`` reads ``client_secret_file``).
    """
    text = _read_text(account, path, f"{key}_file")
    return _non_empty(account, f"{key}_file {path}", text, key)


def read_env(account: str, variable: str, *, key: str = "password") -> str:
    """Return the value of the environment variable named by ``password_env``."""
    value = os.environ.get(variable)
    if value is None:
        raise ConfigError(
            f"account {account}: {key}_env names ${variable}, which is not set "
            "in fetchd's environment"
        )
    return _non_empty(account, f"{key}_env ${variable}", value, key)


def read_credential(account: str, name: str, *, key: str = "password") -> str:
    """Return the systemd credential ``name`` from ``$CREDENTIALS_DIRECTORY``.

    systemd sets that variable for a unit with ``LoadCredential=`` or
    ``LoadCredentialEncrypted=``; the files there are readable only by the service.
    """
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        raise ConfigError(
            f"account {account}: {key}_credential {name!r} needs $CREDENTIALS_DIRECTORY, "
            "which systemd sets for units with LoadCredential= or LoadCredentialEncrypted="
        )
    text = _read_text(account, Path(directory) / name, "credential")
    return _non_empty(account, f"{key}_credential {name!r}", text, key)


def run_command(account: str, command: str, *, key: str = "password") -> str:
    """Run ``password_command`` without a shell and return its standard output.

    No shell means no quoting surprises and no injection through the config. The
    command's stderr passes through to fetchd's stderr (so a prompt or a warning
    reaches the journal); its stdout is the secret and never appears in a message.
    """
    source = f"{key}_command"
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ConfigError(f"account {account}: {source} cannot be split into words") from exc
    if not argv:
        raise ConfigError(f"account {account}: {source} is empty")
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            timeout=PASSWORD_COMMAND_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ConfigError(
            f"account {account}: {source} did not finish within {PASSWORD_COMMAND_TIMEOUT:g} s"
        ) from exc
    except OSError as exc:
        raise ConfigError(
            f"account {account}: cannot run {source} program {argv[0]!r}: {exc.strerror}"
        ) from exc
    if done.returncode < 0:
        raise ConfigError(f"account {account}: {source} was killed by signal {-done.returncode}")
    if done.returncode != 0:
        raise ConfigError(f"account {account}: {source} exited with status {done.returncode}")
    try:
        text = done.stdout.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"account {account}: {source} printed something not UTF-8") from exc
    return _non_empty(account, source, _strip_newline(text), key)
