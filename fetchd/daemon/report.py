"""What the daemon says about its polls: failures in the log, a one-line STATUS for systemd.

A failing account is logged on every poll, but a refused login loudly only
once: it will not succeed until someone fixes the config, and repeating the
same error hourly would bury everything else in the journal.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from structlog.typing import FilteringBoundLogger

__all__ = ["PollReporter"]


def _when(timestamp: float | None) -> str | None:
    return datetime.fromtimestamp(timestamp, UTC).isoformat() if timestamp else None


@dataclass(frozen=True)
class _LastPoll:
    account: str
    outcome: str
    finished: float


class PollReporter:
    """Remembers who is failing, the last poll and today's count, for every poll thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failing: set[str] = set()
        self._auth_reported: set[str] = set()
        self._last: _LastPoll | None = None
        self._fetched_today = 0

    def forget(self, name: str) -> None:
        """Drop what is known of an account whose job was removed or replaced."""
        with self._lock:
            self._failing.discard(name)
            self._auth_reported.discard(name)

    def polled(self, name: str, outcome: str, finished: float, fetched_today: int) -> None:
        """Note the poll that just ended, and how many messages were fetched today."""
        with self._lock:
            self._last = _LastPoll(name, outcome, finished)
            self._fetched_today = fetched_today

    def report(
        self,
        name: str,
        *,
        outcome: str,
        error: Exception | None,
        failures: int,
        next_poll: float | None,
        log: FilteringBoundLogger,
    ) -> None:
        """Log a failure (a refused login loudly only once) and track who is failing.

        An account another fetchd process was polling is no failure: that
        process reports its own poll, so nothing changes here.
        """
        if outcome == "locked":
            log.info("polled by another fetchd process meanwhile", next_poll=_when(next_poll))
            return
        with self._lock:
            if error is None:
                self._failing.discard(name)
                self._auth_reported.discard(name)
                return
            self._failing.add(name)
            first_auth = outcome == "auth" and name not in self._auth_reported
            if outcome == "auth":
                self._auth_reported.add(name)
        fields = {"error": str(error), "kind": outcome, "failures": failures}
        if first_auth:
            log.error(
                "login refused",
                **fields,
                fix="check username, the password source and auth in the config, then reload; "
                "until then this account is retried only hourly",
                next_poll=_when(next_poll),
            )
        elif outcome == "auth":
            log.warning("login still refused", **fields, next_poll=_when(next_poll))
        elif getattr(error, "retry_later", False):
            log.warning("poll failed; will retry", **fields, next_poll=_when(next_poll))
        else:
            log.error("poll failed", **fields, next_poll=_when(next_poll))

    def status_text(self, accounts: int, *, overloaded: bool = False) -> str:
        """The one line ``systemctl status`` shows, e.g. "3 accounts; last poll 14:02 work ok"."""
        with self._lock:
            last, today, failing = self._last, self._fetched_today, sorted(self._failing)
        parts = [f"{accounts} account{'' if accounts == 1 else 's'}"]
        if overloaded:
            parts.append("overloaded: polls run late")
        if last is not None:
            at = time.strftime("%H:%M", time.localtime(last.finished))
            parts.append(f"last poll {at} {last.account} {last.outcome}")
        parts.append(f"{today} fetched today")
        if failing:
            parts.append("failing: " + ", ".join(failing))
        return "; ".join(parts)
