"""Hooks: programs fetchd runs for each stored message, attachment and poll.

An account's ``on_message`` runs once per message stored whole, after it is
committed and its attachments extracted; ``on_attachment`` once per extracted
file; ``on_error`` once per failed poll; the daemon's ``on_poll`` once per
poll of every account. Each is an argv list run without a shell, so nothing
in a message is ever parsed as a command: the facts reach the program as
environment variables (``FETCHD_*``, see ``message_facts``, ``error_facts``
and ``poll_facts``), with control characters replaced and lengths capped,
and a script that quotes them ("$FETCHD_SUBJECT") keeps them inert.

Exactly once, with one window. A message's hooks are queued in the state in
the transaction that indexes it (``State.index_many``), a poll's (``on_error``,
``on_poll``; ``poll_hooks``) in the transaction that records it
(``State.record_poll``), with their facts, since the failure they report is
gone after a crash; each is deleted once it ran. A crash before a hook starts
leaves it queued: the next poll runs it. A hook that ran is never run again,
whatever its exit status: a failing hook (non-zero exit, killed at
``hook_timeout``, program missing, a bug of fetchd's while running it) is
logged as a warning and counts as done, since a retry could repeat what it
did halfway and would never end for a broken script. If the state cannot
record its end (the database locked or full), the process remembers it
(``Unrecorded``, in ``DaemonHooks``): it does not run again, and is recorded
before the account's hooks next run. The window: a crash while a hook runs,
or before its end is recorded, runs it again on the next poll (at least once
there); ``MAX_STARTS`` bounds that, so a hook that kills fetchd cannot loop.
A hook no longer configured when its turn comes is dropped unrun.

Hooks run after the poll's sessions ended (``run_pending``, through the
runner: ``fetchd fetch`` right after the poll, the daemon on a hook thread
once it scheduled the next poll): the messages' first, ``max_hooks`` at
once, then the polls', one at a time in the order they were queued. So a
slow hook never holds a POP3 session open or delays a DELE, and no hook
failure loses mail or fetches it again. They
run under the account's lock, so ``fetchd fetch`` and the daemon never run
the same hook twice, and at most ``max_hooks`` processes run at once in the
whole process (``DaemonHooks``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

from fetchd.config import AccountConfig, Config
from fetchd.errors import AccountLockedError, FetchdError, StorageError
from fetchd.store.account import AccountStore
from fetchd.store.state import POLL_HOOKS, HookJob, PendingHook, PollHook, PollRecord, State

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

#: Hook processes running at once when the config says nothing (``max_hooks``).
DEFAULT_MAX_HOOKS = 4
#: Bytes of a hook's stdout and of its stderr kept for the log; the rest is read and dropped.
OUTPUT_LIMIT = 8 * 1024
#: Characters kept of one value (a sender, a subject): far below the kernel's
#: 128 KiB per variable, so a hostile header cannot keep the hook from starting.
VALUE_LIMIT = 16 * 1024
#: Starts after which a hook still queued (each start ended by a crash) is given up.
MAX_STARTS = 3
#: Inherited variables whose names contain one of these are not passed on.
SECRET_WORDS = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "CREDENTIAL", "API_KEY", "PRIVATE_KEY")

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class DaemonHooks:
    """What the hooks of every account in one process share.

    The bound on hook processes running at once (``max_hooks``; ``slot``),
    the daemon's ``on_poll``, the names of every account's ``password_env``
    (no hook inherits another account's password either), and the hooks
    that ran but could not be recorded done (``Unrecorded``).
    """

    def __init__(
        self,
        max_hooks: int = DEFAULT_MAX_HOOKS,
        on_poll: Sequence[str] | None = None,
        hidden: frozenset[str] = frozenset(),
        unrecorded: Unrecorded | None = None,
    ) -> None:
        self.max_hooks = max_hooks
        self.on_poll = on_poll
        self.hidden = hidden
        self.unrecorded = Unrecorded() if unrecorded is None else unrecorded
        self._semaphore = threading.BoundedSemaphore(max_hooks)

    @classmethod
    def from_config(cls, config: Config, previous: DaemonHooks | None = None) -> DaemonHooks:
        """The hooks' settings of ``config``; a reload passes the ones it replaces, whose
        memory of hooks run but not recorded must outlive them."""
        accounts = config.accounts.values()
        hidden = frozenset(a.password_env for a in accounts if a.password_env is not None)
        unrecorded = previous.unrecorded if previous is not None else None
        return cls(config.daemon.max_hooks, config.daemon.on_poll, hidden, unrecorded)

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Held while one hook process runs."""
        with self._semaphore:
            yield


class Unrecorded:
    """Hooks that ran in this process but that the state failed to record done (a
    locked or full database): this process never runs them again, and records
    them before it next runs the account's hooks. Thread-safe.

    A hook is known by its key and its start count, as the queue shows it after
    the start that ran it: a hook queued anew under a key whose row went
    meanwhile (a poll's number is reused once its account's queue emptied) is
    a different one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ran: dict[str, set[tuple[PendingHook, int]]] = {}

    def add(self, account: str, jobs: Sequence[HookJob]) -> None:
        """``jobs``, as read before they started, ran; recording it failed."""
        ran = {(job.pending, job.starts + 1) for job in jobs}  # the start that ran each counted
        with self._lock:
            self._ran.setdefault(account, set()).update(ran)

    def among(self, account: str, queued: Sequence[HookJob]) -> list[HookJob]:
        """Which of ``queued`` ran here unrecorded; any other is forgotten (no longer queued)."""
        with self._lock:
            ran = self._ran.pop(account, set())
            found = [job for job in queued if (job.pending, job.starts) in ran]
            if found:
                self._ran[account] = {(job.pending, job.starts) for job in found}
            return found

    def recorded(self, account: str, jobs: Sequence[HookJob]) -> None:
        """``jobs`` are recorded done now."""
        with self._lock:
            left = self._ran.get(account, set()) - {(job.pending, job.starts) for job in jobs}
            if left:
                self._ran[account] = left
            else:
                self._ran.pop(account, None)


@dataclass(frozen=True)
class HookRun:
    """How one hook process ended, and what it printed (each stream capped)."""

    #: The exit status; negative: killed by that signal; None: never started.
    status: int | None
    seconds: float
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    #: Why it could not start (program missing, not executable).
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 0

    def describe(self) -> str:
        """The failure in words, for the warning."""
        if self.error is not None:
            return self.error
        if self.timed_out:
            return f"killed after {self.seconds:.0f} s (hook_timeout)"
        if self.status is not None and self.status < 0:
            return f"killed by signal {-self.status}"
        return f"exited with status {self.status}"


def inert(value: object, limit: int = VALUE_LIMIT) -> str:
    """``value`` as safe text for one environment variable.

    Control characters (newlines included) become spaces, undecodable bytes
    U+FFFD, and the length is capped: what a message says stays one line of
    valid UTF-8, and a NUL can never stop the hook from starting.
    """
    text = "" if value is None else str(value)
    text = _SURROGATE.sub("\ufffd", _CONTROL.sub(" ", text))
    return text[:limit]


def inherited_environment(
    account: AccountConfig,
    hidden: frozenset[str] = frozenset(),
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """fetchd's own environment minus anything secret, as hooks inherit it.

    Dropped: the account's ``password_env`` variable and those ``hidden``
    (every account's), every variable whose name suggests a secret
    (``SECRET_WORDS``, ``$CREDENTIALS_DIRECTORY`` too), and inherited
    ``FETCHD_*`` variables other than ``FETCHD_CONFIG``, which must not pass
    for facts of this run. Hooks run as fetchd's user, who can read fetchd's
    environment anyway: this keeps secrets out of what a hook logs or sends.
    """
    source = os.environ if environ is None else environ
    return {
        name: value
        for name, value in source.items()
        if name != account.password_env
        and name not in hidden
        and not any(word in name.upper() for word in SECRET_WORDS)
        and (not name.startswith("FETCHD_") or name == "FETCHD_CONFIG")
    }


def message_facts(account: AccountConfig, data_dir: Path, job: HookJob) -> dict[str, str]:
    """The ``FETCHD_*`` variables of one message's hook (empty when unknown, never unset)."""
    data_dir = data_dir.absolute()  # a hook may run elsewhere: every path is absolute
    folder = "" if job.folder is None else str(data_dir / job.folder)
    facts = {
        "FETCHD_HOOK": job.pending.hook,
        "FETCHD_ACCOUNT": account.name,
        "FETCHD_UIDL": inert(job.pending.uid),
        "FETCHD_MESSAGE": "" if job.path is None else str(where_now(data_dir / job.path)),
        "FETCHD_ATTACHMENT_DIR": folder,
        "FETCHD_FROM": inert(job.sender),
        "FETCHD_FROM_ADDRESS": inert(job.sender_address),
        "FETCHD_SUBJECT": inert(job.subject),
        "FETCHD_MESSAGE_ID": inert(job.message_id),
    }
    if job.pending.hook == "on_attachment":
        facts["FETCHD_ATTACHMENT"] = str(data_dir / job.pending.target)
    return facts


def where_now(message: Path) -> Path:
    """Where a message indexed in new/ is now: a mail client may have moved it to cur/,
    adding ``:2,`` and its flags to the name (the Maildir convention), before the hook ran."""
    if message.parent.name != "new" or message.exists():
        return message
    moved = sorted((message.parent.parent / "cur").glob(glob.escape(message.name) + ":*"))
    return moved[0] if moved else message


def error_facts(account: AccountConfig, error: BaseException, failures: int) -> dict[str, str]:
    """The ``FETCHD_*`` variables of ``on_error``: what failed, never a secret.

    fetchd's errors never hold a password (``fetchd.errors``); an inline one
    is masked here too in case. A bug's text may hold anything, so only its
    type is given.
    """
    kind: str
    if isinstance(error, FetchdError):
        kind, text = error.kind, str(error)
    else:
        kind, text = "bug", f"fetchd hit a bug ({type(error).__name__}); see its log"
    if account.password is not None and (secret := account.password.get_secret_value()):
        text = text.replace(secret, "***")
    return {
        "FETCHD_HOOK": "on_error",
        "FETCHD_ACCOUNT": account.name,
        "FETCHD_ERROR": inert(text),
        "FETCHD_OUTCOME": kind,
        "FETCHD_FAILURES": str(failures),
    }


def poll_facts(account: AccountConfig, record: PollRecord, failures: int) -> dict[str, str]:
    """The ``FETCHD_*`` variables of ``on_poll``: the poll's counts (its error is on_error's)."""
    return {
        "FETCHD_HOOK": "on_poll",
        "FETCHD_ACCOUNT": account.name,
        "FETCHD_OUTCOME": record.outcome,
        "FETCHD_NEW": str(record.new),
        "FETCHD_STORED": str(record.stored),
        "FETCHD_DELETED": str(record.deleted),
        "FETCHD_FAILURES": str(failures),
    }


def poll_hooks(
    account: AccountConfig,
    shared: DaemonHooks,
    record: PollRecord,
    error: BaseException | None,
    failures: int,
) -> list[PollHook]:
    """The hooks a poll queues with its record (``State.record_poll``), with their facts.

    ``on_error`` if the poll failed and the account has one, then the
    daemon's ``on_poll`` if set. (A poll that found the account locked is not
    recorded, so it queues none: the fetchd process holding it queues its
    own.) ``failures`` is the streak the record makes, which both are told.
    """
    queued = []
    if error is not None and account.on_error is not None:
        queued.append(PollHook("on_error", error_facts(account, error, failures)))
    if shared.on_poll is not None:
        queued.append(PollHook("on_poll", poll_facts(account, record, failures)))
    return queued


def run_hook(argv: Sequence[str], env: Mapping[str, str], timeout: float) -> HookRun:
    """Run ``argv`` (no shell) with ``env``; kill its process group after ``timeout`` seconds.

    stdin is /dev/null; stdout and stderr are read as they come (a chatty
    hook never blocks on a full pipe) and kept up to ``OUTPUT_LIMIT`` each.
    """
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            list(argv),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: a timeout kills it all
        )
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return HookRun(None, time.monotonic() - started, error=f"cannot run {argv[0]!r}: {reason}")
    with process:
        out, err, timed_out = _collect(process, started + timeout)
        if not timed_out:
            try:
                process.wait(max(0.0, started + timeout - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True
        if timed_out:
            _kill_group(process)
    return HookRun(process.returncode, time.monotonic() - started, out, err, timed_out)


def _collect(process: subprocess.Popen[bytes], deadline: float) -> tuple[str, str, bool]:
    """Read stdout and stderr until both close, or the hook exits, or the deadline passes.

    A hook that exits leaving a background child holding its pipes is done:
    the loop stops waiting once the hook itself has ended.
    """
    assert process.stdout is not None
    assert process.stderr is not None
    kept = {process.stdout.fileno(): _Capped(), process.stderr.fileno(): _Capped()}
    with selectors.DefaultSelector() as selector:
        for fd in kept:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                return *_texts(kept), True
            ready = selector.select(min(left, 0.1))
            if not ready and process.poll() is not None:
                break
            for key, _ in ready:
                data = os.read(key.fd, 65536)
                if data:
                    kept[key.fd].add(data)
                else:
                    selector.unregister(key.fd)
    return *_texts(kept), False


class _Capped:
    """The first ``OUTPUT_LIMIT`` bytes of a stream, and how many more there were."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        room = OUTPUT_LIMIT - len(self.data)
        self.data += chunk[:room]
        self.dropped += max(0, len(chunk) - room)

    def text(self) -> str:
        text = self.data.decode("utf-8", "replace").rstrip()
        return text + (f" [... {self.dropped} more bytes]" if self.dropped else "")


def _texts(kept: Mapping[int, _Capped]) -> tuple[str, str]:
    out, err = kept.values()
    return out.text(), err.text()


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):  # it ended, with all its group, just now
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


# -- running what is queued --------------------------------------------------


@dataclass(frozen=True)
class _Context:
    account: AccountConfig
    data_dir: Path
    state: State
    log: FilteringBoundLogger
    shared: DaemonHooks
    stop: threading.Event | None


def run_pending(
    account: AccountConfig,
    data_dir: Path,
    state: State,
    log: FilteringBoundLogger,
    *,
    shared: DaemonHooks,
    stop: threading.Event | None = None,
) -> int:
    """Run ``account``'s queued hooks; returns how many ran.

    Its messages' first, ``max_hooks`` at once; then its polls', one at a
    time in the order queued (a poll's ``on_error`` before its ``on_poll``),
    so a crash that left a poll's hooks queued changes nothing of their
    order. Under the account's lock; if another fetchd process holds it,
    that one runs them. Once ``stop`` is set no further hook starts: they
    stay queued.
    """
    if not state.pending_hooks(account.name):  # the usual case, without taking the lock
        return 0
    context = _Context(account, data_dir, state, log, shared, stop)
    try:
        with AccountStore(account, data_dir, state).lock():
            jobs = _record_unrecorded(context, state.pending_hooks(account.name))
            messages = [job for job in jobs if job.pending.hook not in POLL_HOOKS]
            polls = [job for job in jobs if job.pending.hook in POLL_HOOKS]
            return _run_queued(context, messages) + _run_in_order(context, polls)
    except AccountLockedError:
        return 0


def _record_unrecorded(context: _Context, jobs: list[HookJob]) -> list[HookJob]:
    """Record done those of ``jobs`` that ran in this process unrecorded; the rest to run.

    If the state still cannot, its ``StorageError`` runs no hook now: none
    could be recorded either. They stay remembered.
    """
    name = context.account.name
    ran = context.shared.unrecorded.among(name, jobs)
    if not ran:
        return jobs
    context.state.hooks_done(name, [job.pending for job in ran])
    context.shared.unrecorded.recorded(name, ran)
    return [job for job in jobs if job not in ran]


def _run_in_order(context: _Context, jobs: list[HookJob]) -> int:
    """Run ``jobs`` one after another, each counted, run and recorded as ``_run_queued`` does."""
    ran = 0
    for job in jobs:
        if context.stop is not None and context.stop.is_set():
            break  # the rest stay queued, their starts uncounted
        ran += _run_queued(context, [job])
    return ran


def _run_queued(context: _Context, jobs: list[HookJob]) -> int:
    """Run the jobs ``max_hooks`` at a time, each start counted just before it is
    submitted, and record them done as they end.

    Counted no earlier: a crash must not charge a start to a hook still
    waiting for its turn, or three crashes would give it up unrun. Those that
    ended while the last were being recorded are recorded in one transaction:
    a commit costs a flush, about as much as starting a process. If counting
    a start fails, no further hook starts, but those running are still seen
    to their end and recorded before the failure is raised.
    """
    queue = iter(_runnable(context, jobs))
    state, name = context.state, context.account.name
    ran = 0
    waiting: dict[Future[HookRun | None], HookJob] = {}
    failed: list[StorageError] = []

    def submit(count: int) -> None:
        if failed or (context.stop is not None and context.stop.is_set()):
            return  # the rest stay queued, their starts uncounted
        starting = list(islice(queue, count))
        if not starting:
            return
        try:
            state.start_hooks(name, [job.pending for job in starting])
        except StorageError as exc:
            failed.append(exc)
            return
        waiting.update({pool.submit(_run_job, context, job): job for job in starting})

    with ThreadPoolExecutor(context.shared.max_hooks, thread_name_prefix="hook") as pool:
        submit(context.shared.max_hooks)
        while waiting:
            ended, _ = wait(waiting, return_when=FIRST_COMPLETED)
            ran += _record_ended(context, [_ended(context, waiting.pop(f), f) for f in ended])
            submit(len(ended))
    if failed:
        raise failed[0]
    return ran


def _ended(
    context: _Context, job: HookJob, future: Future[HookRun | None]
) -> tuple[HookJob, HookRun | None]:
    """``job`` with how its run ended (None: not started, fetchd stops).

    A bug while running it is logged and counts as a failed run: the hook
    may have started, and a hook that may have run is never run again.
    """
    try:
        return job, future.result()
    except Exception as exc:
        context.log.exception("hook crashed", hook=job.pending.hook, **_where(job))
        return job, HookRun(None, 0.0, error=f"fetchd hit a bug running it ({type(exc).__name__})")


def _record_ended(context: _Context, ended: list[tuple[HookJob, HookRun | None]]) -> int:
    """Record the hooks that ran done, log each run, and take back the starts of those
    that did not start; returns how many ran. Never raises a state failure."""
    done = [(job, run) for job, run in ended if run is not None]
    _record_done(context, [job for job, _ in done])
    for job, run in done:
        _log_run(context.log, job.pending.hook, run, **_where(job))
    stopped = [job.pending for job, run in ended if run is None]
    if stopped:
        # Not taken back, the start counts as a crash's would (``MAX_STARTS``).
        with contextlib.suppress(StorageError):
            context.state.start_hooks(context.account.name, stopped, step=-1)
    return len(done)


def _record_done(context: _Context, jobs: list[HookJob]) -> None:
    """Record ``jobs`` run: never run again. If the state cannot, this process
    remembers them (``Unrecorded``) and records them before it next runs any."""
    if not jobs:
        return
    name = context.account.name
    try:
        context.state.hooks_done(name, [job.pending for job in jobs])
    except StorageError as exc:
        context.shared.unrecorded.add(name, jobs)
        context.log.warning(
            "hooks ran but could not be recorded; this process will not run them again",
            hooks=[job.pending.hook for job in jobs],
            error=str(exc),
        )


def _runnable(context: _Context, jobs: list[HookJob]) -> list[HookJob]:
    """The jobs to run now; those no longer configured or started too often are dropped."""
    drop, keep = [], []
    for job in jobs:
        argv = _argv(context, job)
        if argv is None or job.starts >= MAX_STARTS:
            drop.append(job)
            if argv is not None:
                context.log.warning(
                    "hook given up",
                    hook=job.pending.hook,
                    **_where(job),
                    reason=f"started {job.starts} times, each cut short by a crash",
                )
        else:
            keep.append(job)
    if drop:
        context.state.hooks_done(context.account.name, [job.pending for job in drop])
    return keep


def _argv(context: _Context, job: HookJob) -> Sequence[str] | None:
    """The command configured now for ``job``'s hook; None if unset (or its message unknown).

    Read from the config of this run, not the one that queued the hook: a
    hook since removed is not run, and a fixed command is the one run.
    """
    account, hook = context.account, job.pending.hook
    if hook == "on_error":
        return account.on_error
    if hook == "on_poll":
        return context.shared.on_poll
    if job.path is None:
        return None
    return account.on_message if hook == "on_message" else account.on_attachment


def _facts(context: _Context, job: HookJob) -> dict[str, str]:
    """What ``job``'s hook is told: a poll's as queued, a message's from the index."""
    if job.pending.hook not in POLL_HOOKS:
        return message_facts(context.account, context.data_dir, job)
    named = {"FETCHD_HOOK": job.pending.hook, "FETCHD_ACCOUNT": context.account.name}
    return {**named, **(job.facts or {})}


def _where(job: HookJob) -> dict[str, str]:
    """What names ``job``'s run in the log: a message's file; a poll's number says nothing."""
    return {} if job.pending.hook in POLL_HOOKS else {"target": job.pending.target}


def _run_job(context: _Context, job: HookJob) -> HookRun | None:
    argv = _argv(context, job)
    assert argv is not None  # _runnable kept only configured hooks
    facts = _facts(context, job)
    return _run_in_slot(context.account, context.shared, argv, facts, context.stop)


def _run_in_slot(
    account: AccountConfig,
    shared: DaemonHooks,
    argv: Sequence[str],
    facts: Mapping[str, str],
    stop: threading.Event | None = None,
) -> HookRun | None:
    """Wait for a free slot, then run ``argv``; None if fetchd began stopping meanwhile."""
    with shared.slot():
        if stop is not None and stop.is_set():
            return None
        env = inherited_environment(account, shared.hidden)
        env.update(facts)
        return run_hook(argv, env, account.hook_timeout)


def _log_run(log: FilteringBoundLogger, hook: str, run: HookRun, **facts: str) -> None:
    """One event per hook run: info when it succeeded, a warning with the reason when not."""
    output = {key: text for key, text in (("stdout", run.stdout), ("stderr", run.stderr)) if text}
    seconds = round(run.seconds, 3)
    if run.ok:
        log.info("hook ran", hook=hook, seconds=seconds, **facts, **output)
    else:
        log.warning(
            "hook failed",
            hook=hook,
            status=run.status,
            reason=run.describe(),
            seconds=seconds,
            **facts,
            **output,
        )


__all__ = [
    "DEFAULT_MAX_HOOKS",
    "MAX_STARTS",
    "DaemonHooks",
    "HookRun",
    "Unrecorded",
    "inert",
    "inherited_environment",
    "poll_hooks",
    "run_hook",
    "run_pending",
]
