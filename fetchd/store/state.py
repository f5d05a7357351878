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
from pathlib import Path
from typing import Any

from fetchd.errors import StorageError

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

    def _query(self, sql: str, args: tuple[object, ...]) -> list[Any]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"the state database {self.path} failed: {exc}") from exc


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
