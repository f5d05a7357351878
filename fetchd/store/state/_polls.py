"""Poll bookkeeping: the daemon writes it, ``fetchd status`` reads it.

One ``polls`` row per account holds its last poll, its streak of failed
polls, when it is polled next and whether its server is polled carefully;
the one ``daemon_load`` row says whether the daemon keeps up with its
schedule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, cast

from fetchd.errors import FailureKind
from fetchd.store.state._db import Database
from fetchd.store.state._hooks import PollHook, _queue_poll_hooks

#: A poll's outcome: "ok", a ``FetchdError.kind``, or "bug".
Outcome = Literal["ok", "bug"] | FailureKind


@dataclass(frozen=True)
class PollRecord:
    """One finished poll, as the daemon records it for ``fetchd status``."""

    account: str
    started: float
    finished: float
    #: "ok", or what kind of failure: "auth", "busy", "network", "storage" ...
    outcome: Outcome
    error: str | None = None
    new: int = 0
    stored: int = 0
    deleted: int = 0
    octets: int = 0
    next_poll: float | None = None


@dataclass(frozen=True)
class PollStatus:
    """The last poll of one account and what comes next (one ``polls`` row)."""

    account: str
    started: float | None
    finished: float | None
    outcome: Outcome | None
    error: str | None
    new: int
    stored: int
    deleted: int
    octets: int
    last_success: float | None
    failures: int
    next_poll: float | None


@dataclass(frozen=True)
class Load:
    """Whether the daemon keeps up with its schedule, as it last said (``daemon_load``)."""

    #: Epoch seconds since when polls run late; None while the daemon keeps up.
    overloaded_since: float | None
    #: Polls per minute started in the last period, and what the schedule asks for.
    achieved: float
    configured: float
    #: Seconds the longest-waiting due poll waited in that period.
    max_wait: float
    #: When the daemon wrote this: at the latest ``LOAD_REFRESH`` ago while it runs.
    updated: float

    def shown(self) -> tuple[float, int, int, int] | None:
        """What ``fetchd status`` says of it: nothing while the daemon keeps up, else since
        when it does not and the numbers, rounded as shown.

        The daemon writes a record only when this changes (or the last grows
        old), so that an idle daemon does not commit, fsync included, every minute.
        """
        if self.overloaded_since is None:
            return None
        rounded = round(self.achieved), round(self.configured), round(self.max_wait)
        return self.overloaded_since, *rounded


#: How old a load record that still says the same may grow before the daemon
#: writes it again: its ``updated`` tells a running daemon from one killed.
LOAD_REFRESH = 15 * 60.0


class PollsTable(Database):
    """``State``'s part that keeps the ``polls`` and ``daemon_load`` tables."""

    def record_poll(
        self, record: PollRecord, hooks: Callable[[int], Sequence[PollHook]] | None = None
    ) -> int:
        """Store a poll's outcome; returns the account's streak of failed polls (0 on success).

        ``hooks`` gives the poll's hooks for that streak (their facts tell it);
        they are queued in the same transaction, so a crash after the record
        leaves them queued for the next poll, never lost.

        A poll that found the account locked did nothing and failed at nothing:
        another fetchd process polls it and records that poll. It changes neither
        the last outcome ``fetchd status`` shows nor the streak; nothing is queued.
        """
        ok = record.outcome == "ok"
        if record.outcome == "locked":
            rows = self._query("SELECT failures FROM polls WHERE account = ?", (record.account,))
            return int(rows[0][0]) if rows else 0
        with self._transaction() as db:
            db.execute(_RECORD_POLL, (*_poll_values(record), record.finished if ok else None))
            (failures,) = db.execute(
                "SELECT failures FROM polls WHERE account = ?", (record.account,)
            ).fetchone()
            if hooks is not None:
                _queue_poll_hooks(db, record.account, hooks(int(failures)))
        return int(failures)

    def careful_since(self, account: str) -> float | None:
        """Since when ``account``'s server is polled carefully (sizes found loose); None: not."""
        rows = self._query("SELECT careful_since FROM polls WHERE account = ?", (account,))
        return rows[0][0] if rows else None

    def set_careful_since(self, account: str, since: float | None) -> None:
        """Remember (a time) or forget (None) that ``account``'s server needs a careful poll."""
        with self._transaction() as db:
            db.execute(_SET_CAREFUL_SINCE, (account, since))

    def set_next_poll(self, account: str, when: float | None) -> None:
        """When the daemon will poll ``account`` next; None once it stops scheduling it."""
        with self._transaction() as db:
            db.execute(_SET_NEXT_POLL, (account, when))

    def set_next_polls(self, when: dict[str, float | None]) -> None:
        """``set_next_poll`` for many accounts in one transaction (the daemon's start)."""
        with self._transaction() as db:
            db.executemany(_SET_NEXT_POLL, list(when.items()))

    def record_load(self, load: Load | None) -> None:
        """What the daemon says of its load; None once it stops (nothing is scheduled)."""
        with self._transaction() as db:
            db.execute("DELETE FROM daemon_load")
            if load is not None:
                db.execute(
                    "INSERT INTO daemon_load (id, overloaded_since, achieved, configured,"
                    " max_wait, updated) VALUES (1, ?, ?, ?, ?, ?)",
                    (
                        load.overloaded_since,
                        load.achieved,
                        load.configured,
                        load.max_wait,
                        load.updated,
                    ),
                )

    def load(self) -> Load | None:
        """The daemon's last word on its load, if a daemon runs and has said one."""
        rows = self._query(
            "SELECT overloaded_since, achieved, configured, max_wait, updated FROM daemon_load",
            (),
        )
        return Load(*rows[0]) if rows else None

    def clear_next_polls(self) -> None:
        """The daemon stops: no account has a scheduled poll any more."""
        with self._transaction() as db:
            db.execute("UPDATE polls SET next_poll = NULL")

    def poll_status(self) -> list[PollStatus]:
        """Every account's last poll, failure streak and next poll, sorted by account."""
        rows = self._query(
            "SELECT account, started, finished, outcome, error, new, stored, deleted, octets,"
            " last_success, failures, next_poll FROM polls ORDER BY account",
            (),
        )
        return [
            PollStatus(
                a,
                s,
                f,
                cast("Outcome | None", o),
                e,
                new or 0,
                st or 0,
                d or 0,
                oc or 0,
                ls,
                fails,
                nxt,
            )
            for a, s, f, o, e, new, st, d, oc, ls, fails, nxt in rows
        ]


# A failed poll keeps the previous last_success; a successful one resets the streak.
# Without a next_poll the one set before stays until set_next_poll replaces it.
_RECORD_POLL = """
INSERT INTO polls (account, started, finished, outcome, error, new, stored, deleted, octets,
                   next_poll, failures, last_success)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, CASE WHEN ? = 'ok' THEN 0 ELSE 1 END, ?)
ON CONFLICT (account) DO UPDATE SET
    started = excluded.started, finished = excluded.finished, outcome = excluded.outcome,
    error = excluded.error, new = excluded.new, stored = excluded.stored,
    deleted = excluded.deleted, octets = excluded.octets,
    next_poll = COALESCE(excluded.next_poll, polls.next_poll),
    failures = CASE WHEN excluded.outcome = 'ok' THEN 0 ELSE polls.failures + 1 END,
    last_success = COALESCE(excluded.last_success, polls.last_success)
"""


def _poll_values(r: PollRecord) -> tuple[object, ...]:
    return (
        r.account,
        r.started,
        r.finished,
        r.outcome,
        r.error,
        r.new,
        r.stored,
        r.deleted,
        r.octets,
        r.next_poll,
        r.outcome,
    )


def _set_column(column: str) -> str:
    """The statement that sets one column of an account's ``polls`` row, made if missing.

    ``column`` is one of the constant names below, never a value from outside.
    """
    return (
        f"INSERT INTO polls (account, {column}) VALUES (?, ?)"  # noqa: S608
        f" ON CONFLICT (account) DO UPDATE SET {column} = excluded.{column}"
    )


_SET_NEXT_POLL = _set_column("next_poll")
_SET_CAREFUL_SINCE = _set_column("careful_since")
