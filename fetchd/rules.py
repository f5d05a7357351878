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
#: Hosts known to show a mailbox in slices: Gmail lists about 250 messages a session.
SLICING_HOSTS = ("gmail.com", "googlemail.com")
#: Slices come in round sizes: a listing of a multiple of this many messages may be one.
SLICE_MULTIPLE = 50


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


def slice_reason(host: str, listed: int, unknown: int, deleted: int = 0) -> str | None:
    """Why the mailbox a session listed may have been a slice of it, or None.

    Asked after a session that stored messages and had no failure: another
    session costs a login and the whole listing again, so it is opened only
    when the server may hold more than it showed. ``listed`` is the number
    of messages listed, ``unknown`` how many of them the state had not seen,
    ``deleted`` how many the session deleted.
    Gmail hides what POP already handed out, so a slicing server's listing
    is all new. A server that shows a window of fixed (round) size that holds
    old mail too shows the same window again, unless deletions made room in it;
    a round listing counts only then, and a big mailbox that happens to hold a
    round number of messages costs no second session.
    """
    name = host.lower().rstrip(".")
    if any(name == known or name.endswith("." + known) for known in SLICING_HOSTS):
        return f"{host} shows a mailbox in slices"
    if listed and unknown == listed:
        return f"all {listed} messages listed were new: the server may show only a slice"
    if deleted and listed % SLICE_MULTIPLE == 0:
        return (
            f"{listed} messages listed, a round number, and {deleted} deleted: "
            "the server may show more now"
        )
    return None


def batches(todo: Sequence[ServerMessage]) -> Iterator[Sequence[ServerMessage]]:
    start, octets = 0, 0
    for index, message in enumerate(todo):
        octets += message.size
        if index + 1 - start >= BATCH_MESSAGES or octets >= BATCH_OCTETS:
            yield todo[start : index + 1]
            start, octets = index + 1, 0
    if start < len(todo):
        yield todo[start:]
