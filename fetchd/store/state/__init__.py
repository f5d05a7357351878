"""fetchd's state: which messages each account has fetched, and what they hold.

One SQLite database (WAL mode, ``synchronous=FULL``) for all accounts, so a
commit is on disk before the poll sends any DELE. The schema is versioned
with ``PRAGMA user_version`` and migrated forward on open, under the write
lock so that processes opening a fresh database at once do not race. Every
``sqlite3.Error`` is mapped to ``StorageError`` in this package.

UIDs are ``str`` in Python (decoded from the wire with ``surrogateescape``)
and BLOB in SQLite (encoded back the same way): two UIDs that differ in one
invalid byte stay two rows, and every UID round-trips exactly.

Parts: ``_schema`` the migrations, append-only; ``_open`` opening the
database (private, durable, migrated, or read-only) and checking it;
``_db`` the connection, transactions and queries every table group shares.
One module per table group, each with its records and its part of
``State``: ``_messages`` what was fetched and its index, ``_failures``
messages that fail, ``_handoffs`` the hand-off journal, ``_hooks`` hooks
still to run, ``_polls`` poll bookkeeping and the daemon's load,
``_counts`` the fetched counters. A name with a leading underscore is the
package's own: its modules share it, no other part of fetchd uses it.
"""

from __future__ import annotations

from fetchd.store.state._counts import FetchedCount, FetchedCountsTable
from fetchd.store.state._failures import MAX_RETRY_DELAY, Failure, FailuresTable, retry_delay
from fetchd.store.state._handoffs import Handoff, HandoffsTable
from fetchd.store.state._hooks import (
    POLL_HOOKS,
    HookJob,
    HookName,
    PendingHook,
    PendingHooksTable,
    PollHook,
    PollHookName,
)
from fetchd.store.state._messages import Fetched, Indexed, Known, MessagesTable, Status
from fetchd.store.state._open import (
    BUSY_TIMEOUT,
    STATE_FILE,
    Opening,
    integrity_problems,
    state_path,
)
from fetchd.store.state._polls import (
    LOAD_REFRESH,
    Load,
    Outcome,
    PollRecord,
    PollsTable,
    PollStatus,
)

# _MIGRATIONS and _statements: for tests that build a database as an older fetchd left it.
from fetchd.store.state._schema import _MIGRATIONS as _MIGRATIONS
from fetchd.store.state._schema import SCHEMA_VERSION
from fetchd.store.state._schema import _statements as _statements

__all__ = [
    "BUSY_TIMEOUT",
    "ID_CHUNK",
    "LOAD_REFRESH",
    "MAX_RETRY_DELAY",
    "POLL_HOOKS",
    "SCHEMA_VERSION",
    "STATE_FILE",
    "Failure",
    "Fetched",
    "FetchedCount",
    "Handoff",
    "HookJob",
    "HookName",
    "Indexed",
    "Known",
    "Load",
    "Outcome",
    "PendingHook",
    "PollHook",
    "PollHookName",
    "PollRecord",
    "PollStatus",
    "State",
    "Status",
    "integrity_problems",
    "retry_delay",
    "state_path",
]

#: About how many octets of ids ``State.recorded_ids`` splits off at a time.
ID_CHUNK = 1 << 20


class State(
    Opening,
    MessagesTable,
    FailuresTable,
    HandoffsTable,
    PendingHooksTable,
    PollsTable,
    FetchedCountsTable,
):
    """The state database; one connection per thread of work.

    ``State(path)`` opens it for fetching: created on first use and migrated
    to the current schema. ``State.open_readonly(path)`` opens an existing
    one for reporting only.
    """

    def _id_chunk(self) -> int:
        # ID_CHUNK is this module's, read at each call: a test may make it smaller.
        return ID_CHUNK
