"""The daemon's process plumbing: signals, systemd's watchdog, running polls, scheduler events.

``SignalInbox`` lives in ``fetchd.signals``, which ``fetchd run`` opens before
anything heavy is imported; it is re-exported here for the daemon.

Each part is small and knows nothing of accounts or mail; ``fetchd.daemon``
wires them together.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from apscheduler.events import (  # type: ignore[import-untyped]
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
)

from fetchd.daemon.sdnotify import Notifier
from fetchd.log import get_logger
from fetchd.signals import SignalInbox

__all__ = ["InFlight", "SignalInbox", "Watchdog", "quiet_apscheduler"]


class InFlight:
    """Counts running polls and runs of hooks, so that a stop can wait for them."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = threading.Condition()

    def __enter__(self) -> None:
        with self._idle:
            self._count += 1

    def __exit__(self, *exc_info: object) -> None:
        with self._idle:
            self._count -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._count == 0, timeout)


class Watchdog:
    """Pings systemd's watchdog only while the scheduler is seen dispatching jobs.

    A heartbeat job, on the thread that also hands due accounts to the poll
    threads, stamps the time; a separate thread pings every half timeout if the
    stamp is fresh. A hung scheduler thus stops the pings and systemd restarts
    the service; busy poll threads do not.
    """

    def __init__(self, notifier: Notifier, period: float, stopping: threading.Event) -> None:
        self.notifier = notifier
        self.period = period
        self._stopping = stopping
        self._beat = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="fetchd-watchdog", daemon=True)

    def beat(self) -> None:
        self._beat = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        # While stopping, the stop's own grace period bounds the wait.
        return self._stopping.is_set() or time.monotonic() - self._beat < self.period

    def _run(self) -> None:
        warned = False
        while True:
            if self.alive():
                self.notifier.notify("WATCHDOG=1")
                warned = False
            elif not warned:
                get_logger().error("the scheduler stopped dispatching; withholding the watchdog")
                warned = True
            time.sleep(self.period)


def quiet_apscheduler(scheduler: Any) -> None:
    """Route the scheduler's few useful events into structlog, nothing else.

    APScheduler logs through the standard ``logging`` module, which fetchd does
    not use (everything goes through ``fetchd.log``).
    """
    logger = logging.getLogger("apscheduler")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False

    def relay(event: Any) -> None:
        log = get_logger(account=event.job_id)
        if event.code == EVENT_JOB_MAX_INSTANCES:
            log.debug("previous poll still running; this run skipped")
        elif event.code == EVENT_JOB_MISSED:
            log.info("poll missed (the machine slept or was busy); the next one is scheduled")
        else:
            log.error("poll job crashed", error=repr(getattr(event, "exception", None)))

    scheduler.add_listener(relay, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED | EVENT_JOB_ERROR)
