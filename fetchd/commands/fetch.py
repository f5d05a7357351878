"""``fetchd fetch``: one pass over all (or the named) accounts, then exit."""

from __future__ import annotations

import argparse
import sys

from fetchd.commands import load, open_state, select_accounts
from fetchd.config import AccountConfig, Config
from fetchd.errors import FetchdError
from fetchd.log import get_logger
from fetchd.poll import Progress
from fetchd.runner import AccountRun, run_account
from fetchd.store.state import State


def run(args: argparse.Namespace) -> int:
    config = load(args)
    accounts = select_accounts(config, args.accounts)
    state = open_state(config)
    runs: list[AccountRun] = []
    try:
        for account in accounts:
            runs.append(fetch_one(account, config, state, mark_seen=args.mark_seen))
    finally:
        state.close()
    failed = [run for run in runs if run.error is not None]
    for run in failed:
        print(f"fetchd: {run.record.account}: {run.error}", file=sys.stderr)
    for run in failed:
        if run.outcome == "bug" and run.error is not None:
            raise run.error  # after polling the others: fetchd.cli reports a bug (exit 70)
    return 1 if failed else 0


def fetch_one(
    account: AccountConfig, config: Config, state: State, *, mark_seen: bool = False
) -> AccountRun:
    """Poll one account through the shared runner; a failure is logged, not raised."""
    log = get_logger(account=account.name)
    bar = _ProgressBar() if sys.stderr.isatty() else None
    try:
        run = run_account(
            account,
            config.daemon.data_dir,
            state,
            log,
            transcript=config.daemon.transcript,
            progress=bar,
            mark_seen=mark_seen,
        )
    finally:
        if bar:
            bar.done()
    if isinstance(run.error, FetchdError):
        log.error("poll failed", error=str(run.error), retry_later=run.error.retry_later)
    return run


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
