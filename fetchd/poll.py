"""One account's poll: the durability order, top to bottom.

Each session of a poll:

1. lists the mailbox and decides what is new (``fetchd.pop3.inventory``);
2. RETRs each new message into tmp/, reading no more than its LIST size
   allows and checking the size it came in (``_retrieve``): a body of
   another size is kept only in a careful session, once the server proved
   it RETR's own reply (``_prove_own_reply``); a server found to need
   that is polled carefully from the next poll on (``_remember_care``);
3. checks that the server is still in step: ``UIDL n`` (``LIST n``) of the
   batch's last message answers for that message, and nothing unasked-for
   is waiting;
4. commits the batch (``AccountStore.commit``): flush, rename into new/,
   flush new/, record the UIDs, then extract attachments. With ``maildir``
   the Maildir is the user's, and nothing else changes. With ``mda`` or
   ``lmtp`` the files are made durable in fetchd's own Maildir the same way,
   then, per batch, a journal row per message is committed (the hand-off
   begins), and per message: the file goes to the destination, and the
   moment the destination confirmed it the UID is recorded, removing the
   journal row in the same transaction; a message the destination does not
   take (try later, refused, failed, timed out) is not recorded and its copy
   is removed, so it stays on the server and is fetched again when due;
5. only then sends DELE, and QUIT. A DELE takes effect at QUIT (RFC 1939
   section 6), so the state says "gone from the server" only after QUIT
   answered +OK.

A crash at any point leaves each message either unrecorded (fetched again,
or recognised by its file name's key and not stored twice) or recorded and
on disk. A message the server cannot deliver (-ERR, more octets than it
announced, a connection lost in its body) is recorded as failing and retried
with a backoff; the rest of the mailbox goes on without it. A session that
may be out of step stores nothing of the batch it was reading and deletes
nothing.

The one window no order can close: with ``mda`` or ``lmtp``, a crash after
the destination delivered a message and before its record committed (the
MDA exited 0, or the LMTP server answered 250, and fetchd died before the
next SQLite commit, a few milliseconds). The next poll finds the message's
copy in fetchd's Maildir unrecorded, with its journal row still open, hands
it over again (so it arrives twice) and warns that it may have. A timeout, or
an LMTP connection lost after DATA, is the same uncertainty, reported the
same way. Everywhere else a message is delivered exactly once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from fetchd import rules
from fetchd.collector import collector_paused
from fetchd.config import AccountConfig
from fetchd.errors import (
    NetworkError,
    ProtocolError,
    ReplyTooLongError,
    ServerBusyError,
    ServerError,
)
from fetchd.pop3.client import Session, Transcript, error_for, looks_like_status
from fetchd.pop3.commands import Command
from fetchd.pop3.inventory import (
    Comparison,
    Listing,
    ServerMessage,
    compare,
    names,
    read_listing,
)
from fetchd.session import login
from fetchd.store.account import AccountStore, Committed, Spooled
from fetchd.store.state import State

#: Servers that show a mailbox in slices (Gmail: about 250 a session) are
#: logged into again while a session may have seen only a slice
#: (``rules.slice_reason``), at most this often.
MAX_SESSIONS_PER_POLL = 20
#: A body may be at most twice LIST's size (every LF turned CRLF) plus this;
#: reading stops there, so a lying size or an endless RETR cannot fill the disk.
BODY_MARGIN = 1024 * 1024
#: What TOP n 0 may bring for a message stored as headers only.
HEADERS_LIMIT = 4 * 1024 * 1024
#: Seconds to wait for the lock of a session fetchd itself dropped.
RELOGIN_PAUSES = (0.2, 0.5, 1.0, 2.0)


@dataclass
class PollResult:
    """What one poll did; logged as the poll's summary event."""

    account: str
    new: int = 0
    stored: int = 0
    deleted: int = 0
    octets: int = 0
    sessions: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    #: Seconds the server wants between logins (CAPA LOGIN-DELAY, RFC 2449 section 6.8).
    login_delay: int | None = None
    skipped_uids: set[str] = field(default_factory=set)
    #: Messages that failed this poll (they are retried later, see ``State.failing``).
    failed_uids: set[str] = field(default_factory=set)
    #: Failed attempts this poll; a message may fail in more than one session.
    failed_attempts: int = 0
    #: Of the failed, those whose destination (mda, lmtp) said "try later".
    deferred_uids: set[str] = field(default_factory=set)
    #: Why each session after the first was opened.
    session_reasons: list[str] = field(default_factory=list)
    #: Set once a session fell out of step: later sessions send one command at a
    #: time and check after each message that nothing unasked-for came, so the
    #: message at fault is the one blamed.
    careful: bool = False
    #: A body came in another size than LIST announced (kept only if proven).
    loose_sizes: bool = False

    @property
    def skipped(self) -> int:
        """Messages left on the server for being over ``max_message_size``."""
        return len(self.skipped_uids)

    @property
    def failed(self) -> int:
        return len(self.failed_uids)

    @property
    def deferred(self) -> int:
        return len(self.deferred_uids)


@dataclass(frozen=True)
class Progress:
    """How far one session's fetch has come, for a progress bar."""

    account: str
    done: int
    total: int
    octets: int
    total_octets: int


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class _Options:
    progress: ProgressCallback | None = None
    mark_seen: bool = False
    stop: threading.Event | None = None

    @property
    def stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()


@dataclass(frozen=True)
class _Pass:
    """One session's work in progress, handed down to the steps of the pass."""

    session: Session
    store: AccountStore
    result: PollResult
    options: _Options
    #: The listing names messages by UIDL (set once the listing is read).
    by_uidl: bool = False


def poll_account(
    account: AccountConfig,
    data_dir: Path,
    state: State,
    *,
    transcript: Transcript | None = None,
    progress: ProgressCallback | None = None,
    mark_seen: bool = False,
    stop: threading.Event | None = None,
) -> PollResult:
    """One pass over ``account``: fetch everything new, exactly once.

    Once ``stop`` is set (the daemon is shutting down) no new RETR is sent:
    the messages already asked for are stored and recorded, then the session
    ends with QUIT as usual, and the rest waits for the next poll.
    """
    started = time.monotonic()
    options = _Options(progress, mark_seen, stop)
    result = PollResult(account.name)
    store = AccountStore(account, data_dir, state)
    with store.lock():
        result.warnings.extend(store.prepare())
        careful_since = state.careful_since(account.name)
        result.careful = careful_since is not None
        while result.sessions < MAX_SESSIONS_PER_POLL and not options.stopping:
            result.sessions += 1
            session = _login(account, transcript, again=result.sessions > 1)
            session.pipelining_allowed = not result.careful
            result.login_delay = session.capabilities.login_delay
            try:
                again = _session_pass(_Pass(session, store, result, options))
            except BaseException:
                session.close()  # no QUIT: the server deletes nothing
                raise
            # A server with LOGIN-DELAY refuses a second login this soon (RFC 2449 6.8).
            if again is None or result.login_delay:
                break
            result.session_reasons.append(again)
        _remember_care(state, account.name, careful_since, result)
    result.seconds = time.monotonic() - started
    return result


def _remember_care(
    state: State, account: str, careful_since: float | None, result: PollResult
) -> None:
    """Start the next poll careful if this one had to be, until a careful one needed it not.

    A server with loose sizes breaks every pipelined batch that meets one:
    the batch is read and discarded, then fetched again one command at a
    time. Remembered, the next poll is careful at once. Forgotten once a
    careful poll stored messages that all came in their listed size, so a
    server that was mended gets its pipelining back.
    """
    if careful_since is None and result.careful:
        state.set_careful_since(account, time.time())
    elif careful_since is not None and result.stored and not result.loose_sizes:
        state.set_careful_since(account, None)


def _login(account: AccountConfig, transcript: Transcript | None, *, again: bool) -> Session:
    """Log in; a session after a dropped one waits a little for the server's lock.

    A server notices a connection fetchd dropped only when it next reads or
    writes; until then it answers ``[IN-USE]`` (RFC 2449 section 8.1.1).
    """
    for pause in RELOGIN_PAUSES if again else ():
        try:
            return login(account, transcript)
        except ServerBusyError as exc:
            if exc.code != "IN-USE":
                raise
            time.sleep(pause)
    return login(account, transcript)


def _session_pass(run: _Pass) -> str | None:
    """One session's work; returns why another session may bring more, or None."""
    session, result = run.session, run.result
    with collector_paused():  # many objects, no cycles: see fetchd.collector
        listing = read_listing(session)
        run = replace(run, by_uidl=listing.method == "uidl")
        stored_before, failed_before = result.stored, result.failed_attempts
        todo, marked, unknown = _plan(run, listing)
    meter = _Meter(run.store.account.name, todo, run.options.progress)
    for batch in rules.batches(todo):
        if run.options.stopping:
            break
        stored, broken = _fetch_batch(run, batch, meter)
        if run.store.account.delete_after_fetch:
            marked += stored
        if broken:  # a message left the session unusable: end it, delete nothing
            session.close()
            return "a message failed and ended the session; the rest is fetched in another"
    session.ensure_synchronized()  # no DELE in a session that may be out of step
    _dele(session, marked)
    session.quit()
    # Only now, with QUIT answered +OK, are the marked messages really gone.
    run.store.mark_gone([m.uid for m in marked])
    result.deleted += len(marked)
    if result.stored == stored_before:
        return None
    if result.failed_attempts > failed_before:  # the failed may be retried at once
        return "a message failed; it is tried again in another session"
    return rules.slice_reason(run.store.account.host, len(listing), unknown, deleted=len(marked))


@dataclass(frozen=True)
class Choice:
    """What a session's listing calls for, read from the state before anything is done."""

    #: New messages due for fetching (those failing and backing off left out).
    fetch: list[ServerMessage]
    #: Messages stored earlier that the account's rules delete now.
    delete: list[ServerMessage]
    #: New messages left alone while a failure backs off (``State.failing``).
    backing_off: list[ServerMessage]
    #: UIDs the state expects on the server that the listing no longer shows.
    gone: list[str]
    #: How many listed messages the state has not seen (due or not).
    unknown: int


def choose(account: AccountConfig, state: State, listing: Listing) -> Choice:
    """Decide from the state alone what ``listing`` calls for; changes nothing."""
    seen = against_state(state, account.name, listing)
    unknown = seen.unknown
    fetch = rules.due(unknown, state.failing(account.name))
    due = {m.uid for m in fetch}
    return Choice(
        fetch=fetch,
        delete=_due_for_deletion(account, state, listing),
        backing_off=[m for m in unknown if m.uid not in due],
        gone=seen.vanished,
        unknown=len(unknown),
    )


def against_state(state: State, account: str, listing: Listing) -> Comparison:
    """``listing`` beside what the state recorded of ``account``, on the server or gone."""
    on_server = state.recorded_ids(account, on_server=True)
    return compare(listing, on_server, state.recorded_ids(account, on_server=False))


def _plan(run: _Pass, listing: Listing) -> tuple[list[ServerMessage], list[ServerMessage], int]:
    """What this session fetches, what it may delete (of mail stored before), and
    how many listed messages the state has not seen (fetched now or not)."""
    store, result, account = run.store, run.result, run.store.account
    result.warnings.extend(listing.warnings)
    result.warnings.extend(rules.expire_warnings(account, run.session.capabilities))
    # Decided on the state as it was before the recovery below, which marks
    # what it recovers itself: a message must not be marked twice.
    choice = choose(account, store.state, listing)
    if choice.gone:  # another client deleted them: the state stops expecting them
        store.mark_gone(choice.gone)
    todo, marked = choice.fetch, choice.delete
    result.new += len(todo)
    if run.options.mark_seen:
        store.mark_seen({m.uid: m.size for m in todo})
        todo = []
    recovery = store.recover({m.uid: m.size for m in todo})
    recovered = recovery.kinds
    if recovered:
        result.warnings.append(
            f"{len(recovered)} message(s) stored before an interruption were recorded"
        )
    settled = recovered.keys() | _note_refusals(run, todo, recovery)
    todo = _drop_oversized(run, [m for m in todo if m.uid not in settled])
    if account.delete_after_fetch and recovered:
        marked += listing.select({uid for uid, kind in recovered.items() if kind == "stored"})
    return todo, marked, choice.unknown


def _fetch_batch(
    run: _Pass, batch: Sequence[ServerMessage], meter: _Meter
) -> tuple[list[ServerMessage], bool]:
    """Store a batch durably, record it, extract it.

    Returns the messages stored (the caller may delete them), and whether the
    session is unusable after a failed message.
    """
    spooled, broken = _retrieve(run, batch, meter)  # 1. RETR streams into tmp/
    try:
        if spooled and not broken:
            _check_in_step(run, batch[-1])  # 2. the replies belonged to their commands
    except BaseException:
        _discard(spooled)
        raise
    committed = run.store.commit(spooled)  # 3. in new/ (handed over), recorded, extracted
    _note_refusals(run, batch, committed)
    uids = committed.kinds.keys()
    run.result.stored += len(uids)
    run.result.octets += sum(s.file.size for s in spooled if s.uid in uids)
    # 4. Deleting is safe now; the caller sends DELE and QUIT.
    return [m for m in batch if m.uid in uids], broken


def _retrieve(
    run: _Pass, batch: Sequence[ServerMessage], meter: _Meter
) -> tuple[list[Spooled], bool]:
    """RETR ``batch`` into tmp/; returns the complete files and whether the session broke.

    A message refused with -ERR is noted as failing and skipped. One that
    breaks the session is noted too: after a lost connection or a body longer
    than allowed the messages before it are kept; after any other protocol
    error (a size that does not match LIST, a body that starts like a status
    line: its reply may belong to another command) nothing of the batch is,
    unless each was checked on its own (``PollResult.careful``), where a body
    of another size is kept once proven RETR's own.
    """
    spooled: list[Spooled] = []
    # Lazy: once ``stop`` is set no further RETR is sent, and only the replies
    # already in flight arrive.
    commands = (Command.retr(m.number) for m in batch if not run.options.stopping)
    replies = run.session.pipelined(commands)
    current: Spooled | None = None
    for message in batch:
        try:
            reply = next(replies, None)
            if reply is None:
                break
            if not reply.ok:
                _failed(run, message, error_for(reply.response, f"RETR {message.number}"))
                continue
            current = run.store.spool(message.uid)
            limit = 2 * message.size + BODY_MARGIN
            careful = run.result.careful
            reply.read_into(
                current,
                limit=limit,
                expect=message.size,
                strict=not careful,
                line_ends=current.line_ends,
            )
            current.file.close()
            if looks_like_status(reply.head):
                raise ProtocolError(
                    f"the body of RETR {message.number} starts like a status line: "
                    "a reply out of place, so fetchd stops here"
                )
            if reply.unexpected_size:
                run.result.loose_sizes = True
                _prove_own_reply(run, message, reply.octets)
            if careful:
                run.session.ensure_synchronized()
        except (ProtocolError, NetworkError) as exc:
            _discard([current] if current else [])
            if not (run.result.careful or isinstance(exc, ReplyTooLongError | NetworkError)):
                _discard(spooled)
                spooled = []
            run.result.careful |= isinstance(exc, ProtocolError)
            _failed(run, message, exc)
            return spooled, True
        except BaseException:
            _discard([*spooled, current] if current else spooled)
            raise
        spooled.append(current)
        current = None
        meter.advance(spooled[-1].file.size)
    return spooled, False


def _prove_own_reply(run: _Pass, message: ServerMessage, octets: int) -> None:
    """Keep a body whose size is not LIST's only if it can be nothing but RETR's reply.

    Servers may announce sizes that are slightly off, or add a header as they
    send (RFC 1939 asks for exact sizes; not every server keeps to it). Only
    in a careful session, where each reply is read before the next command is
    sent: a stray reply read as the RETR's status line would have left the
    real one at the start of the body (the caller checked), and one that
    shifted the replies would answer the next command, which must name this
    very message (``_answer_about``). Raises ``ProtocolError`` otherwise:
    nothing is kept.
    """
    found = f"RETR {message.number} has {octets} octets, LIST announced {message.size}"
    wrong = _answer_about(run, message)
    if wrong is not None:
        raise ProtocolError(f"{found}, and {wrong}: the server's replies are out of step")
    run.result.warnings.append(
        f"message {message.number}: {found}; the server's sizes are not exact, and the reply "
        "was proven its own: stored"
    )


def _check_in_step(run: _Pass, last: ServerMessage) -> None:
    """Prove the session is in step before anything of it is recorded.

    A server that sent one reply too many (or too few) shifts every later
    reply onto the wrong command; the next one must answer for message n
    (``_answer_about``), and nothing else may be waiting.
    """
    wrong = _answer_about(run, last)
    if wrong is not None:
        raise ProtocolError(
            f"{wrong}: the server's replies are out of step; nothing of this batch is recorded"
        )
    run.session.ensure_synchronized()


def _answer_about(run: _Pass, message: ServerMessage) -> str | None:
    """Ask the server about ``message`` alone: None if the answer names it, else what
    was wrong. ``UIDL n`` must give its id; without UIDL, ``LIST n`` its listed size
    (an id names the message even where sizes are loose or LIST left it out)."""
    if run.by_uidl:
        uid = run.session.uidl_one(message.number)
        return None if names(uid, message.uid) else f"UIDL {message.number} said {uid!r}"
    size = run.session.list_one(message.number)
    if size == message.size:
        return None
    return f"LIST {message.number} said {size} octets, the listing said {message.size}"


def _failed(run: _Pass, message: ServerMessage, exc: Exception) -> None:
    """Note a message the server could not deliver; it is retried with a backoff."""
    count = run.store.note_failure(message.uid, str(exc))
    run.result.failed_uids.add(message.uid)
    run.result.failed_attempts += 1
    run.result.warnings.append(
        f"message {message.number} ({message.size} octets) not fetched, attempt {count}: {exc}"
    )


def _note_refusals(run: _Pass, messages: Sequence[ServerMessage], committed: Committed) -> set[str]:
    """Note what the destination did not take, as failing (retried later); returns the UIDs."""
    run.result.warnings.extend(committed.warnings)
    by_uid = {m.uid: m for m in messages}
    for refusal in committed.refused:
        message = by_uid[refusal.uid]
        count = run.store.note_failure(refusal.uid, refusal.error)
        run.result.failed_uids.add(refusal.uid)
        run.result.failed_attempts += 1
        what = "deferred (the destination said: try later)" if refusal.retry_later else "refused"
        if refusal.retry_later:
            run.result.deferred_uids.add(refusal.uid)
        run.result.warnings.append(
            f"message {message.number} ({message.size} octets) not delivered, {what}, "
            f"attempt {count}; it stays on the server: {refusal.error}"
        )
    return {refusal.uid for refusal in committed.refused}


def _discard(spooled: Sequence[Spooled]) -> None:
    for spool in spooled:
        spool.discard()


def _dele(session: Session, marked: Sequence[ServerMessage]) -> None:
    commands = [Command.dele(m.number) for m in marked]
    for message, reply in zip(marked, session.pipelined(commands), strict=True):
        reply.check(f"DELE {message.number}")


def _due_for_deletion(
    account: AccountConfig, state: State, listing: Listing
) -> list[ServerMessage]:
    """Messages recorded earlier that the account's rules delete now."""
    if not rules.may_delete(account):
        return []  # the state's rows are not needed: nothing can be deleted
    known = state.known(account.name)
    due = {uid for uid in listing.uids if rules.should_delete(account, known.get(uid))}
    return listing.select(due) if due else []


def _drop_oversized(run: _Pass, todo: list[ServerMessage]) -> list[ServerMessage]:
    store, result = run.store, run.result
    limit = store.account.max_message_size
    if limit is None:
        return todo
    big = [m for m in todo if m.size > limit]
    for message in big:
        if store.account.fetch_oversized == "headers":
            _store_headers(run, message)
        elif message.uid not in result.skipped_uids:  # a later session sees it again
            result.skipped_uids.add(message.uid)
            result.warnings.append(
                f"message {message.number} ({message.size} octets) skipped: too big"
            )
    return [m for m in todo if m.size <= limit]


def _store_headers(run: _Pass, message: ServerMessage) -> None:
    """Keep the headers of a message too big to fetch: TOP n 0, committed as "headers"."""
    spool = run.store.spool(message.uid, "headers")
    try:
        run.session.top(message.number, 0, spool, limit=HEADERS_LIMIT)
        _check_in_step(run, message)  # the headers are this message's
    except ServerError as exc:  # -ERR: the session is still in step
        spool.discard()
        _failed(run, message, exc)
        return
    except BaseException:
        spool.discard()
        raise
    committed = run.store.commit([spool])
    run.result.warnings.extend(committed.warnings)
    run.result.stored += len(committed.kinds)


class _Meter:
    """Progress of one session's fetch, reported after every message."""

    def __init__(
        self, account: str, todo: Sequence[ServerMessage], callback: ProgressCallback | None
    ) -> None:
        self.callback = callback
        self.progress = Progress(account, 0, len(todo), 0, sum(m.size for m in todo))

    def advance(self, octets: int) -> None:
        if self.callback is None:
            return
        p = self.progress
        self.progress = Progress(p.account, p.done + 1, p.total, p.octets + octets, p.total_octets)
        self.callback(self.progress)


__all__ = [
    "Choice",
    "PollResult",
    "Progress",
    "ProgressCallback",
    "against_state",
    "choose",
    "poll_account",
]
