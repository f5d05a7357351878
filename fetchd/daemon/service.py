"""The unattended daemon behind ``fetchd run``: every account polled on its schedule.

Flow: ``Daemon.start`` gives each enabled account one scheduler job → the job
only puts the due account into the rotation (``fetchd.daemon.rotation``) →
at most ``max_parallel`` poll threads take accounts from it, the longest
waiting first, and call ``poll_account``, the same function ``fetchd fetch``
runs → its outcome is recorded in the state database and decides when the
account is polled next → systemd hears about it (READY, STATUS, WATCHDOG,
RELOADING, STOPPING) → the account's queued hooks run on a hook thread, so
that slow hooks neither hold a poll thread nor delay the schedule; the
account is not polled again before they end.

More due polls than the threads can run make every poll late, none dropped:
once a minute the daemon compares polls started with what the schedule asks
for, warns while it cannot keep up, and records it for ``fetchd status``.

Failing accounts back off without touching the others: a poll never raises
into its thread, and a failure only postpones that account's next run, by
the rules in ``fetchd.daemon.policy``. A refused login is
logged once at error level, then quietly retried hourly; a reload re-polls a
changed account at once.

Signals: SIGTERM or SIGINT stop scheduling and ask running polls to stop after
the messages already requested, and hooks not to start any more; the process
exits once the running polls and hooks end, or after a grace period (mail
safety does not depend on it: see ``fetchd.poll``). SIGHUP reloads the config
and reschedules only the accounts whose settings changed; an invalid config
is logged and the running one kept.
"""

from __future__ import annotations

import contextlib
import functools
import random
import signal
import threading
import time
from collections.abc import Callable
from concurrent import futures
from datetime import UTC, datetime

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor  # type: ignore[import-untyped]
from apscheduler.jobstores.base import JobLookupError  # type: ignore[import-untyped]
from apscheduler.schedulers.background import (  # type: ignore[import-untyped]
    BackgroundScheduler,
)
from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]
from structlog.typing import FilteringBoundLogger

from fetchd.config import Config, load_config
from fetchd.daemon.plumbing import InFlight, SignalInbox, Watchdog, quiet_apscheduler
from fetchd.daemon.policy import (
    BACKOFF_CAP,
    PERMANENT,
    JobSpec,
    backoff_delay,
    cron_trigger,
    specs_for,
)
from fetchd.daemon.report import PollReporter
from fetchd.daemon.rotation import LoadMeter, PollThreads, Rotation
from fetchd.daemon.sdnotify import Notifier, monotonic_usec
from fetchd.errors import ConfigError, StorageError
from fetchd.hooks import DaemonHooks
from fetchd.log import get_logger
from fetchd.oauth import GrantFile
from fetchd.poll import PollResult
from fetchd.runner import run_account, run_hooks
from fetchd.store.state import LOAD_REFRESH, Load, State, state_path

__all__ = [
    "BACKOFF_CAP",
    "STOP_GRACE",
    "Daemon",
    "JobSpec",
    "backoff_delay",
    "cron_trigger",
    "specs_for",
]

#: How long a stop waits for running polls before the process exits anyway.
STOP_GRACE = 30.0
#: Seconds between two looks at the load (and at most one overload warning).
LOAD_PERIOD = 60.0
_HEARTBEAT_JOB = ":heartbeat"  # ':' cannot occur in an account name
_LOAD_JOB = ":load"
#: The scheduler thread of the load check, which writes to the state database.
_LOAD_EXECUTOR = "load"


def grant_stamps(config: Config) -> dict[str, int]:
    """Which login each OAuth2 account's grant is of (``GrantFile.login_stamp``); see
    ``specs_for``. The daemon's own token refreshes rewrite the file, but keep this."""
    stamps = {}
    for name, account in config.accounts.items():
        path = account.oauth2.token_file if account.oauth2 is not None else None
        if path is not None and (stamp := GrantFile(name, path).login_stamp()) is not None:
            stamps[name] = stamp
    return stamps


class Daemon:
    """Schedules every enabled account of ``config`` and keeps systemd informed.

    ``serve`` is the whole life of ``fetchd run`` (signals included); tests and
    embedders may drive ``start``, ``reload`` and ``stop`` themselves.
    """

    def __init__(
        self,
        config: Config,
        notifier: Notifier | None = None,
        *,
        on_reload: Callable[[Config], None] | None = None,
        load_period: float = LOAD_PERIOD,
    ) -> None:
        self._config = config
        self._specs = specs_for(config, grant_stamps(config))
        self._notifier = notifier or Notifier()
        self._on_reload = on_reload
        self._lock = threading.Lock()
        # Held while a next poll time is decided and written, so that the
        # database always ends with the scheduler's latest word.
        self._publishing = threading.Lock()
        self._stopping = threading.Event()
        self._in_flight = InFlight()
        self._reporter = PollReporter()
        self._login_delays: dict[str, int] = {}
        # Shared by every account's hooks; a reload swaps it (polls running keep theirs).
        self._hooks = DaemonHooks.from_config(config)
        self._rotation = Rotation()
        # Each runs one account's hooks, at least one process: more threads than
        # max_hooks, the processes that may run at once, would only wait for a slot.
        hook_threads = futures.ThreadPoolExecutor(
            config.daemon.max_hooks, thread_name_prefix="fetchd-hooks"
        )
        self._threads = PollThreads(
            self._rotation,
            self._poll_job,
            _thread_limit(config.daemon.max_parallel, len(self._specs)),
            hook_threads,
        )
        self._load_period = load_period
        self._load = LoadMeter(_configured_rate(self._specs), time.time())
        self._overloaded = False
        # The load record last written to the database.
        self._load_recorded: Load | None = None
        # Held while the load record is written or cleared: the stop's word is the last.
        self._recording_load = threading.Lock()
        # Its jobs only hand due accounts to the rotation (and beat the
        # watchdog): one thread does, however many accounts there are. The
        # load check writes to the database: on a thread of its own, a locked
        # or slow database never holds back the heartbeat.
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(1), _LOAD_EXECUTOR: ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 1},
        )
        period = self._notifier.watchdog_period
        self._watchdog = Watchdog(self._notifier, period, self._stopping) if period else None

    # -- life cycle ------------------------------------------------------------

    def serve(self, grace: float = STOP_GRACE) -> bool:
        """Run until SIGTERM or SIGINT, reloading on SIGHUP (main thread only).

        Returns whether every running poll ended within ``grace`` seconds; a
        second SIGTERM or SIGINT gives up waiting at once.
        """
        with SignalInbox() as inbox:
            self.start()
            signum = inbox.next()
            while signum == signal.SIGHUP:
                self.reload()
                signum = inbox.next()
            get_logger().info("stopping", signal=signal.Signals(signum).name if signum else None)
            self.stop()
            return self._wait_idle(grace, inbox)

    def start(self) -> None:
        """Schedule every account (the first poll at once, spread by jitter) and report ready."""
        quiet_apscheduler(self._scheduler)
        # Create (or migrate) the database now, before polls open it in parallel.
        self._open_state().close()
        now = time.time()
        with self._lock:
            specs = list(self._specs.values())
        for spec in specs:
            self._add_job(spec, now)
        if self._watchdog is not None:
            self._scheduler.add_job(
                self._watchdog.beat,
                IntervalTrigger(seconds=self._watchdog.period / 2),
                id=_HEARTBEAT_JOB,
            )
            self._watchdog.start()
        self._scheduler.add_job(
            self._check_load,
            IntervalTrigger(seconds=self._load_period),
            id=_LOAD_JOB,
            executor=_LOAD_EXECUTOR,
        )
        self._scheduler.start()
        self._publish_next_polls()
        daemon = self._config.daemon
        get_logger().info(
            "daemon started",
            accounts=[spec.name for spec in specs],
            max_parallel=daemon.max_parallel,
            interval=daemon.interval,
        )
        if not specs:
            get_logger().warning("no enabled accounts: add one, then reload (SIGHUP)")
        self._notifier.notify("READY=1", f"STATUS={self._status_text()}")

    def stop(self) -> None:
        """Stop scheduling and ask running polls to end after their current messages."""
        self._notifier.notify("STOPPING=1")
        self._stopping.set()
        self._rotation.close()
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        try:
            with contextlib.closing(self._open_state()) as state, self._recording_load:
                state.clear_next_polls()
                state.record_load(None)
        except StorageError as exc:
            get_logger().warning("could not clear the next poll times", error=str(exc))

    def wait_idle(self, timeout: float) -> bool:
        """Whether every running poll and hook ended within ``timeout`` seconds."""
        return self._in_flight.wait_idle(timeout)

    def _wait_idle(self, grace: float, inbox: SignalInbox) -> bool:
        deadline = time.monotonic() + grace
        while not self._in_flight.wait_idle(0.2):
            if time.monotonic() >= deadline:
                get_logger().warning("polls or hooks still running after the grace period; exiting")
                return False
            if inbox.next(timeout=0) in (signal.SIGTERM, signal.SIGINT):
                get_logger().warning("second stop signal; not waiting for running polls")
                return False
        get_logger().info("stopped")
        return True

    # -- reload ----------------------------------------------------------------

    def reload(self) -> bool:
        """Load the config again; on success reschedule what changed, else keep the old one."""
        self._notifier.notify("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}")
        log = get_logger()
        try:
            config = load_config(self._config.path)
        except ConfigError as exc:
            log.error("reload failed; the running configuration stays", error=str(exc))
            self._notifier.notify("READY=1", f"STATUS=reload failed; {self._status_text()}")
            return False
        if self._on_reload is not None:
            self._on_reload(config)
        added, removed, changed = self._apply(config)
        log.info("reloaded", added=added, removed=removed, changed=changed)
        self._notifier.notify("READY=1", f"STATUS={self._status_text()}")
        return True

    def _apply(self, config: Config) -> tuple[list[str], list[str], list[str]]:
        """Swap in ``config``; only accounts whose job changed are touched."""
        new = specs_for(config, grant_stamps(config))
        with self._lock:
            old, old_config = self._specs, self._config
            self._specs, self._config = new, config
            self._hooks = DaemonHooks.from_config(config, previous=self._hooks)
        self._load.configured = _configured_rate(new)
        # More accounts may use more threads; max_parallel itself needs a restart.
        self._threads.limit = _thread_limit(old_config.daemon.max_parallel, len(new))
        added = sorted(new.keys() - old.keys())
        removed = sorted(old.keys() - new.keys())
        changed = sorted(n for n in new.keys() & old.keys() if new[n] != old[n])
        for name in removed + changed:
            self._forget(name)
        now = time.time()
        for name in added + changed:
            # A changed account may carry the fix for its failure: poll it now.
            self._add_job(new[name], now)
        with contextlib.closing(self._open_state()) as state:
            for name in removed:
                state.set_next_poll(name, None)
        self._publish_next_polls()
        if config.daemon.max_parallel != old_config.daemon.max_parallel:
            get_logger().warning("a new max_parallel takes effect when fetchd restarts")
        return added, removed, changed

    def _forget(self, name: str) -> None:
        with contextlib.suppress(JobLookupError):
            self._scheduler.remove_job(name)
        self._rotation.discard(name)
        self._reporter.forget(name)

    # -- scheduling ------------------------------------------------------------

    def _add_job(self, spec: JobSpec, now: float) -> None:
        first = now + random.uniform(0, spec.jitter)
        self._scheduler.add_job(
            self._due,
            spec.trigger(),
            args=(spec.name,),
            id=spec.name,
            name=spec.name,
            next_run_time=datetime.fromtimestamp(first, UTC),
            # However late, a due account joins the rotation: dropped as
            # missed, the end of a long list would wait forever under load.
            misfire_grace_time=None,
            replace_existing=True,
        )

    def _due(self, name: str) -> None:
        """The scheduled job: ``name`` is due; a poll thread will take it in turn."""
        if self._rotation.offer(name, time.time()):
            self._threads.wake()

    def _next_run(self, spec: JobSpec) -> float | None:
        """When the scheduler will run ``spec``'s job next (None if it is gone or replaced)."""
        with self._lock:
            current = self._specs.get(spec.name) is spec
        job = self._scheduler.get_job(spec.name) if current else None
        if job is None or job.next_run_time is None:
            return None
        return float(job.next_run_time.timestamp())

    def _postpone(self, spec: JobSpec, earliest: float) -> float | None:
        """Move the account's next poll to ``earliest`` unless it is already later."""
        if self._stopping.is_set():
            return None
        natural = self._next_run(spec)
        if natural is None or earliest <= natural:
            return natural
        try:
            self._scheduler.modify_job(
                spec.name, next_run_time=datetime.fromtimestamp(earliest, UTC)
            )
        except JobLookupError:  # removed by a reload meanwhile
            return None
        return earliest

    def _publish_next_polls(self) -> None:
        """Write each account's next poll time for ``fetchd status``."""
        with self._lock:
            specs = list(self._specs.values())
        with contextlib.closing(self._open_state()) as state, self._publishing:
            state.set_next_polls({spec.name: self._next_run(spec) for spec in specs})

    def _open_state(self) -> State:
        with self._lock:
            data_dir = self._config.daemon.data_dir
        return State(state_path(data_dir))

    # -- one poll --------------------------------------------------------------

    def _poll_job(self, name: str, due: float) -> Callable[[], None] | None:
        """Poll one account, due since ``due``; returns its hooks' run, for a hook thread.

        Never raises into its thread. None: no hook is queued, or the poll
        failed to be recorded (its hooks stay queued for the next one).
        """
        with self._lock:
            spec, config, hooks = self._specs.get(name), self._config, self._hooks
        if spec is None or self._stopping.is_set():
            return None
        self._load.started(time.time() - due, spec.interval)
        with self._in_flight, structlog.contextvars.bound_contextvars(account=name):
            log = get_logger()
            try:
                with contextlib.closing(State(state_path(config.daemon.data_dir))) as state:
                    self._poll_and_record(spec, config, hooks, state, log)
                    queued = _hooks_queued(state, name)
            except StorageError as exc:
                log.error("the state database failed; poll not recorded", error=str(exc))
                self._postpone(spec, time.time() + backoff_delay(spec.interval, 1))
                return None
            except Exception:  # a bug must not stop the other accounts
                log.exception("poll job failed unexpectedly")
                self._postpone(spec, time.time() + backoff_delay(spec.interval, 1))
                return None
        return functools.partial(self._hooks_job, spec, config, hooks) if queued else None

    def _poll_and_record(
        self,
        spec: JobSpec,
        config: Config,
        hooks: DaemonHooks,
        state: State,
        log: FilteringBoundLogger,
    ) -> None:
        run = run_account(
            spec.account,
            config.daemon.data_dir,
            state,
            log,
            transcript=config.daemon.transcript,
            stop=self._stopping,
            daemon_hooks=hooks,
            hooks=False,  # on a hook thread, once the next poll is scheduled
        )
        with self._publishing:
            next_poll = self._schedule_next(spec, run.outcome, run.failures, run.result)
            if next_poll is not None:  # None: a reload replaced the job, or fetchd stops
                state.set_next_poll(spec.name, next_poll)
        self._reporter.report(
            spec.name,
            outcome=run.outcome,
            error=run.error,
            failures=run.failures,
            next_poll=next_poll,
            log=log,
        )
        today = state.fetched_today()
        self._reporter.polled(spec.name, run.outcome, run.record.finished, today)
        self._notifier.notify(f"STATUS={self._status_text()}")

    def _hooks_job(self, spec: JobSpec, config: Config, hooks: DaemonHooks) -> None:
        """Run the account's queued hooks, its last poll's too. Never raises into its thread.

        Once fetchd stops, no hook starts: they stay queued for the next start.
        """
        with self._in_flight, structlog.contextvars.bound_contextvars(account=spec.name):
            if self._stopping.is_set():
                return
            log = get_logger()
            data_dir = config.daemon.data_dir
            try:
                with contextlib.closing(State(state_path(data_dir))) as state:
                    run_hooks(spec.account, data_dir, state, log, shared=hooks, stop=self._stopping)
            except StorageError as exc:
                log.warning("hooks not run", error=str(exc))
            except Exception:  # a bug must not stop the other accounts' hooks
                log.exception("hooks failed unexpectedly")

    def _schedule_next(
        self, spec: JobSpec, outcome: str, failures: int, result: PollResult | None
    ) -> float | None:
        """Postpone the next poll for backoff and LOGIN-DELAY; returns when it will run."""
        now = time.time()
        earliest = now + backoff_delay(spec.interval, failures, permanent=outcome in PERMANENT)
        if outcome == "ok":
            earliest = now
        with self._lock:
            if result is not None and result.login_delay:
                self._login_delays[spec.name] = result.login_delay
            delay = self._login_delays.get(spec.name)
        if delay:
            earliest = max(earliest, now + delay)  # RFC 2449 section 6.8
        return self._postpone(spec, earliest)

    # -- load ------------------------------------------------------------------

    def _check_load(self) -> None:
        """Once a period: warn while polls run late, and record what ``fetchd status`` says."""
        now = time.time()
        oldest = self._rotation.oldest()
        with self._lock:
            spec = self._specs.get(oldest[0]) if oldest else None
        waited = now - oldest[1] if oldest else 0.0
        was_overloaded = self._overloaded
        load = self._load.sample(now, waited, spec.interval if spec else waited + 1)
        self._overloaded = load.overloaded_since is not None
        if self._overloaded:
            get_logger().warning(
                "overloaded: polls run late",
                achieved_per_minute=round(load.achieved, 1),
                configured_per_minute=round(load.configured, 1),
                max_wait=round(load.max_wait, 1),
                waiting=self._rotation.waiting(),
                max_parallel=self._config.daemon.max_parallel,
                fix="raise max_parallel or the interval, or spread accounts over more machines",
            )
        elif was_overloaded:
            get_logger().info("keeping up with the schedule again")
        if self._load_news(load):
            self._record_load(load)

    def _load_news(self, load: Load) -> bool:
        """Whether ``load`` changes what ``fetchd status`` says, or the record grows old."""
        last = self._load_recorded
        if last is None:
            return True
        return load.shown() != last.shown() or load.updated - last.updated >= LOAD_REFRESH

    def _record_load(self, load: Load) -> None:
        """Write ``load`` for ``fetchd status``; a failed write is tried again next period."""
        with self._recording_load:
            if self._stopping.is_set():
                return  # the stop cleared the record: a daemon that stops is not overloaded
            try:
                with contextlib.closing(self._open_state()) as state:
                    state.record_load(load)
            except StorageError as exc:
                get_logger().warning("could not record the load", error=str(exc))
                return
            self._load_recorded = load

    def _status_text(self) -> str:
        """The one line ``systemctl status`` shows, e.g. "3 accounts; last poll 14:02 work ok"."""
        with self._lock:
            count = len(self._specs)
        return self._reporter.status_text(count, overloaded=self._overloaded)


def _hooks_queued(state: State, name: str) -> bool:
    """Whether ``name`` has hooks to run; if the state cannot say, the hook thread will."""
    try:
        return bool(state.pending_hooks(name))
    except StorageError:
        return True


def _thread_limit(max_parallel: int, accounts: int) -> int:
    """Poll threads: one per account at most, however high ``max_parallel``."""
    return min(max_parallel, max(accounts, 1))


def _configured_rate(specs: dict[str, JobSpec]) -> float:
    """Polls per minute the schedule asks for (a cron schedule counts at its interval)."""
    return sum(60.0 / spec.interval for spec in specs.values())
