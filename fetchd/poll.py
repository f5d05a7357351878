"""One account's poll: decide what is new, fetch, store, record, delete.

``fetchd fetch`` and the daemon both call ``poll_account``. The ordering that
keeps mail safe lives in ``_fetch_batch``, top to bottom: RETR into tmp/,
flush, rename into new/, flush the directory, commit the UIDLs, and only then
DELE. A DELE takes effect at QUIT (RFC 1939 section 6), so the state says
"gone from the server" only after QUIT answered +OK. A crash at any point
leaves each message either unrecorded (fetched again, or recognised by its
file name's key and not stored twice) or recorded and on disk.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fetchd.config import AccountConfig
from fetchd.errors import FetchdError
from fetchd.pop3.client import Session, Transcript
from fetchd.pop3.commands import Command
from fetchd.pop3.inventory import Listing, ServerMessage, new_messages, read_listing
from fetchd.pop3.replies import Capabilities
from fetchd.session import login
from fetchd.store.account import AccountStore
from fetchd.store.maildir import MessageFile, message_key
from fetchd.store.state import Fetched, Known, PollRecord, State

#: A batch ends at this many messages or octets, whichever comes first; its
#: files are flushed together and its UIDLs committed in one transaction.
BATCH_MESSAGES = 500
BATCH_OCTETS = 64 * 1024 * 1024
#: Servers that show a mailbox in slices (Gmail: about 250 a session) are
#: logged into again until a session brings nothing new, at most this often.
MAX_SESSIONS_PER_POLL = 20
DAY = 86400.0


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

    @property
    def skipped(self) -> int:
        """Messages left on the server for being over ``max_message_size``."""
        return len(self.skipped_uids)


@dataclass(frozen=True)
class Progress:
    """How far one session's fetch has come, for a progress bar."""

    account: str
    done: int
    total: int
    octets: int
    total_octets: int


ProgressCallback = Callable[[Progress], None]


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
    result = PollResult(account.name)
    store = AccountStore(account, data_dir, state)
    with store.lock():
        store.maildir.clean_tmp()
        result.warnings.extend(store.index_pending())
        while result.sessions < MAX_SESSIONS_PER_POLL and not _stopping(stop):
            result.sessions += 1
            before = result.stored
            session = login(account, transcript)
            result.login_delay = session.capabilities.login_delay
            try:
                _session_pass(session, store, result, progress, mark_seen, stop=stop)
            except BaseException:
                session.close()  # no QUIT: the server deletes nothing
                raise
            # A server with LOGIN-DELAY refuses a second login this soon (RFC 2449 6.8).
            if result.stored == before or result.login_delay:
                break
    result.seconds = time.monotonic() - started
    return result


def outcome_of(error: BaseException | None) -> str:
    """The poll's outcome: "ok", the failure's ``FetchdError.kind``, or "bug"."""
    if error is None:
        return "ok"
    return error.kind if isinstance(error, FetchdError) else "bug"


def poll_record(
    account: str, started: float, result: PollResult | None, error: BaseException | None
) -> PollRecord:
    """What ``fetchd status`` keeps of one poll, from ``fetchd fetch`` or the daemon."""
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


def _session_pass(
    session: Session,
    store: AccountStore,
    result: PollResult,
    progress: ProgressCallback | None,
    mark_seen: bool,
    *,
    stop: threading.Event | None = None,
) -> None:
    listing = read_listing(session)
    result.warnings.extend(listing.warnings + expire_warnings(store.account, session.capabilities))
    known = store.state.known(store.account.name)
    _note_gone(store, listing, known)
    todo = new_messages(listing, known)
    result.new += len(todo)
    if mark_seen:
        store.state.record(store.account.name, [Fetched(m.uid, "seen", m.size) for m in todo])
        todo = []
    todo, recovered = _recover_stored(store, todo, result)
    todo = _drop_oversized(session, store, todo, result)
    marked = [m for m in listing.messages if _should_delete(store.account, known.get(m.uid))]
    if store.account.delete_after_fetch:
        marked += recovered
    meter = _Meter(store.account.name, todo, progress)
    for batch in _batches(todo):
        if _stopping(stop):
            break
        marked += _fetch_batch(session, store, batch, result, meter, stop=stop)
    _dele(session, marked)
    session.quit()
    # Only now, with QUIT answered +OK, are the marked messages really gone.
    store.state.mark_gone(store.account.name, [m.uid for m in marked])
    result.deleted += len(marked)


def _fetch_batch(
    session: Session,
    store: AccountStore,
    batch: Sequence[ServerMessage],
    result: PollResult,
    meter: _Meter,
    *,
    stop: threading.Event | None = None,
) -> list[ServerMessage]:
    """Store a batch durably, record it, extract it; returns what may be deleted."""
    files = _retrieve(session, store, batch, meter, stop)  # 1. RETR streams into tmp/
    batch = batch[: len(files)]  # a stop request ends the batch early
    store.maildir.deliver(files)  # 2-4. flush files, rename into new/, flush new/
    fetched = [
        Fetched(m.uid, "stored", f.size, store.relative(f.new_path))
        for m, f in zip(batch, files, strict=True)
    ]
    store.state.record(store.account.name, fetched)  # 5. the UIDLs, committed durably
    result.stored += len(fetched)
    result.octets += sum(f.size for f in files)
    result.warnings.extend(store.index([(f.uid, f.path) for f in fetched if f.path]))
    # 6. Deleting is safe now; the caller sends DELE and QUIT.
    return list(batch) if store.account.delete_after_fetch else []


def _retrieve(
    session: Session,
    store: AccountStore,
    batch: Sequence[ServerMessage],
    meter: _Meter,
    stop: threading.Event | None = None,
) -> list[MessageFile]:
    files: list[MessageFile] = []
    # Lazy: once ``stop`` is set no further RETR is sent, and only the replies
    # already in flight arrive, so zip ends early (hence strict=False).
    commands = (Command("RETR", (str(m.number),)) for m in batch if not _stopping(stop))
    try:
        for message, reply in zip(batch, session.pipelined(commands), strict=False):
            reply.check(f"RETR {message.number}")
            file = store.maildir.create(message_key(store.account.name, message.uid))
            files.append(file)
            reply.read_into(file)
            file.close()
            meter.advance(file.size)
    except BaseException:
        for file in files:
            file.discard()
        raise
    return files


def _stopping(stop: threading.Event | None) -> bool:
    return stop is not None and stop.is_set()


def _dele(session: Session, marked: Sequence[ServerMessage]) -> None:
    commands = [Command("DELE", (str(m.number),)) for m in marked]
    for message, reply in zip(marked, session.pipelined(commands), strict=True):
        reply.check(f"DELE {message.number}")


def expire_warnings(account: AccountConfig, capabilities: Capabilities) -> list[str]:
    """RFC 2449 section 6.7: EXPIRE 0 means mail cannot be left on the server."""
    if capabilities.expire_days == 0 and not account.delete_after_fetch:
        return [
            "the server announces EXPIRE 0: it deletes messages once they are retrieved, "
            "so keeping mail on the server is not possible"
        ]
    return []


def _should_delete(account: AccountConfig, known: Known | None) -> bool:
    """Whether a message recorded earlier is due for deletion on the server.

    Only whole messages: one stored as headers only (too big) or marked seen
    without a download exists nowhere else, so it stays on the server.
    """
    if known is None or not known.on_server or known.status != "stored":
        return False
    if account.delete_after_fetch:
        return True
    days = account.delete_after_days
    return days is not None and time.time() - known.fetched_at >= days * DAY


def _note_gone(store: AccountStore, listing: Listing, known: dict[str, Known]) -> None:
    """Messages another client deleted: the state stops expecting them."""
    on_server = listing.by_uid()
    gone = [uid for uid, k in known.items() if k.on_server and uid not in on_server]
    if gone and listing.method == "uidl":
        store.state.mark_gone(store.account.name, gone)


def _recover_stored(
    store: AccountStore, todo: list[ServerMessage], result: PollResult
) -> tuple[list[ServerMessage], list[ServerMessage]]:
    """Record messages that reached new/ before a crash cut their commit short.

    Returns the messages still to fetch, and those recovered.
    """
    if not todo:
        return todo, []
    on_disk = store.maildir.stored_keys()
    name = store.account.name
    found = {m.uid: on_disk[k] for m in todo if (k := message_key(name, m.uid)) in on_disk}
    if found:
        store.state.record(
            name,
            [
                Fetched(uid, "stored", p.stat().st_size, store.relative(p))
                for uid, p in found.items()
            ],
        )
        result.warnings.append(
            f"{len(found)} message(s) stored before an interruption were recorded"
        )
        result.warnings.extend(store.index([(uid, store.relative(p)) for uid, p in found.items()]))
    return [m for m in todo if m.uid not in found], [m for m in todo if m.uid in found]


def _drop_oversized(
    session: Session, store: AccountStore, todo: list[ServerMessage], result: PollResult
) -> list[ServerMessage]:
    limit = store.account.max_message_size
    if limit is None:
        return todo
    big = [m for m in todo if m.size > limit]
    for message in big:
        if store.account.fetch_oversized == "headers":
            _store_headers(session, store, message, result)
        elif message.uid not in result.skipped_uids:  # a later session sees it again
            result.skipped_uids.add(message.uid)
            result.warnings.append(
                f"message {message.number} ({message.size} octets) skipped: too big"
            )
    return [m for m in todo if m.size <= limit]


def _store_headers(
    session: Session, store: AccountStore, message: ServerMessage, result: PollResult
) -> None:
    file = store.maildir.create(message_key(store.account.name, message.uid))
    try:
        session.top(message.number, 0, file)
    except BaseException:
        file.discard()
        raise
    store.maildir.deliver([file])
    store.state.record(
        store.account.name,
        [Fetched(message.uid, "headers", file.size, store.relative(file.new_path))],
    )
    result.stored += 1


def _batches(todo: Sequence[ServerMessage]) -> Iterator[Sequence[ServerMessage]]:
    start, octets = 0, 0
    for index, message in enumerate(todo):
        octets += message.size
        if index + 1 - start >= BATCH_MESSAGES or octets >= BATCH_OCTETS:
            yield todo[start : index + 1]
            start, octets = index + 1, 0
    if start < len(todo):
        yield todo[start:]


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
