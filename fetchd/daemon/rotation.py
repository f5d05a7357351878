"""Due accounts waiting for a poll thread: a fair rotation, its threads, and its load.

The scheduler only says that an account is due; a bounded set of poll threads
takes due accounts from the ``Rotation``: of those waiting, the one polled
longest ago first (never polled counts as longest; among equals, the one due
first). An account waits in it at most once, and never while its poll runs, or
the hooks after it, so under overload every account is still polled, late and
in turn: none twice while another due one waits, and none dropped for being
late.

``LoadMeter`` tells whether the daemon keeps up: polls started per minute
against what the schedule asks for, and how long due polls waited.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

from fetchd.store.state import Load

__all__ = ["LoadMeter", "PollThreads", "Rotation"]

#: One poll of an account, due since a time; returns what is left to run once
#: its poll thread is free (its hooks), or None.
Poll = Callable[[str, float], Callable[[], None] | None]


@dataclass(order=True, frozen=True)
class _Due:
    last: int  # when the account was last taken, in takes; -1: never
    due: float
    order: int  # first come, first served among equal times
    name: str = field(compare=False)


class Rotation:
    """Accounts due for a poll, the one polled longest ago first; thread-safe."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._heap: list[_Due] = []
        self._waiting: dict[str, _Due] = {}
        self._running: set[str] = set()  # taken, and not done: not offered again
        self._polling: set[str] = set()  # taken, and its poll thread still busy with it
        self._last: dict[str, int] = {}
        self._takes = itertools.count()
        self._closed = False
        self._order = itertools.count()

    def offer(self, name: str, due: float) -> bool:
        """Queue ``name``, due since ``due``; False if it waits or runs already."""
        with self._changed:
            if self._closed or name in self._waiting or name in self._running:
                return False
            entry = _Due(self._last.get(name, -1), due, next(self._order), name)
            self._waiting[name] = entry
            heapq.heappush(self._heap, entry)
            self._changed.notify()
            return True

    def take(self) -> tuple[str, float] | None:
        """The next account to poll, and since when it is due; blocks. None once closed."""
        with self._changed:
            while not self._closed:
                entry = self._pop()
                if entry is not None:
                    self._running.add(entry.name)
                    self._polling.add(entry.name)
                    self._last[entry.name] = next(self._takes)
                    return entry.name, entry.due
                self._changed.wait()
            return None

    def _pop(self) -> _Due | None:
        while self._heap:
            entry = heapq.heappop(self._heap)
            if self._waiting.get(entry.name) is entry:  # not discarded meanwhile
                del self._waiting[entry.name]
                return entry
        return None

    def polled(self, name: str) -> None:
        """The poll of ``name`` freed its thread; the account runs on (its hooks) until done."""
        with self._changed:
            self._polling.discard(name)

    def done(self, name: str) -> None:
        """The poll of ``name`` ended, and all it left to run: it may be offered again."""
        with self._changed:
            self._polling.discard(name)
            self._running.discard(name)

    def discard(self, name: str) -> None:
        """Forget a waiting account (removed or replaced by a reload)."""
        with self._changed:
            self._waiting.pop(name, None)
            self._last.pop(name, None)

    def close(self) -> None:
        """Nothing more is taken; waiting accounts are dropped and every taker returns."""
        with self._changed:
            self._closed = True
            self._heap.clear()
            self._waiting.clear()
            self._changed.notify_all()

    def short_of(self, threads: int) -> bool:
        """Whether more accounts wait than of ``threads`` are free to take them."""
        with self._changed:
            return len(self._waiting) > threads - len(self._polling)

    def oldest(self) -> tuple[str, float] | None:
        """The account that has been due longest, and since when, without taking it."""
        with self._changed:
            first = min(self._waiting.values(), key=lambda entry: entry.due, default=None)
            return None if first is None else (first.name, first.due)

    def waiting(self) -> int:
        with self._changed:
            return len(self._waiting)


class PollThreads:
    """At most ``limit`` threads serving a rotation, each started only when all are busy.

    So a daemon runs no more poll threads than accounts are ever due at once,
    and ``limit`` is min(max_parallel, accounts). A thread lives until the
    rotation closes; nothing of a poll is kept after it. What a poll leaves to
    run (its hooks) runs on ``after``, freeing the poll thread for the next
    account; its own account is not polled again until that ended too.
    """

    def __init__(self, rotation: Rotation, poll: Poll, limit: int, after: Executor) -> None:
        self._rotation = rotation
        self._poll = poll
        self._after = after
        self.limit = limit
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def wake(self) -> None:
        """Start a thread if an account waits and every running thread is busy."""
        with self._lock:
            started = len(self._threads)
            if started >= self.limit or not self._rotation.short_of(started):
                return
            thread = threading.Thread(
                target=self._serve, name=f"fetchd-poll-{len(self._threads) + 1}", daemon=True
            )
            self._threads.append(thread)
        thread.start()

    def _serve(self) -> None:
        while (taken := self._rotation.take()) is not None:
            name, due = taken
            rest = None
            try:
                rest = self._poll(name, due)
            finally:
                if rest is None:
                    self._rotation.done(name)
                else:
                    self._rotation.polled(name)
                    self._after.submit(self._finish, name, rest)

    def _finish(self, name: str, rest: Callable[[], None]) -> None:
        """Run what the poll of ``name`` left; only then may the account be offered again."""
        try:
            rest()
        finally:
            self._rotation.done(name)


class LoadMeter:
    """Polls started and how late, per period: whether the daemon keeps up.

    A poll that waited longer than its account's interval is late: before
    the rotation, the scheduler would have dropped it as missed. A period with
    a late poll, or with an account still waiting that long, is overloaded.
    """

    def __init__(self, configured: float, now: float) -> None:
        self._lock = threading.Lock()
        #: Polls per minute the schedule asks for.
        self.configured = configured
        self._since = now
        self._started = 0
        self._late = 0
        self._max_wait = 0.0
        self._overloaded_since: float | None = None

    def started(self, waited: float, interval: float) -> None:
        """A poll starts after waiting ``waited`` seconds since it was due."""
        with self._lock:
            self._started += 1
            self._max_wait = max(self._max_wait, waited)
            self._late += waited > interval

    def sample(self, now: float, still_waiting: float, interval: float) -> Load:
        """The period that ends ``now``; ``still_waiting``: the oldest due poll's wait so far.

        ``interval`` is that poll's account's interval. Starts the next period.
        """
        with self._lock:
            elapsed = max(now - self._since, 1e-3)
            achieved = self._started * 60.0 / elapsed
            max_wait = max(self._max_wait, still_waiting)
            late = self._late > 0 or still_waiting > interval
            if not late:
                self._overloaded_since = None
            elif self._overloaded_since is None:
                self._overloaded_since = now
            load = Load(self._overloaded_since, achieved, self.configured, max_wait, now)
            self._since, self._started, self._late, self._max_wait = now, 0, 0, 0.0
        return load
