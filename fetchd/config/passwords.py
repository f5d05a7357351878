"""Where an account's password (or OAuth2 token) comes from.

Secrets are read at each login, not when the config is loaded: an OAuth2
token printed by a command may expire, and a systemd credential is only
present while the service runs. Every failure becomes a ``ConfigError`` that
names the account and the kind of source. Messages never carry the secret, nor
anything a password command printed (its output may be the secret itself).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fetchd import journal
from fetchd.errors import ConfigError

#: Seconds a ``password_command`` may run before fetchd gives up on it.
PASSWORD_COMMAND_TIMEOUT = 30.0
#: Octets of a password command's stderr passed on to the journal.
STDERR_SHOWN = 8192


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
    command's stderr reaches fetchd's stderr (so a warning reaches the journal,
    each line with a warning's priority when that stderr is journald's); its
    stdout is the secret and never appears in a message.
    """
    source = f"{key}_command"
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ConfigError(f"account {account}: {source} cannot be split into words") from exc
    if not argv:
        raise ConfigError(f"account {account}: {source} is empty")
    # Under journald its lines are read and given a priority, or each would be "info".
    to_journal = journal.connected()
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if to_journal else None,
            timeout=PASSWORD_COMMAND_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        _pass_on(exc.stderr)
        raise ConfigError(
            f"account {account}: {source} did not finish within {PASSWORD_COMMAND_TIMEOUT:g} s"
        ) from exc
    except OSError as exc:
        raise ConfigError(
            f"account {account}: cannot run {source} program {argv[0]!r}: {exc.strerror}"
        ) from exc
    _pass_on(done.stderr)
    if done.returncode < 0:
        raise ConfigError(f"account {account}: {source} was killed by signal {-done.returncode}")
    if done.returncode != 0:
        raise ConfigError(f"account {account}: {source} exited with status {done.returncode}")
    try:
        text = done.stdout.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"account {account}: {source} printed something not UTF-8") from exc
    return _non_empty(account, source, _strip_newline(text), key)


def _pass_on(stderr: bytes | None) -> None:
    """What a password command said on stderr (read only under journald), as warnings."""
    if stderr:
        journal.write(stderr[:STDERR_SHOWN].decode("utf-8", "replace").rstrip("\n"), "warning")


#: Environment variables systemd sets for the processes of a service.
_SYSTEMD_MARKERS = ("INVOCATION_ID", "JOURNAL_STREAM")


def read_keyring(account: str, entry: str, *, key: str = "password") -> str:
    """Return the secret stored for ``entry`` ("SERVICE/USER") in the system keyring.

    The optional ``keyring`` package (``pip install 'fetchd[keyring]'``) is
    imported only here. A service started by systemd usually reaches no
    keyring: the Secret Service lives in a desktop session's D-Bus, which a
    system service does not have, so the error says what to use instead.
    """
    source = f"{key}_keyring {entry!r}"
    service, _, user = entry.rpartition("/")
    keyring = _keyring_module(account, source)
    try:
        secret = keyring.get_password(service, user)
    except Exception as exc:  # any backend's failure: D-Bus, locked, none
        raise ConfigError(f"account {account}: {source}: {_keyring_problem(exc)}") from None
    if secret is None:
        raise ConfigError(
            f"account {account}: {source}: the keyring holds no {key.replace('_', ' ')} for "
            f"user {user!r} of service {service!r} (store one with `keyring set {service} {user}`)"
        )
    return _non_empty(account, source, secret, key)


def store_keyring(account: str, entry: str, secret: str) -> None:
    """Keep ``secret`` in the keyring as ``entry`` ("SERVICE/USER"): ``account add --keyring``."""
    service, _, user = entry.rpartition("/")
    source = f"password_keyring {entry!r}"
    keyring = _keyring_module(account, source)
    try:
        keyring.set_password(service, user, secret)
    except Exception as exc:  # any backend's failure, as when reading
        raise ConfigError(f"account {account}: {source}: {_keyring_problem(exc)}") from None


def forget_keyring(entry: str) -> None:
    """Remove what ``store_keyring`` kept, if it can be; an undo, so nothing is raised."""
    service, _, user = entry.rpartition("/")
    with contextlib.suppress(Exception):
        importlib.import_module("keyring").delete_password(service, user)


def _keyring_module(account: str, source: str) -> Any:
    try:
        return importlib.import_module("keyring")
    except ImportError as exc:
        raise ConfigError(
            f"account {account}: {source} needs the keyring package: pip install 'fetchd[keyring]'"
        ) from exc


def _keyring_problem(exc: Exception) -> str:
    """Why the keyring failed, without anything the backend might have echoed back."""
    what = f"no keyring could be reached ({type(exc).__name__})"
    if any(os.environ.get(name) for name in _SYSTEMD_MARKERS):
        return (
            f"{what}; a service run by systemd has no desktop keyring: store the "
            "secret as a systemd credential (LoadCredentialEncrypted=) and use "
            "the _credential key instead"
        )
    return f"{what}; is a keyring (Secret Service, KWallet) unlocked in this session?"


#: The kinds of source beside an inline secret, by the ends of their keys, in the
#: order they are looked at; each with its reader, which words its errors for the
#: secret it reads.
_READERS: dict[str, Callable[..., str]] = {
    "_file": read_file,
    "_env": read_env,
    "_command": run_command,
    "_credential": read_credential,
    "_keyring": read_keyring,
}


def sources(key: str) -> tuple[str, ...]:
    """The keys that may give the secret ``key``: ``key`` itself (inline), then one per kind.

    A password and an OAuth2 client secret come from the same kinds of source,
    so their keys are made here, once: ``password_file``, ``client_secret_file`` ...
    """
    return (key, *(key + kind for kind in _READERS))


def resolve(account: str, settings: object, key: str = "password") -> str | None:
    """The secret ``key`` read now from the source ``settings`` sets; None if it sets none.

    ``settings`` is a config model with the keys of ``sources(key)``; its inline
    secret is a ``SecretStr``. Validation allows one source at most, so the
    first one set is the one.
    """
    inline = getattr(settings, key)
    if inline is not None:
        secret: str = inline.get_secret_value()
        return secret
    for kind, read in _READERS.items():
        value = getattr(settings, key + kind)
        if value is not None:
            return read(account, value, key=key)
    return None
