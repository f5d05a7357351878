"""The rules of a poll: what is due for fetching, what may be deleted, how batches are cut.

Pure functions of the config, the state's rows and the listing; ``fetchd.poll``
applies them in its durability order, and ``fetchd check`` shares the EXPIRE rule.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence

from fetchd.config import AccountConfig
from fetchd.pop3.inventory import ServerMessage
from fetchd.pop3.replies import Capabilities
from fetchd.store.state import Failure, Known

#: A batch ends at this many messages or octets, whichever comes first; its
#: files are flushed together and its UIDLs committed in one transaction.
BATCH_MESSAGES = 500
BATCH_OCTETS = 64 * 1024 * 1024
DAY = 86400.0


def due(todo: list[ServerMessage], failing: Mapping[str, Failure]) -> list[ServerMessage]:
    """New messages less those failing and not yet due for another attempt."""
    if not failing:
        return todo
    now = time.time()
    return [m for m in todo if (f := failing.get(m.uid)) is None or f.next_attempt <= now]


def expire_warnings(account: AccountConfig, capabilities: Capabilities) -> list[str]:
    """RFC 2449 section 6.7: EXPIRE 0 means mail cannot be left on the server."""
    if capabilities.expire_days == 0 and not account.delete_after_fetch:
        return [
            "the server announces EXPIRE 0: it deletes messages once they are retrieved, "
            "so keeping mail on the server is not possible"
        ]
    return []


def may_delete(account: AccountConfig) -> bool:
    """Whether ``should_delete`` can be true for any message of ``account``."""
    return account.delete_after_fetch or account.delete_after_days is not None


def should_delete(account: AccountConfig, known: Known | None) -> bool:
    """Whether a message recorded earlier is due for deletion on the server.

    Only whole messages: one stored as headers only (too big) or marked seen
    without a download exists nowhere else, so it stays on the server.
    """
    if known is None or not known.on_server or known.status != "stored":
        return False
    if account.delete_after_fetch:
        return True
    days = account.delete_after_days
    return days is not None and time.time() - known.fetched_at >= days * DAY


def batches(todo: Sequence[ServerMessage]) -> Iterator[Sequence[ServerMessage]]:
    start, octets = 0, 0
    for index, message in enumerate(todo):
        octets += message.size
        if index + 1 - start >= BATCH_MESSAGES or octets >= BATCH_OCTETS:
            yield todo[start : index + 1]
            start, octets = index + 1, 0
    if start < len(todo):
        yield todo[start:]
