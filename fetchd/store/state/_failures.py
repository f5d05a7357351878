"""Messages that could not be fetched: how often, why last, and when to try again.

A ``message_failures`` row lives until its message is recorded (``State.record``
deletes it in the same transaction) or is gone from the server.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass

from fetchd.store.state._db import Database, _key, _uid

#: A message that keeps failing is retried at least this often.
MAX_RETRY_DELAY = 24 * 3600.0
_FIRST_BACKOFF = 15 * 60.0


def retry_delay(count: int) -> float:
    """Seconds to wait before fetching a message again after its ``count``-th failure.

    The first failure may be passing (a dropped connection), so the next poll
    retries it. A message that keeps failing is then tried ever more rarely
    (15 min, 30 min, 1 h, ...) so that it cannot cost every poll its time, yet
    at least once a day, in case the server or fetchd has changed since.
    """
    if count <= 1:
        return 0.0
    # 2**7 * 15 min is past the cap already; a bounded shift keeps the number small.
    return min(_FIRST_BACKOFF * (1 << min(count - 2, 7)), MAX_RETRY_DELAY)


@dataclass(frozen=True)
class Failure:
    """A message that could not be fetched: how often, why last, when to try again."""

    uid: str
    count: int
    error: str
    #: Epoch seconds; the poll leaves the message alone until then.
    next_attempt: float


class FailuresTable(Database):
    """``State``'s part that keeps the ``message_failures`` table."""

    def record_failure(self, account: str, uid: str, error: str) -> int:
        """One more failure of ``uid``; returns its count, and sets when to try again."""
        now = time.time()
        with self._transaction() as db:
            row = db.execute(
                "SELECT count FROM message_failures WHERE account = ? AND uid = ?",
                (account, _key(uid)),
            ).fetchone()
            count = (row[0] if row else 0) + 1
            db.execute(
                "INSERT OR REPLACE INTO message_failures (account, uid, count, error, next_attempt)"
                " VALUES (?, ?, ?, ?, ?)",
                (account, _key(uid), count, error, now + retry_delay(count)),
            )
        return int(count)

    def failing(self, account: str) -> dict[str, Failure]:
        """Every message of ``account`` that failed and was not fetched since."""
        rows = self._query(
            "SELECT uid, count, error, next_attempt FROM message_failures WHERE account = ?"
            " ORDER BY uid",
            (account,),
        )
        return {
            _uid(uid): Failure(_uid(uid), count, error, next_attempt)
            for uid, count, error, next_attempt in rows
        }

    def clear_failures(self, account: str, uids: Iterable[str]) -> None:
        """Forget the failures of ``uids`` (fetched, or gone from the server)."""
        with self._transaction() as db:
            _delete_failures(db, account, uids)


def _delete_failures(db: sqlite3.Connection, account: str, uids: Iterable[str]) -> None:
    db.executemany(
        "DELETE FROM message_failures WHERE account = ? AND uid = ?",
        [(account, _key(uid)) for uid in uids],
    )
