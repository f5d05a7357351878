"""What the Maildir already holds of a server's messages, recorded: ``fetchd state rebuild``.

A fresh state learns from the keyed file names which of the listed messages
are stored, as a poll's recovery after a crash does (``AccountStore.recover``);
nothing is fetched and nothing is deleted.
"""

from __future__ import annotations

from pathlib import Path

from fetchd.config import AccountConfig
from fetchd.poll import PollResult, against_state
from fetchd.pop3.client import Transcript
from fetchd.pop3.inventory import read_listing
from fetchd.session import login
from fetchd.store.account import AccountStore
from fetchd.store.state import State

__all__ = ["recover_account"]


def recover_account(
    account: AccountConfig, data_dir: Path, state: State, *, transcript: Transcript | None = None
) -> PollResult:
    """Record what the Maildir already holds of the server's messages; never deletes.

    For ``fetchd state rebuild``: a fresh state learns from the keyed file
    names which messages are stored (whole or headers only). Nothing is
    fetched, and the session ends with QUIT without a single DELE.
    """
    result = PollResult(account.name, sessions=1)
    # A rebuilt state cannot know which hooks ran: none are queued, rather
    # than a hook for every message the Maildir holds.
    quiet = account.model_copy(update={"on_message": None, "on_attachment": None})
    store = AccountStore(quiet, data_dir, state)
    with store.lock():
        store.prepare()
        session = login(account, transcript)
        try:
            listing = read_listing(session)
            todo = against_state(state, account.name, listing).unknown
            recovered = store.recover({m.uid: m.size for m in todo}, hand_off=False).kinds
            session.quit()
        except BaseException:
            session.close()
            raise
    result.new = len(todo)
    result.stored = len(recovered)
    return result
