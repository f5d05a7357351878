"""``fetchd demo [DIR]``: fetch a sample mailbox from an embedded server; no config needed.

The first thing a newcomer runs, so it must work on a fresh machine: it
starts fetchd's own test POP3 server on 127.0.0.1 with the messages of
``fetchd.commands.demo_mail`` and a password made up for this run, writes
``DIR/config.toml`` for it, and polls it through the same runner as
``fetchd fetch`` and the daemon, which records the poll for ``fetchd status``.
Then it shows what arrived: where, how much, the directory tree, and what
``fetchd -c DIR/config.toml list`` prints.

The server is gone when the demo ends, so the config's account is disabled:
``list``, ``status`` and ``check`` read DIR, and ``fetch`` leaves the account
alone instead of failing to connect. The state lives in DIR too, so a second
run into the same DIR fetches nothing: the exactly-once promise, shown.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from fetchd.commands import invoked_as, open_state, say
from fetchd.commands.demo_mail import Sample, samples
from fetchd.commands.listing import Filters, human_lines, select
from fetchd.config import load_config
from fetchd.errors import StorageError, UsageError
from fetchd.log import configure_logging, get_logger
from fetchd.poll import PollResult
from fetchd.runner import run_account
from fetchd.store.state import Indexed
from fetchd.testing.server import Mailbox, POP3TestServer, ServerOptions

DEMO_ACCOUNT = "demo"
DEMO_USER = "demo"
CONFIG_NAME = "config.toml"
#: The first line of the config the demo writes; a DIR/config.toml without it is not the demo's.
CONFIG_MARK = "# Written by `fetchd demo`"
#: SQLite's write-ahead log files come and go; they would only confuse the tree.
_TRANSIENT_SUFFIXES = ("-wal", "-shm")


@dataclass(frozen=True)
class DemoRun:
    """What one demo run fetched, for the report."""

    data_dir: Path
    config: Path
    port: int
    offered: int
    result: PollResult
    rows: list[Indexed]  # everything the state lists for the demo account
    new_uids: frozenset[str]  # the messages this run stored


def run(args: argparse.Namespace) -> int:
    # Errors only: the report below says what happened, warnings included, in words a
    # newcomer reads.
    configure_logging(args.log_level or "error", args.log_format or "auto")
    data_dir = prepare_directory(args.directory)
    demo = fetch_samples(data_dir, samples(), transcript=args.log_level in ("debug", "info"))
    for line in report(demo):
        say(line)
    return 0


def prepare_directory(directory: Path | None) -> Path:
    """DIR made absolute and created, or a new temporary directory."""
    if directory is None:
        return Path(tempfile.mkdtemp(prefix="fetchd-demo-"))
    path = directory.expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path} is not a directory; give fetchd demo a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create {path}: {exc.strerror}") from exc
    config = path / CONFIG_NAME
    if config.exists() and not _written_by_demo(config):
        raise UsageError(f"{config} exists and fetchd demo did not write it; choose another DIR")
    return path


def _written_by_demo(config: Path) -> bool:
    try:
        with config.open(encoding="utf-8", errors="replace") as file:
            return file.readline().startswith(CONFIG_MARK)
    except OSError as exc:
        raise StorageError(f"cannot read {config}: {exc.strerror}") from exc


def fetch_samples(data_dir: Path, mail: Sequence[Sample], *, transcript: bool = False) -> DemoRun:
    """Serve ``mail`` on a loopback port, write its config and poll it once into ``data_dir``."""
    password = secrets.token_urlsafe(16)
    mailbox = Mailbox([sample.raw for sample in mail], uidls=[sample.uid for sample in mail])
    options = ServerOptions(user=DEMO_USER, password=password)
    with POP3TestServer(mailbox, options) as server:
        config_path = write_config(data_dir, server.port, password)
        config = load_config(config_path)
        state = open_state(config)
        try:
            before = set(state.known(DEMO_ACCOUNT))
            polled = run_account(
                config.accounts[DEMO_ACCOUNT],
                data_dir,
                state,
                get_logger(account=DEMO_ACCOUNT),
                transcript=transcript,
            )
            rows = state.listing(DEMO_ACCOUNT)
        finally:
            state.close()
    if polled.error is not None:
        raise polled.error  # recorded for `fetchd status`; fetchd.cli says what failed
    assert polled.result is not None  # a poll without an error has a result
    new = frozenset(row.uid for row in rows if row.uid not in before)
    return DemoRun(data_dir, config_path, server.port, len(mail), polled.result, rows, new)


def write_config(data_dir: Path, port: int, password: str) -> Path:
    """``DIR/config.toml``: the config a user would write for the embedded server."""
    settings = {
        "daemon": {"data_dir": str(data_dir)},
        "accounts": {
            DEMO_ACCOUNT: {
                "host": "127.0.0.1",
                "port": port,
                "security": "plain",  # loopback only: the password never leaves this machine
                "username": DEMO_USER,
                "password": password,
                "enabled": False,
            }
        },
    }
    text = (
        f"{CONFIG_MARK} for the sample mailbox it fetched into this folder.\n"
        "# The demo's server (and its one-time password) ended with the demo, so the\n"
        "# account is disabled: `fetchd list`, `status` and `check` read what it fetched,\n"
        "# and `fetchd fetch` leaves it alone. Each demo run into this folder rewrites it.\n"
        "\n" + tomli_w.dumps(settings)
    )
    path = data_dir / CONFIG_NAME
    try:
        # Mode 0600: the file holds a password, and fetchd refuses one anyone may read.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            os.fchmod(file.fileno(), 0o600)
            file.write(text)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror}") from exc
    return path


def report(demo: DemoRun) -> list[str]:
    """What the person at the terminal reads after the demo."""
    config = shlex.quote(str(demo.config))
    fetchd = invoked_as()
    lines = [
        f"fetchd demo: polled a sample mailbox of {demo.offered} messages "
        f"on a POP3 server at 127.0.0.1:{demo.port}",
        f"data directory: {demo.data_dir}",
        "",
        *_summary(demo),
        "",
        *tree_lines(demo.data_dir),
        "",
        f"What fetchd -c {config} list prints:",
        "",
        *human_lines(select(demo.rows, Filters()), demo.data_dir),
        "",
        "The demo wrote that config for its (now stopped) server; try:",
        f"  {fetchd} -c {config} list --with-attachments",
        f"  {fetchd} -c {config} status",
        f"  {fetchd} -c {config} check",
        "",
        "To fetch your own mail, write a config with 'fetchd init'.",
    ]
    return lines


def _summary(demo: DemoRun) -> list[str]:
    stored = demo.result.stored
    if stored == 0:
        return [
            f"Nothing new: all {demo.offered} messages on the server were fetched by an earlier",
            f"run into {demo.data_dir}. fetchd records each message's UIDL in",
            f"{demo.data_dir / 'state.sqlite3'} and fetches every message exactly once.",
        ]
    fresh = [row for row in demo.rows if row.uid in demo.new_uids]
    files = sum(len(row.attachments) for row in fresh)
    with_files = sum(1 for row in fresh if row.attachments)
    lines = [
        f"Stored {stored} new messages ({demo.result.octets / 1000:.1f} kB) as .eml files "
        f"and extracted {files} attachments from {with_files} of them.",
    ]
    if demo.result.warnings:
        lines.append("fetchd noticed (the messages are stored all the same):")
        lines.extend(f"  - {_readable(warning, fresh)}" for warning in demo.result.warnings)
    return lines


def _readable(warning: str, rows: Sequence[Indexed]) -> str:
    """A poll warning that names a message by its subject instead of its file name."""
    for row in rows:
        if row.path and warning.startswith(f"{row.path}: "):
            return f"{row.subject!r}: {warning.removeprefix(f'{row.path}: ')}"
    return warning


def tree_lines(root: Path) -> list[str]:
    """``root`` and everything below it, sorted by name, drawn as a tree."""
    return [str(root), *_branch(root, "")]


def _branch(directory: Path, prefix: str) -> Iterator[str]:
    entries = sorted(
        (entry for entry in directory.iterdir() if not entry.name.endswith(_TRANSIENT_SUFFIXES)),
        key=lambda entry: entry.name,
    )
    for index, entry in enumerate(entries):
        last = index == len(entries) - 1
        is_dir = entry.is_dir() and not entry.is_symlink()
        yield f"{prefix}{'└── ' if last else '├── '}{entry.name}{'/' if is_dir else ''}"
        if is_dir:
            yield from _branch(entry, prefix + ("    " if last else "│   "))
