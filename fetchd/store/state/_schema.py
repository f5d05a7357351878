"""The state database's schema: every step from an empty file to ``SCHEMA_VERSION``.

A database's ``PRAGMA user_version`` counts the steps it has taken, and
opening it for writing takes the rest (``fetchd.store.state._open``). A step
once released is what some database on disk ran, so ``_MIGRATIONS`` is
append-only: a change of schema is a new step at the end, never an edit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

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
    # UIDs become BLOB (see the package docstring). For the valid UTF-8 that
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
    # A server whose sizes were found loose is polled one command at a time from
    # the start, not after a pipelined batch broke on it (see State.careful_since).
    """
    ALTER TABLE polls ADD COLUMN careful_since REAL;  -- NULL: its replies may be pipelined
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)


def _statements(script: str) -> Iterator[str]:
    """The statements of a migration script; a trigger's body holds semicolons too."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending
            pending = ""
