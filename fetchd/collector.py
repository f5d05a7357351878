"""Pausing Python's cyclic garbage collector while a listing is read and compared.

Reading a mailbox's listing makes a few objects per message and no garbage
cycles: a million messages trigger hundreds of collections that walk every
object made so far and free nothing (a tenth of a big mailbox's poll).
Reference counting still frees everything as usual while paused.

Polls run in several threads in the daemon; the collector is global, so
pauses are counted and it runs again when the last one ends (if it ran
before the first began).
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

__all__ = ["collector_paused"]

_lock = threading.Lock()
_pauses = 0
_was_enabled = False


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic collection inside the block, in any thread."""
    global _pauses, _was_enabled  # noqa: PLW0603  # one collector per process
    with _lock:
        if _pauses == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _lock:
            _pauses -= 1
            if _pauses == 0 and _was_enabled:
                gc.enable()
