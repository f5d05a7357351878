"""``fetchd init [PATH]``: write a commented starter config, never over an existing one.

``fetchd init --example`` prints the example config shipped with fetchd,
which describes every key, and writes nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fetchd.commands import say, shipped
from fetchd.config import default_config_path
from fetchd.errors import StorageError, UsageError

_STARTER = """\
# fetchd configuration, written by `fetchd init`.
#
# Add an account with `fetchd account add NAME --host HOST --user USER`: it
# writes accounts.d/NAME.toml next to this file and leaves this file alone.
# Or write [accounts.NAME] tables below. Every key is described in the
# example config that `fetchd init --example` prints.
#
# Durations: seconds (300) or "90s", "5m", "1h30m", "1d".
# Unknown keys are errors, so a typo never falls back to a default silently.

[daemon]
# Where fetched mail (one Maildir per account), extracted attachments and
# the state database live.
data_dir = "{data_dir}"

# How often each account is polled, unless it sets its own interval or schedule.
interval = "5m"

# A random delay of up to this much before each poll, so that accounts do not
# all connect in the same second.
jitter = "30s"

# Accounts polled at the same time (1 to 64).
max_parallel = 4

# "debug", "info", "warning" or "error".
log_level = "info"

# Log the POP3 conversation, with passwords and tokens masked.
transcript = true

# An account written here instead of in accounts.d/:
#
# [accounts.work]
# host = "pop.example.com"        # implicit TLS on port 995 unless security says otherwise
# username = "alice@example.com"
# password_command = "pass show mail/work"
# delete_after_fetch = false
"""


def run(args: argparse.Namespace) -> int:
    if args.example:
        sys.stdout.write(shipped("config.example.toml"))
        return 0
    path: Path = (args.path or args.config or default_config_path()).expanduser().absolute()
    # The system service keeps its mail in its StateDirectory= (see `fetchd service install`).
    data_dir = "/var/lib/fetchd" if os.geteuid() == 0 else "~/Mail/fetchd"
    _write_once(path, _STARTER.format(data_dir=data_dir).encode())
    say(f"wrote {path}")
    say(f"next: fetchd -c {path} account add NAME --host HOST --user USER")
    return 0


def _write_once(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600; an existing file is an error, never overwritten."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError as exc:
        raise UsageError(f"{path} already exists; fetchd init does not overwrite it") from exc
    except OSError as exc:
        raise StorageError(f"cannot create {path}: {exc.strerror}") from exc
    try:
        os.fchmod(fd, 0o600)  # whatever the umask says
        os.write(fd, data)
        os.fsync(fd)
    except OSError as exc:
        path.unlink(missing_ok=True)  # a half-written file would block the next try
        raise StorageError(f"cannot write {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)
