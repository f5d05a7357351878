"""``fetchd status [--json]``: each account's polling, from the state database.

It reads what the daemon records after every poll, so it works while the
daemon runs and after it stopped. The database is opened read-only: status
may run as root beside a service that owns the files.

It exits 1 when the last poll of any enabled account failed, so that a
monitor can run ``fetchd status || alert``; an account never polled yet, or
disabled, does not fail it.

While the daemon cannot keep up with its schedule (more due polls than
``max_parallel`` threads can run), it says so in the database and the table
ends with a line about it.

Messages that fail to fetch (a broken message the server cannot send, a
file that cannot be written) are listed per account with their count, last
error and next attempt: one bad message must not hide behind a green poll.

``--json`` prints one object: ``accounts``, a list with one object per
account (the table's columns and more), and ``load``, the running daemon's
last word on its load (``overloaded_since``, null while it keeps up;
``achieved`` and ``configured`` polls a minute; ``max_wait`` in seconds;
``updated``), or null when no daemon runs. Times are local ISO 8601 with
their offset.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from datetime import datetime
from typing import Any

from fetchd.commands import load, printable, read_state, say, shown_uid
from fetchd.config import Config
from fetchd.store.state import LOAD_REFRESH, Failure, FetchedCount, Load, PollStatus, State

_COLUMNS = (
    ("account", "ACCOUNT"),
    ("last_poll", "LAST POLL"),
    ("outcome", "OUTCOME"),
    ("fetched_total", "FETCHED"),
    ("fetched_today", "TODAY"),
    ("failures", "FAILURES"),
    ("failing_messages", "FAILING MSGS"),
    ("next_poll", "NEXT POLL"),
)


def run(args: argparse.Namespace) -> int:
    config = load(args)
    entries, daemon = read(config)
    if args.json:
        say(json.dumps({"accounts": entries, "load": _load_json(daemon)}, indent=2))
    else:
        _print_table(entries)
        line = _load_line(daemon)
        if line:
            say(line)
    return 1 if any(entry["poll_failed"] and entry["enabled"] for entry in entries) else 0


def read(config: Config) -> tuple[list[dict[str, Any]], Load | None]:
    """Every account's entry and the running daemon's load, in one opening of the database."""
    state = read_state(config)
    if state is None:
        return collect(config, None), None
    with contextlib.closing(state):
        return collect(config, state), _current(state.load(), time.time())


#: A load record older than this is a daemon's that ended without clearing it
#: (while it runs, it writes one at least every ``LOAD_REFRESH``, give or take
#: a minute's check): not a daemon overloaded now.
_LOAD_STALE = LOAD_REFRESH + 5 * 60.0


def _current(load: Load | None, now: float) -> Load | None:
    """``load`` if a running daemon wrote it; a stale one is a killed daemon's."""
    if load is None or now - load.updated > _LOAD_STALE:
        return None
    return load


def _load_line(load: Load | None) -> str | None:
    """One line for a daemon that cannot keep up; None while it does."""
    if load is None or (shown := load.shown()) is None:
        return None
    overloaded_since, achieved, configured, max_wait = shown
    since = _iso(overloaded_since) or ""
    return (
        f"the daemon is overloaded since {since[:16].replace('T', ' ')}: "
        f"{achieved} polls a minute of {configured} scheduled, "
        f"polls wait up to {max_wait} s; raise max_parallel or the interval"
    )


def _load_json(load: Load | None) -> dict[str, Any] | None:
    """The daemon's load for ``--json``, its times as the accounts' are."""
    if load is None:
        return None
    return {
        "overloaded_since": _iso(load.overloaded_since),
        "achieved": load.achieved,
        "configured": load.configured,
        "max_wait": load.max_wait,
        "updated": _iso(load.updated),
    }


def collect(config: Config, state: State | None) -> list[dict[str, Any]]:
    """One entry per configured account, ready for JSON; ``state`` None: nothing polled yet."""
    rows: dict[str, PollStatus] = {}
    counts: dict[str, FetchedCount] = {}
    failing: dict[str, list[Failure]] = {}
    if state is not None:
        rows = {row.account: row for row in state.poll_status()}
        counts = state.fetched_counts()
        failing = {name: list(state.failing(name).values()) for name in config.accounts}
    return [
        _entry(name, account.enabled, rows.get(name), counts.get(name), failing.get(name, []))
        for name, account in config.accounts.items()
    ]


def _entry(
    name: str,
    enabled: bool,
    row: PollStatus | None,
    count: FetchedCount | None,
    failing: list[Failure],
) -> dict[str, Any]:
    return {
        "account": name,
        "enabled": enabled,
        "last_poll": _iso(row.finished if row else None),
        "outcome": row.outcome if row else None,
        "poll_failed": row is not None and row.outcome not in (None, "ok"),
        "error": row.error if row else None,
        "new": row.new if row else 0,
        "stored": row.stored if row else 0,
        "fetched_total": count.total if count else 0,
        "fetched_today": count.today if count else 0,
        "last_success": _iso(row.last_success if row else None),
        "failures": row.failures if row else 0,
        "next_poll": _iso(row.next_poll if row else None),
        "failing_messages": len(failing),
        "failing": [_failure(failure) for failure in failing],
    }


def _failure(failure: Failure) -> dict[str, Any]:
    """One failing message; its UID escaped so that odd bytes stay visible and distinct."""
    return {
        "uid": shown_uid(failure.uid),
        "count": failure.count,
        "error": failure.error,
        "next_attempt": _iso(failure.next_attempt),
    }


def _iso(timestamp: float | None) -> str | None:
    """Local time with its offset, to the second."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


def _cell(entry: dict[str, Any], key: str) -> str:
    value = entry[key]
    if key in ("last_poll", "next_poll"):
        return value[:16].replace("T", " ") if value else "-"
    if key == "outcome":
        return "disabled" if not entry["enabled"] and value is None else value or "never polled"
    return str(value)


def _print_table(entries: list[dict[str, Any]]) -> None:
    if not entries:
        say("no accounts configured")
        return
    table = [[title for _, title in _COLUMNS]]
    table += [[_cell(entry, key) for key, _ in _COLUMNS] for entry in entries]
    widths = [max(len(row[i]) for row in table) for i in range(len(_COLUMNS))]
    for row in table:
        say("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    for entry in entries:
        if entry["poll_failed"]:
            say(_poll_failure_line(entry))
        for failure in entry["failing"]:
            say(_failure_line(entry["account"], failure))
    if entries and all(entry["next_poll"] is None for entry in entries):
        say("no poll is scheduled: the daemon (fetchd run) is not running")


def _poll_failure_line(entry: dict[str, Any]) -> str:
    """When the last poll failed, how (the outcome), how often in a row, and why."""
    streak = entry["failures"]
    name = entry["account"] if entry["enabled"] else f"{entry['account']} (disabled)"
    return (
        f"{name}: last poll failed {_cell(entry, 'last_poll')}"
        f" ({entry['outcome']}, {streak} time{'' if streak == 1 else 's'} in a row):"
        f" {printable(entry['error'] or 'no error recorded')}"
    )


def _failure_line(account: str, failure: dict[str, Any]) -> str:
    count = failure["count"]
    when = failure["next_attempt"][:16].replace("T", " ")
    return (
        f"{account}: message {failure['uid']} failed {count} time{'' if count == 1 else 's'}"
        f" (next attempt {when}): {printable(failure['error'])}"
    )
