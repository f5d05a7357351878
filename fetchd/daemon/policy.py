"""When an account is polled: its job's trigger, and how a failure postpones it.

Pure policy, no threads or I/O: ``fetchd.daemon`` applies it. Failing accounts
back off without touching the others. Rules, in order of precedence:

- a refused login (``AuthError``, RFC 3206 ``[AUTH]``) will not succeed with
  the same credentials: it is retried hourly until the config (or the
  account's OAuth2 grant) changes;
- a server's ``LOGIN-DELAY n`` (RFC 2449 section 6.8) is a floor between logins;
- any other failure doubles the wait, from the account's interval up to an hour.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]
from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]

from fetchd.config import AccountConfig, Config

__all__ = [
    "BACKOFF_CAP",
    "PERMANENT",
    "JobSpec",
    "backoff_delay",
    "cron_trigger",
    "specs_for",
]

#: The longest wait between polls of a failing account, in seconds.
BACKOFF_CAP = 3600.0
#: Failure kinds that waiting will not fix: retried only at the cap.
PERMANENT = frozenset({"auth", "usage"})


def backoff_delay(
    interval: float, failures: int, *, permanent: bool = False, cap: float = BACKOFF_CAP
) -> float:
    """Seconds until the next poll of an account that failed ``failures`` times in a row.

    Never less than the account's own interval: backing off never polls sooner.
    """
    if failures <= 0:
        return interval
    if permanent:
        return max(interval, cap)
    # The exponent is bounded so that a long streak cannot overflow a float.
    return max(interval, min(cap, interval * 2.0 ** min(failures, 32)))


_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_WEEKDAY_ITEM = re.compile(r"(\*|\d+)(?:-(\d+))?(?:/(\d+))?")


def _cron_weekdays(field: str) -> str:
    """Rewrite a cron weekday field with names: cron counts 0 (and 7) as Sunday.

    APScheduler 3 reads numbers with 0 as Monday, so ``1-5`` would mean
    Tuesday to Saturday; names mean the same to both.
    """
    items = []
    for item in field.split(","):
        match = _WEEKDAY_ITEM.fullmatch(item)
        if match is None:  # names, or something the trigger will reject itself
            items.append(item)
            continue
        first, last, step = match.groups()
        start = 0 if first == "*" else int(first)
        end = 6 if first == "*" else int(last) if last is not None else start
        days = range(start, end + 1, int(step or 1))
        items.extend(dict.fromkeys(_WEEKDAYS[day % 7] for day in days))
    return ",".join(dict.fromkeys(items))


def cron_trigger(expression: str, jitter: float = 0.0) -> Any:
    """A trigger for a 5-field cron ``schedule``, with cron's weekday numbering."""
    minute, hour, day, month, weekday = expression.split()
    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=_cron_weekdays(weekday),
        jitter=jitter or None,
    )


@dataclass(frozen=True)
class JobSpec:
    """What one account's job is made of; a reload reschedules it only if this changes."""

    account: AccountConfig
    #: Seconds between polls; a ``schedule`` account backs off from the daemon's interval.
    interval: float
    jitter: float
    #: When the account's OAuth2 grant file last changed (``fetchd oauth login``), if any.
    grant_changed: int | None = None

    @property
    def name(self) -> str:
        return self.account.name

    def trigger(self) -> Any:
        if self.account.schedule is not None:
            return cron_trigger(self.account.schedule, self.jitter)
        return IntervalTrigger(seconds=self.interval, jitter=self.jitter or None)


def specs_for(config: Config, grants: Mapping[str, int] | None = None) -> dict[str, JobSpec]:
    """The job of every enabled account, by account name.

    ``grants`` holds when each OAuth2 account's grant file last changed: a
    reload after ``fetchd oauth login`` then sees the account as changed and
    polls it at once, instead of an hour after its refused login.
    """
    daemon = config.daemon
    grants = grants or {}
    return {
        name: JobSpec(account, account.interval or daemon.interval, daemon.jitter, grants.get(name))
        for name, account in config.accounts.items()
        if account.enabled
    }
