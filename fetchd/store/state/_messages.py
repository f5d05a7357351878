"""What was fetched: one ``messages`` row per message of each account, and its index.

A message's row is written (``record``) once it is durable, before the poll
may delete it on the server; recording it ends its failures and its
hand-off in the same transaction. What it holds (``index_many``) follows
once its attachments are extracted, for ``fetchd list``, with its hooks.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, Literal

from fetchd.errors import StorageError
from fetchd.store.state._db import Database, _failure_text, _key, _uid
from fetchd.store.state._failures import _delete_failures
from fetchd.store.state._hooks import PendingHook, _queue_hooks

#: What a recorded message is: stored whole, stored as headers only (too big),
#: or recorded as seen without a download (``fetchd fetch --mark-seen``).
Status = Literal["stored", "headers", "seen"]


@dataclass(frozen=True)
class Known:
    """What the state says about one UIDL."""

    status: Status
    on_server: bool
    fetched_at: float


@dataclass(frozen=True)
class Fetched:
    """A message now durable in the Maildir (or deliberately not fetched)."""

    uid: str
    status: Status
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


class MessagesTable(Database):
    """``State``'s part that keeps the ``messages`` table: what was fetched, what it holds."""

    def known(self, account: str) -> dict[str, Known]:
        """Every UIDL recorded for ``account``: one query, O(1) lookups after."""
        rows = self._query(
            "SELECT uid, status, on_server, fetched_at FROM messages WHERE account = ?", (account,)
        )
        return {
            _uid(uid): Known(status, bool(on_server), fetched)
            for uid, status, on_server, fetched in rows
        }

    def known_uids(self, account: str) -> tuple[set[str], set[str]]:
        """Every UIDL recorded for ``account``, and those of them still on the server."""
        on_server = set(chain.from_iterable(self.recorded_ids(account, on_server=True)))
        gone = set(chain.from_iterable(self.recorded_ids(account, on_server=False)))
        return on_server | gone, on_server

    def recorded_ids(self, account: str, *, on_server: bool) -> Iterator[list[str]]:
        """The ids of ``account``'s rows still expected on the server (or gone from
        it), in lists of about ``ID_CHUNK`` octets.

        What a poll compares its listing with. SQLite joins the ids into one
        string, which costs a fraction of fetching them as rows, and the lists
        are split off it as they are asked for: at a million messages, neither
        a row nor a str per id is ever held at once.
        """
        where = (
            "FROM messages WHERE account = ? AND on_server"
            if on_server
            else "FROM messages INDEXED BY messages_gone WHERE account = ? AND NOT on_server"
        )
        joined_ids = f"SELECT count(*), CAST(group_concat(uid, x'0a') AS BLOB) {where}"
        try:
            ((count, joined),) = self._db.execute(joined_ids, (account,)).fetchall()
        except sqlite3.DataError:  # longer than SQLite's longest string: row by row below
            count, joined = None, None
        except sqlite3.Error as exc:
            raise StorageError(_failure_text(self.path, exc)) from exc
        if count == 0:
            return iter(())
        if joined is not None and joined.count(b"\n") == count - 1:  # no id holds an LF
            # Decoded whole as each id alone: no UTF-8 sequence spans an LF.
            return _split_ids(joined.decode("utf-8", "surrogateescape"), self._id_chunk())
        return iter([[_uid(key) for (key,) in self._query(f"SELECT uid {where}", (account,))]])

    def record(self, account: str, fetched: Sequence[Fetched]) -> None:
        """Commit a batch durably; only after this may the batch be deleted on the server.

        A message recorded here is done with: its failure row, if any, goes too.
        """
        now = time.time()
        with self._transaction() as db:
            db.executemany(
                _RECORD, [(account, _key(f.uid), f.status, now, f.size, f.path) for f in fetched]
            )
            _delete_failures(db, account, (f.uid for f in fetched))
            db.executemany(
                "DELETE FROM handoffs WHERE account = ? AND uid = ?",
                [(account, _key(f.uid)) for f in fetched],
            )

    def mark_gone(self, account: str, uids: Sequence[str]) -> None:
        """These messages are no longer on the server (our QUIT succeeded, or someone else's)."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE messages SET on_server = 0 WHERE account = ? AND uid = ?",
                [(account, _key(uid)) for uid in uids],
            )

    def index_many(
        self, account: str, rows: Sequence[Indexed], hooks: Sequence[PendingHook] = ()
    ) -> None:
        """Record what stored messages hold, for ``fetchd list``, and queue their hooks.

        One transaction: a message is indexed with its hooks pending, or neither
        (and indexed again on the next poll), so no hook is lost or queued twice.
        """
        with self._transaction() as db:
            _queue_hooks(db, account, hooks)
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
                        _key(r.uid),
                    )
                    for r in rows
                ],
            )

    def unindexed(self, account: str) -> list[tuple[str, str]]:
        """(uid, path) of stored messages whose attachments were not extracted yet."""
        rows = self._query(
            # Named: without statistics the planner prefers the primary key,
            # and reads every message of the account to find the few.
            "SELECT uid, path FROM messages INDEXED BY messages_unindexed"
            " WHERE account = ? AND status = 'stored' AND extracted = 0 AND path IS NOT NULL",
            (account,),
        )
        return [(_uid(uid), path) for uid, path in rows]

    def listing(self, account: str | None = None) -> list[Indexed]:
        sql = _LISTING
        args: tuple[str, ...] = ()
        if account is not None:
            sql += " AND account = ?"
            args = (account,)
        return [_indexed(row) for row in self._query(sql + " ORDER BY date, fetched_at", args)]

    def _id_chunk(self) -> int:
        """About how many octets of ids ``recorded_ids`` splits off at a time.

        ``State`` answers with ``fetchd.store.state.ID_CHUNK``.
        """
        raise NotImplementedError


# A message recorded again starts afresh, as if its row were new; an upsert and not
# INSERT OR REPLACE, whose implicit delete would bypass the counting triggers.
_RECORD = """
INSERT INTO messages (account, uid, status, fetched_at, size, path) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (account, uid) DO UPDATE SET
    status = excluded.status, fetched_at = excluded.fetched_at, size = excluded.size,
    path = excluded.path, on_server = 1, extracted = 0, date = NULL, sender = NULL,
    sender_address = NULL, subject = NULL, message_id = NULL, folder = NULL, attachments = NULL
"""


_LISTING = (
    "SELECT account, uid, path, date, sender, sender_address, subject, message_id, folder,"
    " attachments, fetched_at, size FROM messages WHERE status IN ('stored', 'headers')"
)


def _indexed(row: Any) -> Indexed:
    account, uid, path, date, sender, address, subject, message_id, folder, files, at, size = row
    attachments = tuple(json.loads(files)) if files else ()
    return Indexed(
        account,
        _uid(uid),
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


def _split_ids(joined: str, chunk: int) -> Iterator[list[str]]:
    """The LF-separated ids of ``joined`` in lists of about ``chunk`` octets."""
    start = 0
    while (end := joined.find("\n", start + chunk)) >= 0:
        yield joined[start:end].split("\n")
        start = end + 1
    yield joined[start:].split("\n")
