"""fetchd's state: which messages each account has fetched, and what they hold.

One SQLite database (WAL mode, ``synchronous=FULL``) for all accounts, so a
commit is on disk before the poll sends any DELE. The schema is versioned
with ``PRAGMA user_version`` and migrated forward on open, under the write
lock so that processes opening a fresh database at once do not race. Every
``sqlite3.Error`` is mapped to ``StorageError`` here.

UIDs are ``str`` in Python (decoded from the wire with ``surrogateescape``)
and BLOB in SQLite (encoded back the same way): two UIDs that differ in one
invalid byte stay two rows, and every UID round-trips exactly.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from pathlib import Path
from typing import Any, Literal, cast

from fetchd.access import PRIVATE, SECRET_FILE
from fetchd.errors import FailureKind, StorageError

#: The database's file name inside the data directory.
STATE_FILE = "state.sqlite3"
#: Seconds a connection waits for another process's lock before failing.
BUSY_TIMEOUT = 30.0

#: What a recorded message is: stored whole, stored as headers only (too big),
#: or recorded as seen without a download (``fetchd fetch --mark-seen``).
Status = Literal["stored", "headers", "seen"]
#: A poll's outcome: "ok", a ``FetchdError.kind``, or "bug".
Outcome = Literal["ok", "bug"] | FailureKind

#: A message that keeps failing is retried at least this often.
MAX_RETRY_DELAY = 24 * 3600.0
_FIRST_BACKOFF = 15 * 60.0


def state_path(data_dir: Path) -> Path:
    """Where the state database of ``data_dir`` lives: the one place that names it."""
    return data_dir / STATE_FILE


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


_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE messages (
        account TEXT NOT NULL,
        uid TEXT NOT NULL,              -- UIDL, or a header digest on servers without it
        status TEXT NOT NULL,           -- stored | headers | seen
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
    # UIDs become BLOB (see the module docstring). For the valid UTF-8 that
    # version 1 could hold, CAST gives exactly the bytes the new encoding gives.
    """
    CREATE TABLE messages_v2 (
        account TEXT NOT NULL,
        uid BLOB NOT NULL,              -- the UIDL's bytes, or a header digest
        status TEXT NOT NULL,           -- stored | headers | seen
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
    INSERT INTO messages_v2 SELECT account, CAST(uid AS BLOB), status, on_server, fetched_at,
        size, path, extracted, date, sender, sender_address, subject, message_id, folder,
        attachments FROM messages;
    DROP TABLE messages;
    ALTER TABLE messages_v2 RENAME TO messages;
    CREATE TABLE message_failures (
        account TEXT NOT NULL,
        uid BLOB NOT NULL,
        count INTEGER NOT NULL,
        error TEXT NOT NULL,            -- the last failure
        next_attempt REAL NOT NULL,     -- epoch seconds, see retry_delay
        PRIMARY KEY (account, uid)
    ) WITHOUT ROWID;
    CREATE INDEX messages_fetched_at ON messages (fetched_at);
    """,
    # Hooks still to run (``fetchd.hooks``): queued with the message's index
    # row, deleted once run. ``starts`` bounds the runs a crash may repeat.
    """
    CREATE TABLE pending_hooks (
        account TEXT NOT NULL,
        uid BLOB NOT NULL,
        hook TEXT NOT NULL,             -- on_message | on_attachment
        target TEXT NOT NULL,           -- the .eml or attachment, relative to the data dir
        queued REAL NOT NULL,
        starts INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (account, uid, hook, target)
    ) WITHOUT ROWID;
    """,
    # What ``fetchd status`` and the daemon's status line count, kept per account
    # by triggers in the transaction that changes ``messages``: a poll's cost no
    # longer grows with the history of every account. Initialised once here.
    """
    CREATE TABLE fetched_counts (
        account TEXT PRIMARY KEY,
        total INTEGER NOT NULL,         -- messages stored whole or as headers, ever
        day TEXT NOT NULL,              -- the local date that ``today`` counts
        today INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO fetched_counts (account, total, day, today)
        SELECT account, COUNT(*), date('now', 'localtime'),
            SUM(date(fetched_at, 'unixepoch', 'localtime') = date('now', 'localtime'))
        FROM messages WHERE status IN ('stored', 'headers') GROUP BY account;
    CREATE TRIGGER messages_counted AFTER INSERT ON messages
    WHEN new.status IN ('stored', 'headers') BEGIN
        INSERT INTO fetched_counts (account, total, day, today)
        VALUES (new.account, 1, date(new.fetched_at, 'unixepoch', 'localtime'), 1)
        ON CONFLICT (account) DO UPDATE SET
            total = total + 1,
            today = CASE WHEN excluded.day = day THEN today + 1
                         WHEN excluded.day > day THEN 1 ELSE today END,
            day = max(day, excluded.day);
    END;
    CREATE TRIGGER messages_uncounted AFTER DELETE ON messages
    WHEN old.status IN ('stored', 'headers') BEGIN
        UPDATE fetched_counts SET total = total - 1,
            today = today - (day = date(old.fetched_at, 'unixepoch', 'localtime'))
        WHERE account = old.account;
    END;
    CREATE TRIGGER messages_recounted_old AFTER UPDATE OF account, status, fetched_at
    ON messages WHEN old.status IN ('stored', 'headers') BEGIN
        UPDATE fetched_counts SET total = total - 1,
            today = today - (day = date(old.fetched_at, 'unixepoch', 'localtime'))
        WHERE account = old.account;
    END;
    CREATE TRIGGER messages_recounted_new AFTER UPDATE OF account, status, fetched_at
    ON messages WHEN new.status IN ('stored', 'headers') BEGIN
        INSERT INTO fetched_counts (account, total, day, today)
        VALUES (new.account, 1, date(new.fetched_at, 'unixepoch', 'localtime'), 1)
        ON CONFLICT (account) DO UPDATE SET
            total = total + 1,
            today = CASE WHEN excluded.day = day THEN today + 1
                         WHEN excluded.day > day THEN 1 ELSE today END,
            day = max(day, excluded.day);
    END;
    -- Every poll asks for its account's stored messages not yet indexed: only those.
    CREATE INDEX messages_unindexed ON messages (account)
        WHERE status = 'stored' AND extracted = 0 AND path IS NOT NULL;
    CREATE TABLE daemon_load (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        overloaded_since REAL,          -- NULL: the daemon keeps up with the schedule
        achieved REAL,                  -- polls per minute started, the last minute
        configured REAL,                -- polls per minute the schedule asks for
        max_wait REAL,                  -- seconds the longest-waiting due poll waited
        updated REAL NOT NULL
    );
    """,
    # The hand-off journal of mda and lmtp accounts (see fetchd.store.handoff).
    """
    CREATE TABLE handoffs (
        account TEXT NOT NULL,
        uid BLOB NOT NULL,
        started REAL NOT NULL,          -- epoch seconds of the last hand-off begun
        open INTEGER NOT NULL,          -- 1 from its start until its outcome is known
        done TEXT NOT NULL DEFAULT '[]',-- JSON list of the recipients that confirmed
        PRIMARY KEY (account, uid)
    ) WITHOUT ROWID;
    """,
    # Every poll asks for its account's messages gone from the server: only those.
    """
    CREATE INDEX messages_gone ON messages (account) WHERE NOT on_server;
    """,
    # A poll's hooks (on_error, on_poll) are queued with the poll's record: after a
    # crash the failure they report is gone, so what they are told is kept here.
    """
    ALTER TABLE pending_hooks ADD COLUMN facts TEXT;  -- JSON object; NULL: a message's hook
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)


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
class Handoff:
    """A message being handed to an mda or LMTP server that is not recorded yet.

    The row is written before the hand-off begins and goes with the message's
    ``record``; one still there at the next poll means fetchd stopped while
    the destination had the message, which may have delivered it.
    """

    uid: str
    started: float
    #: The last hand-off's outcome is unknown: fetchd stopped, or the destination
    #: timed out, while it had the message.
    open: bool
    #: Recipients that confirmed delivery already (LMTP answers per recipient).
    done: tuple[str, ...] = ()


@dataclass(frozen=True)
class Failure:
    """A message that could not be fetched: how often, why last, when to try again."""

    uid: str
    count: int
    error: str
    #: Epoch seconds; the poll leaves the message alone until then.
    next_attempt: float


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


#: The hooks of one poll, queued with its record (``State.record_poll``).
PollHookName = Literal["on_error", "on_poll"]
#: The hooks fetchd records as pending until they ran: one per message or
#: attachment, and those of a poll.
HookName = Literal["on_message", "on_attachment"] | PollHookName
#: The hooks of a poll, in the order they run (``on_error`` first).
POLL_HOOKS: tuple[PollHookName, ...] = ("on_error", "on_poll")


@dataclass(frozen=True)
class PendingHook:
    """A hook to run once: for one stored message, one of its attachments, or one poll.

    A poll's hook has no message: its ``uid`` is empty and its ``target`` the
    poll's number among its account's queued polls.
    """

    uid: str
    hook: HookName
    #: The .eml (on_message) or the attachment file, as the index records paths.
    target: str


@dataclass(frozen=True)
class PollHook:
    """A hook of one poll to queue with its record, and the facts it is to be told.

    The facts are kept because the poll's failure is gone after a crash;
    they are what the hook's environment says of the poll, never a secret.
    """

    hook: PollHookName
    facts: Mapping[str, str]


@dataclass(frozen=True)
class HookJob:
    """A pending hook with what the index knows of its message (None: not indexed)."""

    pending: PendingHook
    #: How often it was started before; only a crash leaves a started hook pending.
    starts: int
    path: str | None
    folder: str | None
    sender: str | None
    sender_address: str | None
    subject: str | None
    message_id: str | None
    #: What a poll's hook is told, as queued (None for a message's hook).
    facts: Mapping[str, str] | None = None


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
class FetchedCount:
    """Messages stored for one account: in all, and on one day (by default today)."""

    total: int
    today: int


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


class State:
    """The state database; one connection per thread of work.

    ``State(path)`` opens it for fetching: created on first use and migrated
    to the current schema. ``State.open_readonly(path)`` opens an existing
    one for reporting only.
    """

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        if read_only:
            self._db = self._connect_read_only()
        else:
            self._db = self._connect_for_writing()

    def _connect_for_writing(self) -> sqlite3.Connection:
        path = self.path
        try:
            PRIVATE.make_missing(path.parent)
        except StorageError as exc:
            raise StorageError(f"{exc} (for the state database)") from exc
        db = None
        try:
            _keep_private(path)
            db = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None)
            _use_wal(db)
            _keep_private(path, *_companions(path))
            db.execute("PRAGMA synchronous=FULL")
            self._db = db
            self._migrate()
        except (sqlite3.Error, OSError, StorageError) as exc:
            if db is not None:
                db.close()
            raise StorageError(_open_failure(path, exc)) from exc
        return db

    def _connect_read_only(self) -> sqlite3.Connection:
        path = self.path
        if not path.is_file():
            raise StorageError(f"no state database at {path} yet: nothing has been polled")
        try:
            uri = f"{path.absolute().as_uri()}?mode=ro"
            db = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT, isolation_level=None)
        except sqlite3.Error as exc:
            raise StorageError(_open_failure(path, exc)) from exc
        try:
            (version,) = db.execute("PRAGMA user_version").fetchone()
        except sqlite3.Error as exc:
            db.close()
            raise StorageError(_open_failure(path, exc)) from exc
        if version != SCHEMA_VERSION:
            db.close()
            raise StorageError(_version_problem(path, version))
        return db

    def _migrate(self) -> None:
        """Bring the schema to ``SCHEMA_VERSION``, all steps in one transaction.

        The version only ever grows, so a current one needs no lock. Otherwise
        the write lock comes first and the version is read again under it:
        read before the lock, two processes creating a fresh database would
        both run the first step, and the second would fail.
        """
        if self._version() == SCHEMA_VERSION:
            return
        with self._transaction() as db:
            version = self._version()
            if version > SCHEMA_VERSION:
                raise StorageError(_version_problem(self.path, version))
            for script in _MIGRATIONS[version:]:
                for statement in _statements(script):
                    db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _version(self) -> int:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        return int(version)

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
            raise StorageError(_failure_text(self.path, exc)) from exc

    def close(self) -> None:
        self._db.close()

    # -- what was fetched ------------------------------------------------------

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
            return _split_ids(joined.decode("utf-8", "surrogateescape"))
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

    # -- the hand-off journal (mda and lmtp accounts) ---------------------------

    def begin_handoffs(self, account: str, uids: Sequence[str]) -> None:
        """Note, durably, that these messages go to their destination now.

        Recipients that confirmed an earlier attempt are kept.
        """
        now = time.time()
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO handoffs (account, uid, started, open) VALUES (?, ?, ?, 1)"
                " ON CONFLICT (account, uid) DO UPDATE SET started = excluded.started, open = 1",
                [(account, _key(uid), now) for uid in uids],
            )

    def handoffs(self, account: str) -> dict[str, Handoff]:
        """The journal's rows of ``account``: hand-offs begun and not recorded."""
        rows = self._query(
            "SELECT uid, started, open, done FROM handoffs WHERE account = ?", (account,)
        )
        return {
            _uid(uid): Handoff(_uid(uid), started, bool(is_open), tuple(json.loads(done)))
            for uid, started, is_open, done in rows
        }

    def end_handoff(self, account: str, uid: str, done: Sequence[str], *, sure: bool) -> None:
        """A hand-off that did not deliver to every recipient ended.

        ``done`` are the recipients that confirmed; they are not sent the
        message again. Unless some did, or the outcome is unknown (``sure``
        false: a timeout), the row goes: nothing can have been delivered.
        """
        with self._transaction() as db:
            if done or not sure:
                db.execute(
                    "UPDATE handoffs SET done = ?, open = ? WHERE account = ? AND uid = ?",
                    (json.dumps(list(done)), int(not sure), account, _key(uid)),
                )
            else:
                db.execute(
                    "DELETE FROM handoffs WHERE account = ? AND uid = ?", (account, _key(uid))
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

    # -- messages that fail ----------------------------------------------------

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

    # -- hooks still to run (``fetchd.hooks``) ----------------------------------

    def pending_hooks(self, account: str) -> list[HookJob]:
        """The hooks of ``account`` not run yet: its messages' in the order they were
        indexed, then its polls' in the order they were recorded (``on_error`` first)."""
        return [_hook_job(row) for row in self._query(_PENDING_HOOKS, (account,))]

    def start_hooks(self, account: str, hooks: Sequence[PendingHook], step: int = 1) -> None:
        """Count a start of each of ``hooks`` before they run (``step=-1``: take it back)."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE pending_hooks SET starts = starts + ?"
                " WHERE account = ? AND uid = ? AND hook = ? AND target = ?",
                [(step, account, _key(h.uid), h.hook, h.target) for h in hooks],
            )

    def hooks_done(self, account: str, hooks: Sequence[PendingHook]) -> None:
        """These hooks ran (whatever their exit status): they never run again."""
        with self._transaction() as db:
            db.executemany(
                "DELETE FROM pending_hooks WHERE account = ? AND uid = ? AND hook = ?"
                " AND target = ?",
                [(account, _key(h.uid), h.hook, h.target) for h in hooks],
            )

    # -- poll bookkeeping (the daemon writes, ``fetchd status`` reads) ----------

    @classmethod
    def in_memory(cls) -> State:
        """An empty database that lives in memory only: it reads as "nothing fetched yet".

        ``fetch --dry-run`` before any fetch reads this instead of creating the
        real database; nothing is written anywhere on disk.
        """
        state = cls.__new__(cls)
        state.path = Path(":memory:")
        state.read_only = False
        state._db = sqlite3.connect(":memory:", isolation_level=None)
        state._migrate()
        return state

    @classmethod
    def open_readonly(cls, path: Path) -> State:
        """Open an existing database for reading only; never creates or migrates it.

        ``fetchd status`` may run as another user (root, beside a service with
        its own user): a read-only connection cannot leave a database, or a
        schema change, behind that the daemon's user cannot write.
        """
        return cls(path, read_only=True)

    def record_poll(
        self, record: PollRecord, hooks: Callable[[int], Sequence[PollHook]] | None = None
    ) -> int:
        """Store a poll's outcome; returns the account's streak of failed polls (0 on success).

        ``hooks`` gives the poll's hooks for that streak (their facts tell it);
        they are queued in the same transaction, so a crash after the record
        leaves them queued for the next poll, never lost.
        """
        ok = record.outcome == "ok"
        with self._transaction() as db:
            db.execute(_RECORD_POLL, (*_poll_values(record), record.finished if ok else None))
            (failures,) = db.execute(
                "SELECT failures FROM polls WHERE account = ?", (record.account,)
            ).fetchone()
            if hooks is not None:
                _queue_poll_hooks(db, record.account, hooks(int(failures)))
        return int(failures)

    def set_next_poll(self, account: str, when: float | None) -> None:
        """When the daemon will poll ``account`` next; None once it stops scheduling it."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO polls (account, next_poll) VALUES (?, ?)"
                " ON CONFLICT (account) DO UPDATE SET next_poll = excluded.next_poll",
                (account, when),
            )

    def set_next_polls(self, when: dict[str, float | None]) -> None:
        """``set_next_poll`` for many accounts in one transaction (the daemon's start)."""
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO polls (account, next_poll) VALUES (?, ?)"
                " ON CONFLICT (account) DO UPDATE SET next_poll = excluded.next_poll",
                list(when.items()),
            )

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

    def _query(self, sql: str, args: tuple[object, ...]) -> list[Any]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(_failure_text(self.path, exc)) from exc


# A message recorded again starts afresh, as if its row were new; an upsert and not
# INSERT OR REPLACE, whose implicit delete would bypass the counting triggers.
_RECORD = """
INSERT INTO messages (account, uid, status, fetched_at, size, path) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (account, uid) DO UPDATE SET
    status = excluded.status, fetched_at = excluded.fetched_at, size = excluded.size,
    path = excluded.path, on_server = 1, extracted = 0, date = NULL, sender = NULL,
    sender_address = NULL, subject = NULL, message_id = NULL, folder = NULL, attachments = NULL
"""

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


# A poll's hooks come after every message's, by the poll's number (the order they were
# queued in, whatever the clock did), one poll's on_error before its on_poll. For the
# messages' hooks the added terms change nothing: their order is as before.
_PENDING_HOOKS = (
    "SELECT h.uid, h.hook, h.target, h.starts, m.path, m.folder, m.sender, m.sender_address,"
    " m.subject, m.message_id, h.facts FROM pending_hooks AS h"
    " LEFT JOIN messages AS m ON m.account = h.account AND m.uid = h.uid"
    " WHERE h.account = ? ORDER BY h.hook IN ('on_error', 'on_poll'),"
    " CASE WHEN h.hook IN ('on_error', 'on_poll') THEN CAST(h.target AS INTEGER)"
    " ELSE h.queued END, h.uid, h.hook = 'on_poll', h.hook DESC, h.target"
)

# One past the highest number of the account's queued polls: never a number still queued.
_NEXT_POLL_NUMBER = (
    "SELECT COALESCE(MAX(CAST(target AS INTEGER)), 0) + 1 FROM pending_hooks"
    " WHERE account = ? AND hook IN ('on_error', 'on_poll')"
)


def _queue_poll_hooks(db: sqlite3.Connection, account: str, hooks: Sequence[PollHook]) -> None:
    """Queue one poll's hooks under a number no queued poll of ``account`` has.

    The number is the row's target: two polls' hooks never share a key, even
    when one is still queued after a crash. Once every one ran, numbers start
    over, which names no hook twice: a done hook's row is gone.
    """
    if not hooks:
        return
    (number,) = db.execute(_NEXT_POLL_NUMBER, (account,)).fetchone()
    now = time.time()
    db.executemany(
        "INSERT INTO pending_hooks (account, uid, hook, target, queued, facts)"
        " VALUES (?, x'', ?, ?, ?, ?)",
        [(account, h.hook, str(number), now, json.dumps(dict(h.facts))) for h in hooks],
    )


def _hook_job(row: Any) -> HookJob:
    uid, hook, target, starts, path, folder, sender, address, subject, message_id, facts = row
    pending = PendingHook(_uid(uid), hook, target)
    return HookJob(
        pending, starts, path, folder, sender, address, subject, message_id, _facts(facts)
    )


def _facts(stored: str | None) -> dict[str, str] | None:
    """A poll's hook's facts as queued (None: a message's hook, whose facts are the index's)."""
    if stored is None:
        return None
    return {str(name): str(value) for name, value in json.loads(stored).items()}


def _queue_hooks(db: sqlite3.Connection, account: str, hooks: Sequence[PendingHook]) -> None:
    """Queue ``hooks``; one queued before (a message indexed again) is not queued twice."""
    now = time.time()
    db.executemany(
        "INSERT OR IGNORE INTO pending_hooks (account, uid, hook, target, queued)"
        " VALUES (?, ?, ?, ?, ?)",
        [(account, _key(h.uid), h.hook, h.target, now) for h in hooks],
    )


def _key(uid: str) -> bytes:
    """A UID as SQLite stores it (BLOB): its wire bytes, whatever they are."""
    return uid.encode("utf-8", "surrogateescape")


#: About how many octets of ids ``State.recorded_ids`` splits off at a time.
ID_CHUNK = 1 << 20


def _split_ids(joined: str) -> Iterator[list[str]]:
    """The LF-separated ids of ``joined`` in lists of about ``ID_CHUNK`` octets."""
    start = 0
    while (end := joined.find("\n", start + ID_CHUNK)) >= 0:
        yield joined[start:end].split("\n")
        start = end + 1
    yield joined[start:].split("\n")


def _uid(key: bytes) -> str:
    """The UID a stored key stands for, exactly as ``read_listing`` decodes it."""
    return bytes(key).decode("utf-8", "surrogateescape")


def _delete_failures(db: sqlite3.Connection, account: str, uids: Iterable[str]) -> None:
    db.executemany(
        "DELETE FROM message_failures WHERE account = ? AND uid = ?",
        [(account, _key(uid)) for uid in uids],
    )


def _keep_private(path: Path, *companions: Path) -> None:
    """The database files are the service's alone (0600), whoever may read the mail.

    The database is made before SQLite opens it, so it never exists with the
    umask's mode, and SQLite gives its -wal and -shm files the database's
    mode. Files from before are set again. The companions are set by name,
    never opened: closing any descriptor of a file drops the process's POSIX
    locks on it, SQLite's included.
    """
    if not companions:
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        fd = os.open(path, flags, SECRET_FILE)  # before SQLite holds any lock on it
        try:
            os.fchmod(fd, SECRET_FILE)
        finally:
            os.close(fd)
    for companion in companions:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(companion, SECRET_FILE)


def _companions(path: Path) -> list[Path]:
    """The -wal and -shm files SQLite keeps beside the database in WAL mode."""
    return [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]


def _use_wal(db: sqlite3.Connection) -> None:
    """Switch to WAL (a setting kept in the file, so this is a no-op once done).

    While another process switches a fresh database, SQLite answers "locked"
    at once instead of calling the busy handler: wait and ask again, for as
    long as the busy timeout would have waited.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _open_failure(path: Path, exc: BaseException) -> str:
    """Why the database at ``path`` cannot be opened, in words that say what to fix.

    SQLite says only "unable to open database file" when the directory is
    read-only (it must create the -wal and -shm files beside the database).
    """
    directory = path.parent
    where = f"the state database {path}"
    if not os.access(directory, os.W_OK | os.X_OK):
        return (
            f"cannot open {where}: the directory {directory} is not writable "
            f"(read-only file system or permissions); fetchd keeps its state there ({exc})"
        )
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return f"cannot open {where}: the file is not readable and writable ({exc})"
    if isinstance(exc, StorageError):
        return str(exc)
    return f"cannot open {where}: {exc}{_repair_hint(exc)}"


def _failure_text(path: Path, exc: sqlite3.Error) -> str:
    return f"the state database {path} failed: {exc}{_repair_hint(exc)}"


def _repair_hint(exc: BaseException) -> str:
    """What to do when SQLite says the file is damaged; nothing mends it by itself."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None or code & 0xFF not in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return ""
    return " (the file is damaged: 'fetchd state rebuild' keeps it aside and rebuilds the state)"


def _version_problem(path: Path, version: int) -> str:
    if version > SCHEMA_VERSION:
        return (
            f"the state database {path} has schema version {version}, newer than this "
            f"fetchd knows ({SCHEMA_VERSION}): use the fetchd that wrote it"
        )
    return (
        f"the state database {path} has schema version {version}, older than this fetchd's "
        f"({SCHEMA_VERSION}); the next fetch (or the daemon's start) upgrades it"
    )


def integrity_problems(path: Path) -> list[str]:
    """What SQLite's ``PRAGMA quick_check`` finds wrong with the database at ``path``.

    An empty list means sound. A file that is no database at all (truncated,
    overwritten) is a problem reported here, not an exception: this is what
    ``fetchd check`` and ``fetchd state check`` tell people before they run
    ``fetchd state rebuild``. The database is opened read-only.
    """
    uri = f"{path.absolute().as_uri()}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT)) as db:
            rows = db.execute("PRAGMA quick_check").fetchall()
            (version,) = db.execute("PRAGMA user_version").fetchone()
    except sqlite3.Error as exc:
        return [str(exc)]
    problems = [str(row[0]) for row in rows if row[0] != "ok"]
    if not problems and version > SCHEMA_VERSION:
        problems.append(_version_problem(path, version))
    return problems


def _statements(script: str) -> Iterator[str]:
    """The statements of a migration script; a trigger's body holds semicolons too."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending
            pending = ""


def _today() -> str:
    """Today's local date as SQLite's ``date(t, 'unixepoch', 'localtime')`` writes it."""
    return datetime.now().astimezone().date().isoformat()
