"""``fetchd demo [DIR]``: fetch a sample mailbox from an embedded server; no config needed.

The first thing a newcomer runs, so it must work on a fresh machine: it
starts fetchd's own test POP3 server on 127.0.0.1 with the messages of
``fetchd.commands.demo_mail`` and a password made up for this run, builds the account
in code, and runs the same ``poll_account`` that ``fetchd fetch`` and the
daemon run. Then it shows what arrived: where, how much, the directory tree,
and the listing ``fetchd list`` would print.

The state lives in DIR, so a second run into the same DIR fetches nothing:
the exactly-once promise, shown.
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from fetchd.commands import open_state, say
from fetchd.commands.demo_mail import Sample, samples
from fetchd.commands.listing import Filters, human_lines, select
from fetchd.config import AccountConfig, Config, DaemonConfig
from fetchd.errors import StorageError, UsageError
from fetchd.log import configure_logging, get_logger, pop3_transcript
from fetchd.poll import PollResult, poll_account
from fetchd.store.state import Indexed
from fetchd.testing.server import Mailbox, POP3TestServer, ServerOptions

DEMO_ACCOUNT = "demo"
DEMO_USER = "demo"
#: SQLite's write-ahead log files come and go; they would only confuse the tree.
_TRANSIENT_SUFFIXES = ("-wal", "-shm")


@dataclass(frozen=True)
class DemoRun:
    """What one demo run fetched, for the report."""

    data_dir: Path
    port: int
    offered: int
    result: PollResult
    rows: list[Indexed]  # everything the state lists for the demo account
    new_uids: frozenset[str]  # the messages this run stored


def run(args: argparse.Namespace) -> int:
    # Warnings only: the report below says what happened in words a newcomer reads.
    configure_logging(args.log_level or "warning", args.log_format or "auto")
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
    return path


def fetch_samples(data_dir: Path, mail: Sequence[Sample], *, transcript: bool = False) -> DemoRun:
    """Serve ``mail`` on a loopback port and poll it once into ``data_dir``."""
    password = secrets.token_urlsafe(16)
    mailbox = Mailbox([sample.raw for sample in mail], uidls=[sample.uid for sample in mail])
    options = ServerOptions(user=DEMO_USER, password=password)
    with POP3TestServer(mailbox, options) as server:
        config = demo_config(data_dir, server.port, password)
        account = config.accounts[DEMO_ACCOUNT]
        log = get_logger(account=DEMO_ACCOUNT)
        state = open_state(config)
        try:
            before = set(state.known(DEMO_ACCOUNT))
            result = poll_account(
                account, data_dir, state, transcript=pop3_transcript(log) if transcript else None
            )
            rows = state.listing(DEMO_ACCOUNT)
        finally:
            state.close()
    new = frozenset(row.uid for row in rows if row.uid not in before)
    return DemoRun(data_dir, server.port, len(mail), result, rows, new)


def demo_config(data_dir: Path, port: int, password: str) -> Config:
    """The config a user would write for the embedded server, built in code."""
    account = AccountConfig(
        name=DEMO_ACCOUNT,
        host="127.0.0.1",
        port=port,
        security="plain",  # loopback only: the password never leaves this machine
        username=DEMO_USER,
        password=SecretStr(password),
    )
    return Config(
        path=data_dir / "(built in by fetchd demo)",
        daemon=DaemonConfig(data_dir=data_dir),
        accounts={DEMO_ACCOUNT: account},
    )


def report(demo: DemoRun) -> list[str]:
    """What the person at the terminal reads after the demo."""
    lines = [
        f"fetchd demo: polled a sample mailbox of {demo.offered} messages "
        f"on a POP3 server at 127.0.0.1:{demo.port}",
        f"data directory: {demo.data_dir}",
        "",
        *_summary(demo),
        "",
        *tree_lines(demo.data_dir),
        "",
        "Without a config file there is no 'fetchd -c CONFIG list' for this account;",
        "this is what it would print:",
        "",
        *human_lines(select(demo.rows, Filters()), demo.data_dir),
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
