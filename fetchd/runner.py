"""The per-account runner: one poll, logged and recorded, whatever its outcome.

``fetchd fetch`` and the daemon both run an account through ``run_account``,
so they share one sequence and one exception policy: a ``FetchdError`` of
any kind (a refused login, a missing password file, a full disk) is that
account's outcome and never stops the others; anything else is a bug, logged
with its traceback and recorded as "bug". How loudly a failure is reported is
the front end's choice (the daemon says a refused login only once).

The queued hooks run through ``run_hooks``: ``fetchd fetch`` right after each
poll (``run_account`` does it), the daemon later, on a thread of its own, once
it has decided when the account is polled next.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fetchd.config import AccountConfig
from fetchd.errors import FetchdError
from fetchd.hooks import DaemonHooks, poll_hooks, run_pending
from fetchd.log import PollTranscript
from fetchd.poll import PollResult, ProgressCallback, poll_account
from fetchd.store.state import Outcome, PollRecord, State

if TYPE_CHECKING:  # structlog itself is imported by fetchd.log, which keeps it light
    from structlog.typing import FilteringBoundLogger


@dataclass(frozen=True)
class AccountRun:
    """How one account's poll ended, as recorded for ``fetchd status``."""

    result: PollResult | None
    error: Exception | None
    record: PollRecord
    #: Failed polls in a row, this one included (0 after a success).
    failures: int

    @property
    def outcome(self) -> Outcome:
        return self.record.outcome


def run_account(
    account: AccountConfig,
    data_dir: Path,
    state: State,
    log: FilteringBoundLogger,
    *,
    transcript: bool = True,
    progress: ProgressCallback | None = None,
    mark_seen: bool = False,
    stop: threading.Event | None = None,
    daemon_hooks: DaemonHooks | None = None,
    hooks: bool = True,
) -> AccountRun:
    """Poll ``account``, log the result, record the poll with its hooks, run the hooks.

    Never raises a poll's failure. The poll's ``on_error`` (if it failed)
    and the daemon's ``on_poll`` are queued with its record, so a crash
    cannot lose them. The queued hooks run after the poll, failed or not
    (what it stored before failing is safe and gets its hooks): the
    messages', then ``on_error``, and last ``on_poll``. With ``hooks``
    False they are left queued for the caller's own ``run_hooks``.
    """
    started = time.time()
    result: PollResult | None = None
    error: Exception | None = None
    lines = PollTranscript(log) if transcript else None
    try:
        result = poll_account(
            account,
            data_dir,
            state,
            transcript=lines,
            progress=progress,
            mark_seen=mark_seen,
            stop=stop,
        )
    except FetchdError as exc:
        error = exc
    except Exception as exc:  # a bug: one account's must not stop the others
        error = exc
    if lines is not None:
        lines.finish(failed=error is not None)
    if result is not None:
        log_result(log, result)
    elif not isinstance(error, FetchdError):
        log.exception("poll crashed", exc_info=error)
    record = poll_record(account.name, started, result, error)
    shared = daemon_hooks or DaemonHooks()
    failures = state.record_poll(
        record, lambda streak: poll_hooks(account, shared, record, error, streak)
    )
    run = AccountRun(result, error, record, failures)
    if hooks:
        run_hooks(account, data_dir, state, log, shared=shared, stop=stop)
    return run


def run_hooks(
    account: AccountConfig,
    data_dir: Path,
    state: State,
    log: FilteringBoundLogger,
    *,
    shared: DaemonHooks,
    stop: threading.Event | None = None,
) -> None:
    """The account's queued hooks, its last poll's too; a hook problem is logged, never
    the poll's outcome. Once ``stop`` is set no further hook starts."""
    try:
        run_pending(account, data_dir, state, log, shared=shared, stop=stop)
    except FetchdError as exc:  # the state database: the hooks stay queued
        log.warning("hooks not run", error=str(exc))


def outcome_of(error: BaseException | None) -> Outcome:
    """The poll's outcome: "ok", the failure's ``FetchdError.kind``, or "bug"."""
    if error is None:
        return "ok"
    return error.kind if isinstance(error, FetchdError) else "bug"


def poll_record(
    account: str, started: float, result: PollResult | None, error: BaseException | None
) -> PollRecord:
    """What ``fetchd status`` keeps of one poll."""
    return PollRecord(
        account=account,
        started=started,
        finished=time.time(),
        outcome=outcome_of(error),
        error=None if error is None else str(error),
        new=result.new if result else 0,
        stored=result.stored if result else 0,
        deleted=result.deleted if result else 0,
        octets=result.octets if result else 0,
    )


def log_result(log: FilteringBoundLogger, result: PollResult) -> None:
    """The poll's warnings, why it logged in more than once, then its one summary event."""
    for warning in result.warnings:
        log.warning("poll warning", detail=warning)
    for number, reason in enumerate(result.session_reasons, start=2):
        log.info("poll session", session=number, reason=reason)
    log.info(
        "poll",
        new=result.new,
        stored=result.stored,
        deleted=result.deleted,
        skipped=result.skipped,
        failed=result.failed,
        deferred=result.deferred,
        octets=result.octets,
        sessions=result.sessions,
        seconds=round(result.seconds, 3),
    )
