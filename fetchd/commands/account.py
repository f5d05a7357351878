"""``fetchd account add|remove``: accounts as drop-in files, never edits to the main config.

``add`` writes ``accounts.d/NAME.toml``, then loads the whole config as the
daemon would; if that fails, the new files are removed again and every
problem is printed. A password is never taken as an argument (it would land
in the shell's history): without a password source option fetchd asks for it
on the terminal and keeps it in ``accounts.d/NAME.password`` (mode 0600), or
with ``--keyring`` in the desktop keyring as ``fetchd/NAME``.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import Any

from fetchd.commands import say
from fetchd.config import PASSWORD_SOURCES, default_config_path, drop_ins, load_config, passwords
from fetchd.errors import UsageError

#: The password sources ``account add`` takes as options (not the password itself).
_SOURCES = PASSWORD_SOURCES[1:]
#: The keyring's service for the passwords ``account add --keyring`` stores.
KEYRING_SERVICE = "fetchd"


def run(args: argparse.Namespace) -> int:
    config_path = (args.config or default_config_path()).expanduser().absolute()
    if args.action == "add":
        return _add(args, config_path)
    return _remove(args.name, config_path)


def _add(args: argparse.Namespace, config_path: Path) -> int:
    name: str = args.name
    if not config_path.is_file():
        raise UsageError(f"{config_path} does not exist; `fetchd init` writes a starter config")
    drop_in = drop_ins.drop_in_path(config_path, name)
    existing = drop_ins.defined_at(config_path, name)
    if existing is not None:
        raise UsageError(f"account {name} already exists in {existing}")
    table = _table(args)
    written: list[Path] = []
    in_keyring = None
    try:
        if not any(key in table for key in _SOURCES):
            secret = _ask_password(args.user, args.host)
            if args.keyring:
                in_keyring = f"{KEYRING_SERVICE}/{name}"
                passwords.store_keyring(name, in_keyring, secret)
                table["password_keyring"] = in_keyring
            else:
                written.append(drop_ins.write_password_file(config_path, name, secret))
                # Relative paths in drop-ins are read relative to the main config's directory.
                table["password_file"] = f"{drop_ins.DROP_IN_DIR}/{name}.password"
        written.append(drop_ins.write_drop_in(config_path, name, table))
        load_config(config_path)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        if in_keyring is not None:
            passwords.forget_keyring(in_keyring)
        raise
    say(f"added account {name}: {drop_in}")
    if in_keyring is not None:
        say(
            f"the password is in your keyring as {in_keyring}; only programs in this "
            "desktop session reach it (a user service, not the system service)"
        )
    if len(written) == 2 and os.geteuid() == 0:
        say(
            "note: a service running as its own user cannot read that password file; "
            "see --password-credential for systemd credentials"
        )
    say("a running daemon picks it up when reloaded: systemctl reload fetchd")
    return 0


def _table(args: argparse.Namespace) -> dict[str, Any]:
    """The account's keys, as they will appear in its drop-in file."""
    table: dict[str, Any] = {"host": args.host, "username": args.user}
    if args.port is not None:
        table["port"] = args.port
    if args.security is not None:
        table["security"] = args.security
    for key in _SOURCES:
        value = getattr(args, key)
        if value is None:
            continue
        if key == "password_file":  # given relative to where the user stands, not the config
            value = str(Path(value).expanduser().absolute())
        table[key] = value
    if args.delete_after_fetch:
        table["delete_after_fetch"] = True
    return table


def _ask_password(user: str, host: str) -> str:
    if not sys.stdin.isatty():
        raise UsageError(
            "no password source given: use --password-command, --password-file, "
            "--password-env, --password-credential or --password-keyring, or run in a "
            "terminal to be asked"
        )
    secret = getpass.getpass(f"Password for {user} at {host}: ")
    if not secret:
        raise UsageError("no password entered; nothing was written")
    return secret


def _remove(name: str, config_path: Path) -> int:
    removed = drop_ins.remove_drop_in(config_path, name)
    if removed:
        for path in removed:
            say(f"removed {path}")
        say(
            f"fetched mail of {name} stays in the data directory; "
            "a running daemon drops the account when reloaded: systemctl reload fetchd"
        )
        return 0
    if drop_ins.main_file_defines(config_path, name):
        raise UsageError(
            f"account {name} is defined in {config_path} as [accounts.{name}], not in "
            f"{drop_ins.DROP_IN_DIR}/; remove that table from the file by hand"
        )
    raise UsageError(f"no account {name} in {config_path.parent / drop_ins.DROP_IN_DIR}")
