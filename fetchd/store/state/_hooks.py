"""Hooks still to run (``fetchd.hooks``): the ``pending_hooks`` table.

A message's hooks are queued with its index row (``State.index_many``), a
poll's with its record (``State.record_poll``), each in that transaction:
none is lost to a crash, and none is queued twice. A row goes once its hook
ran; ``starts`` counts the runs a crash may make it repeat.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from fetchd.store.state._db import Database, _key, _uid

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


class PendingHooksTable(Database):
    """``State``'s part that keeps the ``pending_hooks`` table."""

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
