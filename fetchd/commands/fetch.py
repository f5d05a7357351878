"""``fetchd fetch``: one pass over all (or the named) accounts, then exit.

``--dry-run`` logs in and lists instead, and says per account what a pass
would fetch, skip and delete. It changes nothing: no RETR or DELE on the
server, nothing in the Maildir, and the state database is only read (not
even the poll is recorded: ``fetchd status`` keeps showing the last real one).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence

from fetchd import journal
from fetchd.commands import load, open_state, read_state, say, select_accounts, shown_uid
from fetchd.config import AccountConfig, Config
from fetchd.errors import FetchdError
from fetchd.hooks import DaemonHooks
from fetchd.log import get_logger, pop3_transcript
from fetchd.poll import Progress
from fetchd.pop3.inventory import ServerMessage
from fetchd.preview import Preview, preview_account
from fetchd.runner import AccountRun, run_account
from fetchd.store.account import hands_over
from fetchd.store.state import State


def run(args: argparse.Namespace) -> int:
    config = load(args)
    accounts = select_accounts(config, args.accounts)
    if args.dry_run:
        return dry_run(accounts, config, brief=args.quiet > 0)
    state = open_state(config)
    hooks = DaemonHooks.from_config(config)  # max_hooks holds for the whole run
    runs: list[AccountRun] = []
    try:
        for account in accounts:
            runs.append(
                fetch_one(
                    account, config, state, hooks, mark_seen=args.mark_seen, bar=not args.quiet
                )
            )
    finally:
        state.close()
    failed = [run for run in runs if run.error is not None]
    for run in failed:
        journal.write(f"fetchd: {run.record.account}: {run.error}")
    for run in failed:
        if run.outcome == "bug" and run.error is not None:
            raise run.error  # after polling the others: fetchd.cli reports a bug (exit 70)
    return 1 if failed else 0


def fetch_one(
    account: AccountConfig,
    config: Config,
    state: State,
    hooks: DaemonHooks,
    *,
    mark_seen: bool = False,
    bar: bool = True,
) -> AccountRun:
    """Poll one account through the shared runner; a failure is logged, not raised."""
    log = get_logger(account=account.name)
    progress = _ProgressBar() if bar and sys.stderr.isatty() else None
    try:
        run = run_account(
            account,
            config.daemon.data_dir,
            state,
            log,
            transcript=config.daemon.transcript,
            progress=progress,
            mark_seen=mark_seen,
            daemon_hooks=hooks,
        )
    finally:
        if progress:
            progress.done()
    if isinstance(run.error, FetchdError):
        log.error("poll failed", error=str(run.error), retry_later=run.error.retry_later)
    return run


def dry_run(accounts: Sequence[AccountConfig], config: Config, *, brief: bool = False) -> int:
    """Say what a pass would do for each account; ``brief``: the counts only."""
    # Read only; before any fetch an empty database in memory stands in for it.
    state = read_state(config) or State.in_memory()
    failed = False
    with contextlib.closing(state):
        for account in accounts:
            log = get_logger(account=account.name)
            transcript = pop3_transcript(log) if config.daemon.transcript else None
            try:
                preview = preview_account(
                    account, config.daemon.data_dir, state, transcript=transcript
                )
            except FetchdError as exc:
                journal.write(f"fetchd: {account.name}: {exc}")
                failed = True
                continue
            for warning in preview.warnings:
                log.warning("poll warning", detail=warning)
            for line in preview_lines(preview, account, brief=brief):
                say(line)
    return 1 if failed else 0


def _recover_heading(account: AccountConfig) -> str:
    """What a poll does with a message a crash left in the Maildir unrecorded."""
    if hands_over(account):
        return "in fetchd's Maildir since a crash, would hand over without fetching"
    return "in the Maildir since a crash, would record without fetching"


def preview_lines(preview: Preview, account: AccountConfig, *, brief: bool = False) -> list[str]:
    """A dry run's report: a heading per kind of message, then the messages."""
    too_big = "headers only" if account.fetch_oversized == "headers" else "left on the server"
    groups = (
        ("would fetch", preview.fetch),
        (f"too big, {too_big}", preview.too_big),
        ("failed before, not retried yet", preview.backing_off),
        (_recover_heading(account), preview.recover),
        ("would delete on the server", preview.delete),
    )
    lines = [
        f"{preview.account}: {preview.listed} on the server, {preview.known} fetched before "
        "(dry run: nothing changed)"
    ]
    for heading, messages in groups:
        if messages or heading == "would fetch":
            octets = sum(m.size for m in messages)
            lines.append(f"  {heading}: {len(messages)} ({octets} octets)")
            if not brief:
                lines.extend(_message_line(m) for m in messages)
    return lines


def _message_line(message: ServerMessage) -> str:
    return f"    message {message.number}  uid {shown_uid(message.uid)}  {message.size} octets"


class _ProgressBar:
    """A one-line progress bar on stderr for a person watching a terminal."""

    def __init__(self) -> None:
        self.shown = False

    def __call__(self, progress: Progress) -> None:
        width = 30
        filled = width * progress.done // max(progress.total, 1)
        sys.stderr.write(
            f"\r{progress.account}: [{'#' * filled}{'.' * (width - filled)}] "
            f"{progress.done}/{progress.total} messages, "
            f"{progress.octets / 1e6:.1f}/{progress.total_octets / 1e6:.1f} MB"
        )
        sys.stderr.flush()
        self.shown = True

    def done(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
