"""How many messages each account has stored: in all, and today.

The ``fetched_counts`` table is kept by triggers (see ``_schema``) in the
transaction that changes ``messages``; it is only read here, one row per
account, however long the history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fetchd.store.state._db import Database


@dataclass(frozen=True)
class FetchedCount:
    """Messages stored for one account: in all, and on one day (by default today)."""

    total: int
    today: int


class FetchedCountsTable(Database):
    """``State``'s reading of the counters (``fetchd status``, the daemon's status line)."""

    def fetched_today(self) -> int:
        """Messages stored (whole or headers only) today, local time, in all accounts.

        The daemon asks after every poll: one row per account from the
        counters the triggers keep, whatever the size of the history.
        """
        rows = self._query(
            "SELECT COALESCE(SUM(today), 0) FROM fetched_counts WHERE day = ?", (_today(),)
        )
        return int(rows[0][0])

    def fetched_counts(self, day: str | None = None) -> dict[str, FetchedCount]:
        """Per account: messages stored (whole or headers only) in all and on ``day``.

        ``day`` is an ISO date, by default today's, local time ("fetched today").
        Read from the counters: one row per account, never the messages.
        """
        rows = self._query(
            "SELECT account, total, CASE WHEN day = ? THEN today ELSE 0 END FROM fetched_counts"
            " WHERE total > 0",
            (_today() if day is None else day,),
        )
        return {account: FetchedCount(total, today) for account, total, today in rows}


def _today() -> str:
    """Today's local date as SQLite's ``date(t, 'unixepoch', 'localtime')`` writes it."""
    return datetime.now().astimezone().date().isoformat()
