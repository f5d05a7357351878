"""The commands behind ``fetchd COMMAND``; ``fetchd.cli`` imports each on use.

Every command module has ``run(args) -> int``. Helpers shared by several
commands (load the config, set up logging, open the state) live here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fetchd.config import AccountConfig, Config, default_config_path, load_config
from fetchd.errors import UsageError
from fetchd.log import configure_logging
from fetchd.store.state import STATE_FILE, State


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
    return State(config.daemon.data_dir / STATE_FILE)


def read_state(config: Config) -> State | None:
    """The state database opened read-only, or None if nothing was ever fetched.

    Commands that only report never create it, and never leave a file behind
    that the daemon's user could not write.
    """
    path = config.daemon.data_dir / STATE_FILE
    return State.open_readonly(path) if path.is_file() else None


def say(text: str) -> None:
    """One line for the person at the terminal (stdout, flushed)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
