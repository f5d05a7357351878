"""The hand-off journal of mda and lmtp accounts (see ``fetchd.store.handoff``).

A row is written before a message goes to its destination and leaves with
the message's record (``State.record``); what it says of recipients
that confirmed is kept across attempts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

from fetchd.store.state._db import Database, _key, _uid


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


class HandoffsTable(Database):
    """``State``'s part that keeps the ``handoffs`` table."""

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
