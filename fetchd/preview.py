"""What a poll would do now, seen without doing it: ``fetchd fetch --dry-run``.

It decides as the poll does (``fetchd.poll.choose``) from one listing, and
changes nothing: no RETR, TOP or DELE, and no write to the state or the
Maildir.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fetchd import rules
from fetchd.config import AccountConfig
from fetchd.poll import choose
from fetchd.pop3.client import Transcript
from fetchd.pop3.inventory import ServerMessage, read_listing
from fetchd.session import login
from fetchd.store.account import left_unrecorded
from fetchd.store.state import State

__all__ = ["Preview", "preview_account"]


@dataclass(frozen=True)
class Preview:
    """What a poll of one account would do now, seen without doing it (``fetch --dry-run``)."""

    account: str
    listed: int
    #: Listed messages fetched (or marked seen) before: not fetched again.
    known: int
    fetch: list[ServerMessage]
    #: New, but over ``max_message_size``: left on the server, or stored as headers only.
    too_big: list[ServerMessage]
    #: New, but failed before and not yet due for another attempt.
    backing_off: list[ServerMessage]
    #: New to the state, but in the Maildir already (a crash cut their commit
    #: short): recorded without a RETR (with mda or lmtp: handed over from there).
    recover: list[ServerMessage]
    #: Stored before and due for deletion, then (``delete_after_fetch``) those fetched now.
    delete: list[ServerMessage]
    warnings: list[str]


def preview_account(
    account: AccountConfig,
    data_dir: Path,
    state: State,
    *,
    transcript: Transcript | None = None,
) -> Preview:
    """What ``poll_account`` would fetch, skip and delete now; changes nothing.

    One session lists the mailbox and ends with QUIT: no RETR, TOP or DELE,
    so the server keeps every message and marks none. The state and the
    Maildir are only read. A server that shows its mailbox in slices may
    hold more than this session sees.
    """
    session = login(account, transcript)
    try:
        listing = read_listing(session)
        session.quit()
    except BaseException:
        session.close()
        raise
    choice = choose(account, state, listing)
    on_disk = left_unrecorded(account, data_dir, {m.uid: m.size for m in choice.fetch})
    recover = [m for m in choice.fetch if m.uid in on_disk]
    limit = account.max_message_size
    new = [m for m in choice.fetch if m.uid not in on_disk]
    too_big = [m for m in new if limit is not None and m.size > limit]
    big = {m.uid for m in too_big}
    fetch = [m for m in new if m.uid not in big]
    whole = [m for m in recover if on_disk[m.uid] == "stored"]
    return Preview(
        account=account.name,
        listed=len(listing),
        known=len(listing) - choice.unknown,
        fetch=fetch,
        too_big=too_big,
        backing_off=choice.backing_off,
        recover=recover,
        delete=choice.delete + (fetch + whole if account.delete_after_fetch else []),
        warnings=[*listing.warnings, *rules.expire_warnings(account, session.capabilities)],
    )
