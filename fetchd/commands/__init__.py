"""The commands behind ``fetchd COMMAND``; ``fetchd.cli`` imports each on use.

Every command module has ``run(args) -> int``. Helpers shared by several
commands (load the config, set up logging, open the state) live here.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import unicodedata
from collections.abc import Sequence

from fetchd.config import AccountConfig, Config, default_config_path, load_config
from fetchd.errors import UsageError
from fetchd.log import configure_logging
from fetchd.store.state import State, state_path


def load(args: argparse.Namespace) -> Config:
    """The validated config named by ``-c`` (or the default), with logging set up."""
    config = load_config(args.config or default_config_path())
    configure_logging(
        args.log_level or config.daemon.log_level, args.log_format or config.daemon.log_format
    )
    return config


def select_accounts(config: Config, names: Sequence[str]) -> list[AccountConfig]:
    """The named accounts, or every enabled one; unknown names are a usage error."""
    if not names:
        return [account for account in config.accounts.values() if account.enabled]
    unknown = [name for name in names if name not in config.accounts]
    if unknown:
        known = ", ".join(config.accounts) or "none"
        raise UsageError(f"no account named {', '.join(unknown)} in {config.path} (known: {known})")
    return [config.accounts[name] for name in names]


def open_state(config: Config) -> State:
    """The state database for fetching, created on first use."""
    return State(state_path(config.daemon.data_dir))


def read_state(config: Config) -> State | None:
    """The state database opened read-only, or None if nothing was ever fetched.

    Commands that only report never create it, and never leave a file behind
    that the daemon's user could not write.
    """
    path = state_path(config.daemon.data_dir)
    return State.open_readonly(path) if path.is_file() else None


def shipped(name: str) -> str:
    """The text of a file shipped with fetchd in ``fetchd/data``: the example config, the units."""
    from importlib import resources  # noqa: PLC0415  (a few ms that most commands never need)

    return resources.files("fetchd").joinpath("data", name).read_text(encoding="utf-8")


def invoked_as() -> str:
    """How to type this fetchd again: as it was started (``.venv/bin/fetchd``), else ``fetchd``."""
    typed = sys.argv[0] if sys.argv else ""
    return shlex.quote(typed) if typed.rsplit("/", 1)[-1] == "fetchd" else "fetchd"


def say(text: str) -> None:
    """One line for the person at the terminal (stdout, flushed)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def printable(text: str) -> str:
    """Text from a sender or a server, made safe for a terminal.

    Control characters could move the cursor or recolour the terminal, and
    bidirectional overrides (U+202E) could make a subject read backwards; the
    first become spaces, the second are dropped.
    """
    out = []
    for char in text:
        category = unicodedata.category(char)
        if category == "Cc":
            out.append(" ")
        elif category == "Cs":  # a byte that was not UTF-8 (surrogateescape)
            out.append("\ufffd")
        elif category != "Cf" or char in "\u200c\u200d":  # keep joiners: emoji, Indic scripts
            out.append(char)
    return " ".join("".join(out).split())


def shown_uid(uid: str) -> str:
    """A UID as people see it: every byte that is not printable UTF-8 as an escape.

    Two UIDs that differ in one invalid byte must look different, so nothing
    is replaced or dropped: ``b"u\\xff"`` is shown as ``u\\xff``.
    """
    text = uid.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
