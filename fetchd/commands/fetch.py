"""``fetchd fetch``: one pass over all (or the named) accounts, then exit."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from structlog.typing import FilteringBoundLogger

from fetchd.commands import load, open_state, select_accounts
from fetchd.config import AccountConfig
from fetchd.errors import AccountError
from fetchd.log import get_logger, pop3_transcript
from fetchd.poll import PollResult, Progress, poll_account, poll_record
from fetchd.store.state import State


def run(args: argparse.Namespace) -> int:
    config = load(args)
    accounts = select_accounts(config, args.accounts)
    state = open_state(config)
    failed: list[str] = []
    try:
        for account in accounts:
            error = fetch_one(
                account,
                config.daemon.data_dir,
                state,
                transcript=config.daemon.transcript,
                mark_seen=args.mark_seen,
            )
            if error:
                failed.append(f"{account.name}: {error}")
    finally:
        state.close()
    for line in failed:
        print(f"fetchd: {line}", file=sys.stderr)
    return 1 if failed else 0


def fetch_one(
    account: AccountConfig,
    data_dir: Path,
    state: State,
    *,
    transcript: bool = True,
    mark_seen: bool = False,
) -> str | None:
    """Poll one account and log the outcome; returns why it failed, or None."""
    log = get_logger(account=account.name)
    bar = _ProgressBar() if sys.stderr.isatty() else None
    started = time.time()
    try:
        result = poll_account(
            account,
            data_dir,
            state,
            transcript=pop3_transcript(log) if transcript else None,
            progress=bar,
            mark_seen=mark_seen,
        )
    except AccountError as exc:
        log.error("poll failed", error=str(exc), retry_later=exc.retry_later)
        state.record_poll(poll_record(account.name, started, None, exc))
        return str(exc)
    finally:
        if bar:
            bar.done()
    log_result(log, result)
    state.record_poll(poll_record(account.name, started, result, None))
    return None


def log_result(log: FilteringBoundLogger, result: PollResult) -> None:
    """The poll's warnings, then its one summary event."""
    for warning in result.warnings:
        log.warning("poll warning", detail=warning)
    log.info(
        "poll",
        new=result.new,
        stored=result.stored,
        deleted=result.deleted,
        skipped=result.skipped,
        octets=result.octets,
        sessions=result.sessions,
        seconds=round(result.seconds, 3),
    )


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
