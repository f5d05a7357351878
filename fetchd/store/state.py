"""fetchd's state: which messages each account has fetched, and what they hold.

One SQLite database (WAL mode, ``synchronous=FULL``) for all accounts, so a
commit is on disk before the poll sends any DELE. The schema is versioned
with ``PRAGMA user_version`` and migrated forward on open. Every
``sqlite3.Error`` is mapped to ``StorageError`` here.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from fetchd.errors import StorageError

#: The database's file name inside the data directory.
STATE_FILE = "state.sqlite3"

_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE messages (
        account TEXT NOT NULL,
        uid TEXT NOT NULL,              -- UIDL, or a header digest on servers without it
        status TEXT NOT NULL,           -- stored | headers | seen | skipped
        on_server INTEGER NOT NULL DEFAULT 1,
        fetched_at REAL NOT NULL,
        size INTEGER NOT NULL DEFAULT 0,
        path TEXT,                      -- the .eml, relative to the data dir
        extracted INTEGER NOT NULL DEFAULT 0,
        date TEXT, sender TEXT, sender_address TEXT, subject TEXT, message_id TEXT,
        folder TEXT,                    -- attachment folder, relative to the data dir
        attachments TEXT,               -- JSON list of paths relative to the data dir
        PRIMARY KEY (account, uid)
    ) WITHOUT ROWID;
    CREATE TABLE polls (
        account TEXT PRIMARY KEY,
        started REAL, finished REAL, outcome TEXT, error TEXT,
        new INTEGER, stored INTEGER, deleted INTEGER, octets INTEGER,
        last_success REAL, failures INTEGER NOT NULL DEFAULT 0,
        next_poll REAL
    );
    """,
)


@dataclass(frozen=True)
class Known:
    """What the state says about one UIDL."""

    status: str
    on_server: bool
    fetched_at: float


@dataclass(frozen=True)
class Fetched:
    """A message now durable in the Maildir (or deliberately not fetched)."""

    uid: str
    status: str
    size: int = 0
    path: str | None = None


@dataclass(frozen=True)
class Indexed:
    """What a stored message holds: one row of ``fetchd list``."""

    account: str
    uid: str
    path: str | None
    date: str | None
    sender: str | None
    sender_address: str | None
    subject: str | None
    message_id: str | None
    folder: str | None
    attachments: tuple[str, ...]
    fetched_at: float = 0.0
    size: int = 0


@dataclass(frozen=True)
class PollRecord:
    """One finished poll, as the daemon records it for ``fetchd status``."""

    account: str
    started: float
    finished: float
    #: "ok", or what kind of failure: "auth", "busy", "network", "storage" ...
    outcome: str
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
    outcome: str | None
    error: str | None
    new: int
    stored: int
    deleted: int
    octets: int
    last_success: float | None
    failures: int
    next_poll: float | None


@dataclass(frozen=True)
class FetchedCount:
    """Messages stored for one account: in all, and since a moment (say, midnight)."""

    total: int
    since: int


class State:
    """The state database; one connection per thread of work."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"cannot open the state database {path}: {exc}") from exc

    def _migrate(self) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
            with self._transaction():
                for statement in filter(str.strip, script.split(";")):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={number}")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StorageError(f"the state database {self.path} failed: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    # -- what was fetched ------------------------------------------------------

    def known(self, account: str) -> dict[str, Known]:
        """Every UIDL recorded for ``account``: one query, O(1) lookups after."""
        rows = self._query(
            "SELECT uid, status, on_server, fetched_at FROM messages WHERE account = ?", (account,)
        )
        return {
            uid: Known(status, bool(on_server), fetched) for uid, status, on_server, fetched in rows
        }

    def record(self, account: str, fetched: Sequence[Fetched]) -> None:
        """Commit a batch durably; only after this may the batch be deleted on the server."""
        now = time.time()
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO messages (account, uid, status, fetched_at, size, path)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(account, f.uid, f.status, now, f.size, f.path) for f in fetched],
            )

    def mark_gone(self, account: str, uids: Sequence[str]) -> None:
        """These messages are no longer on the server (our QUIT succeeded, or someone else's)."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE messages SET on_server = 0 WHERE account = ? AND uid = ?",
                [(account, uid) for uid in uids],
            )

    def index_many(self, account: str, rows: Sequence[Indexed]) -> None:
        """Record what stored messages hold, for ``fetchd list``; one transaction."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE messages SET extracted = 1, date = ?, sender = ?, sender_address = ?,"
                " subject = ?, message_id = ?, folder = ?, attachments = ?"
                " WHERE account = ? AND uid = ?",
                [
                    (
                        r.date,
                        r.sender,
                        r.sender_address,
                        r.subject,
                        r.message_id,
                        r.folder,
                        json.dumps(list(r.attachments)),
                        account,
                        r.uid,
                    )
                    for r in rows
                ],
            )

    def unindexed(self, account: str) -> list[tuple[str, str]]:
        """(uid, path) of stored messages whose attachments were not extracted yet."""
        rows = self._query(
            "SELECT uid, path FROM messages WHERE account = ? AND status = 'stored'"
            " AND extracted = 0 AND path IS NOT NULL",
            (account,),
        )
        return [(uid, path) for uid, path in rows]

    def listing(self, account: str | None = None) -> list[Indexed]:
        sql = _LISTING
        args: tuple[str, ...] = ()
        if account is not None:
            sql += " AND account = ?"
            args = (account,)
        return [_indexed(row) for row in self._query(sql + " ORDER BY date, fetched_at", args)]

    # -- poll bookkeeping (the daemon writes, ``fetchd status`` reads) ----------

    @classmethod
    def open_readonly(cls, path: Path) -> State:
        """Open an existing database for reading only; never creates or migrates it.

        ``fetchd status`` may run as another user (root, beside a service with
        its own user): a read-only connection cannot leave a database, or a
        schema change, behind that the daemon's user cannot write.
        """
        if not path.is_file():
            raise StorageError(f"no state database at {path} yet: nothing has been polled")
        state = cls.__new__(cls)
        state.path = path
        try:
            state._db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=30)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the state database {path}: {exc}") from exc
        return state

    def record_poll(self, record: PollRecord) -> int:
        """Store a poll's outcome; returns the account's streak of failed polls (0 on success)."""
        ok = record.outcome == "ok"
        with self._transaction() as db:
            db.execute(_RECORD_POLL, (*_poll_values(record), record.finished if ok else None))
            (failures,) = db.execute(
                "SELECT failures FROM polls WHERE account = ?", (record.account,)
            ).fetchone()
        return int(failures)

    def set_next_poll(self, account: str, when: float | None) -> None:
        """When the daemon will poll ``account`` next; None once it stops scheduling it."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO polls (account, next_poll) VALUES (?, ?)"
                " ON CONFLICT (account) DO UPDATE SET next_poll = excluded.next_poll",
                (account, when),
            )

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
            PollStatus(a, s, f, o, e, new or 0, st or 0, d or 0, oc or 0, ls, fails, nxt)
            for a, s, f, o, e, new, st, d, oc, ls, fails, nxt in rows
        ]

    def fetched_counts(self, since: float | None = None) -> dict[str, FetchedCount]:
        """Per account: messages stored (whole or headers only) in all and since ``since``.

        ``since`` defaults to the start of today, local time ("fetched today").
        """
        if since is None:
            midnight = (
                datetime.now().astimezone().replace(hour=0, minute=0, second=0, microsecond=0)
            )
            since = midnight.timestamp()
        rows = self._query(
            "SELECT account, COUNT(*), COALESCE(SUM(fetched_at >= ?), 0) FROM messages"
            " WHERE status IN ('stored', 'headers') GROUP BY account",
            (since,),
        )
        return {account: FetchedCount(total, recent) for account, total, recent in rows}

    def _query(self, sql: str, args: tuple[object, ...]) -> list[Any]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"the state database {self.path} failed: {exc}") from exc


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


_LISTING = (
    "SELECT account, uid, path, date, sender, sender_address, subject, message_id, folder,"
    " attachments, fetched_at, size FROM messages WHERE status IN ('stored', 'headers')"
)


def _indexed(row: Any) -> Indexed:
    account, uid, path, date, sender, address, subject, message_id, folder, files, at, size = row
    attachments = tuple(json.loads(files)) if files else ()
    return Indexed(
        account,
        uid,
        path,
        date,
        sender,
        address,
        subject,
        message_id,
        folder,
        attachments,
        at,
        size,
    )
