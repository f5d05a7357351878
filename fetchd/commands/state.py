"""``fetchd state check`` and ``fetchd state rebuild [--force] [ACCOUNT...]``.

The state database says which messages were fetched. If it is damaged (a
disk error, a truncated copy), fetch, list and status fail with SQLite's
words, and nothing mends it by itself. ``check`` runs SQLite's quick check
(``fetchd check`` runs the same one). ``rebuild`` repairs:

1. it moves the damaged file aside, with its -wal and -shm files, under a
   name with the time (``state.damaged-20261201T104500Z.sqlite3``): nothing
   is deleted, the old file stays for whoever wants to look at it;
2. it creates a fresh state database;
3. for each selected account (default: every enabled one) it logs in, lists
   the server's messages and records each one whose file is in the Maildir
   (``fetchd.recovery.recover_account``). It never sends DELE: nothing is deleted
   on the server, and no mail is downloaded.

What only the old database knew is lost: messages marked seen without a
download (``fetch --mark-seen``) and messages moved out of the Maildir are
fetched again on the next poll, and poll history starts afresh. Stop the
daemon before rebuilding. A sound database is rebuilt only with ``--force``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from fetchd.commands import load, say, select_accounts
from fetchd.config import AccountConfig, Config
from fetchd.errors import AccountError, StorageError, UsageError
from fetchd.log import get_logger, pop3_transcript
from fetchd.poll import PollResult
from fetchd.pop3.client import Transcript
from fetchd.store.durable import sync_directory
from fetchd.store.state import State, integrity_problems, state_path

#: The files SQLite keeps beside the database; they belong to it.
_COMPANIONS = ("-wal", "-shm", "-journal")
#: How many of quick_check's findings are shown.
_SHOWN_PROBLEMS = 5


class Recover(Protocol):
    """The signature of ``fetchd.recovery.recover_account``."""

    def __call__(
        self,
        account: AccountConfig,
        data_dir: Path,
        state: State,
        *,
        transcript: Transcript | None = None,
    ) -> PollResult: ...


def run(args: argparse.Namespace) -> int:
    config = load(args)
    if args.action == "check":
        ok, line = verdict(config)
        say(line)
        return 0 if ok else 1
    accounts = select_accounts(config, args.accounts)
    return rebuild(config, accounts, _recover_account, force=args.force)


def verdict(config: Config) -> tuple[bool, str]:
    """Whether the state database is sound, and one line that says so."""
    path = state_path(config.daemon.data_dir)
    if not path.exists():
        return True, f"state: ok: no database at {path} yet (the first fetch creates it)"
    problems = integrity_problems(path)
    if not problems:
        return True, f"state: ok: {path}"
    found = "; ".join(problems[:_SHOWN_PROBLEMS])
    more = len(problems) - _SHOWN_PROBLEMS
    if more > 0:
        found += f" (and {more} more)"
    return False, (
        f"state: FAILED: the state database {path} is damaged: {found}; "
        "'fetchd state rebuild' keeps it aside and rebuilds the state from the Maildir"
    )


def rebuild(
    config: Config, accounts: Sequence[AccountConfig], recover: Recover, *, force: bool = False
) -> int:
    """Set the database aside, start a fresh one, record what each Maildir holds."""
    data_dir = config.daemon.data_dir
    path = state_path(data_dir)
    if path.exists():
        ok, line = verdict(config)
        if ok and not force:
            raise UsageError(
                f"the state database {path} is sound: nothing to rebuild "
                "(--force rebuilds it anyway, forgetting messages marked seen)"
            )
        if not ok:
            say(line)
        say(f"the old state database is kept as {set_aside(path)}")
    state = State(path)
    try:
        recovered = [_recover_one(config, account, state, recover) for account in accounts]
    finally:
        state.close()
    return 0 if all(recovered) else 1


def _recover_one(config: Config, account: AccountConfig, state: State, recover: Recover) -> bool:
    log = get_logger(account=account.name)
    transcript = pop3_transcript(log) if config.daemon.transcript else None
    try:
        result = recover(account, config.daemon.data_dir, state, transcript=transcript)
    except AccountError as exc:
        say(f"{account.name}: FAILED: {exc}")
        return False
    for warning in result.warnings:
        log.warning("recovery warning", detail=warning)
    count = result.stored
    say(f"{account.name}: ok: {count} message{'' if count == 1 else 's'} found in the Maildir")
    return True


def set_aside(path: Path) -> Path:
    """Rename the database and its companions to a new, timestamped name; returns it.

    The -wal and -shm files go first: a stale WAL left beside a fresh
    database would be replayed into it.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.stem}.damaged-{stamp}{path.suffix}")
    number = 1
    while any(Path(f"{aside}{end}").exists() for end in ("", *_COMPANIONS)):
        number += 1
        aside = path.with_name(f"{path.stem}.damaged-{stamp}-{number}{path.suffix}")
    try:
        for end in (*_COMPANIONS, ""):
            source = Path(f"{path}{end}")
            if source.exists():
                source.rename(f"{aside}{end}")
        sync_directory(path.parent)
    except OSError as exc:
        raise StorageError(f"cannot move the state database {path} aside: {exc}") from exc
    return aside


def _recover_account(
    account: AccountConfig, data_dir: Path, state: State, *, transcript: Transcript | None = None
) -> PollResult:
    """``fetchd.recovery.recover_account``, imported when the first account needs it."""
    from fetchd.recovery import recover_account  # noqa: PLC0415

    return recover_account(account, data_dir, state, transcript=transcript)
