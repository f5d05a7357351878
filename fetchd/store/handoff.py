"""Handing a stored message to the mail system: an MDA command or an LMTP server.

An account with ``mda`` or ``lmtp`` still stores each message in fetchd's
own Maildir first (durable, as every message is), then hands that file over.
The destination answers per recipient (an MDA has one, the command): each
answer is an ``Outcome``. ``AccountStore`` journals the hand-off in the state
before it begins and records the message right after the destination
confirmed it (see ``fetchd.poll`` for the whole order).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

#: How much of an MDA's stderr (or an LMTP server's replies) a failure keeps.
MAX_ERROR_TEXT = 2000


@dataclass(frozen=True)
class Outcome:
    """What the destination said about one message."""

    #: Recipients that confirmed delivery.
    delivered: tuple[str, ...]
    #: Why not every recipient has it; None when every one confirmed.
    error: str | None = None
    #: The failure is temporary (EX_TEMPFAIL, an LMTP 4xx, a server not reachable).
    retry_later: bool = False
    #: False when the destination may have delivered without saying so (a timeout,
    #: a connection lost after the message was sent).
    sure: bool = True


#: Sends one message (a file) to the given recipients of the destination.
Sender = Callable[[Path, Sequence[str]], Outcome]


class Destination(Protocol):
    """Where an account's messages are handed over; ``session`` serves one batch."""

    #: Everyone a message goes to: the LMTP recipients, or the MDA command once.
    recipients: tuple[str, ...]

    def session(self) -> contextlib.AbstractContextManager[Sender]: ...


def bounded(text: str) -> str:
    """``text`` cut to ``MAX_ERROR_TEXT`` characters, saying so."""
    text = text.strip()
    if len(text) <= MAX_ERROR_TEXT:
        return text
    return text[:MAX_ERROR_TEXT] + " [...]"


@contextlib.contextmanager
def no_session(send: Sender) -> Iterator[Sender]:
    """A destination without connections: each message is sent on its own."""
    yield send
