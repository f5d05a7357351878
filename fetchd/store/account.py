"""One account's place on disk: its Maildir, its attachment folders, its state rows.

``AccountStore`` owns "commit a message": the poll spools each message into
tmp/ under its UID (``spool``), then hands a batch to ``commit``, which makes
the files durable in new/, records their UIDs in the state, and only then
extracts attachments and indexes them for ``fetchd list``, queueing the
account's hooks in the same transaction (``fetchd.hooks`` runs them). What a
file holds (the whole message or its headers only) is in its name and in its
state row, so recovery after a crash can never mistake one for the other.

Where the messages end:

- fetchd's own Maildir, ``<data_dir>/<account>/Maildir`` (the default);
- a Maildir others use too (``maildir``): the same order, in that Maildir;
- an MDA command or an LMTP server (``mda``, ``lmtp``): the message is made
  durable in fetchd's own Maildir as above, which keeps it (the copy
  attachments are extracted from, that ``fetchd list`` shows and that
  ``fetchd state rebuild`` reads), then handed over (``_hand_off``), and
  recorded right after the destination confirmed it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fetchd.access import PRIVATE, SECRET_FILE, Access
from fetchd.config import AccountConfig, attachments_root
from fetchd.errors import AccountLockedError, StorageError
from fetchd.store.handoff import Destination
from fetchd.store.maildir import (
    Kind,
    Maildir,
    MessageFile,
    StoredFile,
    message_key,
    owner_tag,
    stored_keys,
)
from fetchd.store.state import Failure, Fetched, Handoff, Indexed, PendingHook, State

if TYPE_CHECKING:
    from fetchd.mime.attachments import ExtractResult

#: Hidden folders an interrupted extraction leaves under attachments/ (as
#: ``fetchd.mime.folders`` names them; checked here without importing it).
_PARTIAL_PREFIX = ".partial-"


@dataclass
class Spooled:
    """One message on its way into the Maildir: the UID it came under, and its file."""

    uid: str
    file: MessageFile

    def write(self, data: bytes) -> None:
        self.file.write(data)

    def line_ends(self) -> tuple[int, int]:
        return self.file.line_ends()

    def discard(self) -> None:
        self.file.discard()


@dataclass(frozen=True)
class Refusal:
    """A message its destination did not take: not recorded, kept on the server."""

    uid: str
    error: str
    #: The destination said "try later" (EX_TEMPFAIL, LMTP 4xx, not reachable).
    retry_later: bool


@dataclass
class Committed:
    """What ``commit`` or ``recover`` did: recorded messages, refused ones, warnings."""

    #: UID -> what was recorded; only "stored" messages may be deleted on the server.
    kinds: dict[str, Kind] = field(default_factory=dict)
    refused: list[Refusal] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class AccountStore:
    """Where one account's mail goes: its Maildir, attachments and state."""

    account: AccountConfig
    data_dir: Path
    state: State

    def __post_init__(self) -> None:
        self.name = self.account.name
        self.root = self.data_dir / self.name
        self.access = Access.for_group(self.account.share_group or None)
        # The account's folder gets its mode when made, and otherwise only once
        # the tree inside it follows the setting (``prepare``): it marks the change done.
        PRIVATE.make_missing(self.data_dir)
        self.access.make_missing(self.root)
        if self.account.maildir is not None:  # someone else's: its folders stay as they are
            self.maildir = Maildir(self.account.maildir, PRIVATE, owner_tag(self.name))
        else:
            self.maildir = Maildir(maildir_root(self.account, self.data_dir), self.access)
        self.destination = _destination(self.account)
        self.attachments_root = attachments_root(self.account, self.data_dir)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold ``<account>/.lock`` so that the daemon and a manual fetch never interleave."""
        path = self.root / ".lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, SECRET_FILE)
        try:
            os.fchmod(fd, SECRET_FILE)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise AccountLockedError(
                    f"another fetchd process is polling this account ({path} is locked); "
                    "it will be polled again later"
                ) from exc
            yield
        finally:
            os.close(fd)

    def prepare(self) -> list[str]:
        """Clear what an interrupted poll left behind (under the lock); returns warnings."""
        self._follow_sharing()
        self.maildir.clean_tmp()
        if self._has_partial_extractions():
            from fetchd.mime.attachments import remove_partial  # noqa: PLC0415

            remove_partial(self.attachments_root)
        return self._index(self.state.unindexed(self.name))

    def _follow_sharing(self) -> None:
        """Bring what was written before ``share_group`` changed to the current setting.

        The account's folder is set last: a crash halfway leaves it unset, so
        the next poll goes over the tree again.
        """
        if self.access.shared:
            _let_through(self.data_dir, self.access)
        if self.attachments_root.exists():  # an attachments_dir made beforehand
            self.access.ensure_dir(self.attachments_root)
        if self.access.matches(self.root):
            return
        if self.maildir.owner is None:  # a Maildir others use keeps its own modes
            self.access.apply_tree(self.maildir.root)
        self.access.apply_tree(self.attachments_root)
        self.access.set_dir(self.root)

    # -- what the state knows --------------------------------------------------

    def known_uids(self) -> tuple[set[str], set[str]]:
        """Every UID recorded, and those of them still on the server (``State.known_uids``)."""
        return self.state.known_uids(self.name)

    def failing(self) -> dict[str, Failure]:
        return self.state.failing(self.name)

    def mark_seen(self, sizes: Mapping[str, int]) -> None:
        """Record messages as seen without fetching them (``fetch --mark-seen``)."""
        self.state.record(self.name, [Fetched(uid, "seen", size) for uid, size in sizes.items()])

    def mark_gone(self, uids: Sequence[str]) -> None:
        self.state.mark_gone(self.name, uids)

    def note_failure(self, uid: str, error: str) -> int:
        """One more failed attempt at ``uid``; returns how many in a row."""
        return self.state.record_failure(self.name, uid, error)

    # -- committing messages ---------------------------------------------------

    def spool(self, uid: str, kind: Kind = "stored") -> Spooled:
        """A new file in tmp/ for the message the server calls ``uid``."""
        return Spooled(uid, self.maildir.create(message_key(self.name, uid), kind))

    def commit(self, spooled: Sequence[Spooled]) -> Committed:
        """Deliver, record, then index ``spooled``: after this the recorded ones
        (``Committed.kinds``) may be deleted on the server.

        The warnings are the indexing's (the messages are safe either way) and
        what a hand-off said.
        """
        self.maildir.deliver([s.file for s in spooled])  # flush, rename into new/, flush new/
        fetched = [
            Fetched(s.uid, s.file.kind, s.file.size, self._relative(s.file.new_path))
            for s in spooled
        ]
        return self._record(fetched)

    def _record(self, fetched: Sequence[Fetched], *, hand_off: bool = True) -> Committed:
        """Record durable messages (handing them over first, for mda and lmtp), then index."""
        if self.destination is not None and hand_off:
            done = self._hand_off(fetched)
        else:
            self.state.record(self.name, fetched)  # committed durably
            done = Committed({f.uid: _as_kind(f) for f in fetched})
        stored = [(f.uid, f.path) for f in fetched if done.kinds.get(f.uid) == "stored" and f.path]
        done.warnings.extend(self._index(stored))
        return done

    def _hand_off(self, fetched: Sequence[Fetched]) -> Committed:
        """Hand each message to the destination; record it as soon as it confirmed.

        The journal row is committed before the hand-off and leaves with the
        message's record, in one transaction, right after the destination's
        success: a crash can deliver a message twice only between those two.
        A message not taken (every recipient's answer counts) is not
        recorded, and its copy leaves fetchd's Maildir, so that it is fetched
        again when its retry is due, and handed only to the recipients that
        have not confirmed it yet.
        """
        assert self.destination is not None
        journal = self.state.handoffs(self.name)
        self.state.begin_handoffs(self.name, [f.uid for f in fetched if f.status == "stored"])
        done = Committed()
        with self.destination.session() as send:
            for message in fetched:
                if message.status != "stored" or message.path is None:  # nothing to hand over
                    self.state.record(self.name, [message])
                    done.kinds[message.uid] = _as_kind(message)
                    continue
                earlier = journal.get(message.uid, Handoff(message.uid, 0.0, False))
                if earlier.open:
                    done.warnings.append(_maybe_twice(message.uid))
                todo = [r for r in self.destination.recipients if r not in earlier.done]
                outcome = send(self.data_dir / message.path, todo)
                if outcome.error is None:
                    self.state.record(self.name, [message])  # the confirmation
                    done.kinds[message.uid] = "stored"
                    continue
                confirmed = (*earlier.done, *outcome.delivered)
                self.state.end_handoff(self.name, message.uid, confirmed, sure=outcome.sure)
                (self.data_dir / message.path).unlink(missing_ok=True)
                done.refused.append(Refusal(message.uid, outcome.error, outcome.retry_later))
        return done

    def recover(self, sizes: Mapping[str, int], *, hand_off: bool = True) -> Committed:
        """Record messages whose file reached the Maildir before a crash cut their commit short.

        ``sizes`` maps the candidate UIDs to their LIST size. Returns what was
        recovered (``Committed.kinds``, UID -> kind; only whole messages,
        "stored", may be deleted) and what a destination refused. For mda and
        lmtp accounts a file there was not confirmed by the destination (else
        it would be recorded), so it is handed over now,
        unless ``hand_off`` is false (``fetchd state rebuild``, which finds
        the copies of messages handed over long ago).
        """
        if not sizes:
            return Committed()
        found = _files_of(self.name, self.maildir.stored_keys(), sizes)
        if not found:
            return Committed()
        fetched = [
            Fetched(
                uid,
                _kind_of(file, sizes[uid]),
                file.path.stat().st_size,
                self._relative(file.path),
            )
            for uid, file in found.items()
        ]
        return self._record(fetched, hand_off=hand_off)

    # -- attachments and the list index ----------------------------------------

    def _index(self, stored: Sequence[tuple[str, str]]) -> list[str]:
        """Extract attachments of stored (uid, path) messages and index them.

        The .eml files are already safe, so problems only come back as warnings.
        """
        if not stored:
            return []
        # Imported here: a pass that finds nothing new never pays for the MIME code.
        from fetchd.mime import attachments  # noqa: PLC0415

        policy = attachments.AttachmentPolicy(**self.account.attachments.model_dump())
        rows, warnings = [], []
        for uid, path in stored:
            try:
                done = attachments.extract(
                    self.data_dir / path, self.attachments_root, policy, self.access
                )
            except StorageError as exc:
                warnings.append(f"attachments of {path} not extracted: {exc}")
                continue
            warnings.extend(f"{path}: {warning}" for warning in done.warnings)
            rows.append(self._row(uid, path, done))
        self.state.index_many(self.name, rows, _hooks_for(self.account, rows))
        return warnings

    def _has_partial_extractions(self) -> bool:
        try:
            return any(
                e.name.startswith(_PARTIAL_PREFIX) for e in os.scandir(self.attachments_root)
            )
        except FileNotFoundError:
            return False

    def _relative(self, path: Path) -> str:
        """``path`` as the state records it: relative to the data folder, if inside it."""
        if path.is_relative_to(self.data_dir):
            return os.path.relpath(path, self.data_dir)
        return str(path.absolute())

    def _row(self, uid: str, path: str, done: ExtractResult) -> Indexed:
        info = done.info
        return Indexed(
            account=self.name,
            uid=uid,
            path=path,
            date=info.date.isoformat() if info.date else None,
            sender=info.sender,
            sender_address=info.sender_address,
            subject=info.subject,
            message_id=info.message_id,
            folder=self._relative(done.folder) if done.folder else None,
            attachments=tuple(self._relative(file) for file in done.files),
        )


def maildir_root(account: AccountConfig, data_dir: Path) -> Path:
    """The Maildir ``account``'s messages are written to: its ``maildir``, or fetchd's own."""
    return account.maildir if account.maildir is not None else data_dir / account.name / "Maildir"


def left_unrecorded(
    account: AccountConfig, data_dir: Path, sizes: Mapping[str, int]
) -> dict[str, Kind]:
    """Of the UIDs in ``sizes`` (none recorded; their LIST sizes), those whose file is in
    the Maildir, and what it holds: a crash cut their commit short, and the next poll
    records them (``AccountStore.recover``) instead of fetching them. Reads only."""
    if not sizes:
        return {}
    on_disk = stored_keys(maildir_root(account, data_dir), foreign=account.maildir is not None)
    found = _files_of(account.name, on_disk, sizes)
    return {uid: _kind_of(file, sizes[uid]) for uid, file in found.items()}


def hands_over(account: AccountConfig) -> bool:
    """Whether ``account``'s messages go on from fetchd's Maildir to an MDA or LMTP server."""
    return account.mda is not None or account.lmtp is not None


def _files_of(
    account: str, on_disk: Mapping[str, StoredFile], uids: Iterable[str]
) -> dict[str, StoredFile]:
    """The files of ``uids`` among ``on_disk`` (key -> file, ``stored_keys``), by UID."""
    return {uid: on_disk[key] for uid in uids if (key := message_key(account, uid)) in on_disk}


def _destination(account: AccountConfig) -> Destination | None:
    """Where ``account``'s messages are handed over, or None when a Maildir is where
    they end."""
    # Imported here: accounts that deliver into a Maildir never load them.
    if account.mda is not None:
        from fetchd.store.mda import Mda  # noqa: PLC0415

        return Mda(account.mda, account.name, account.username, account.delivery_timeout)
    if account.lmtp is not None and account.lmtp_recipient is not None:
        from fetchd.store.lmtp import Lmtp  # noqa: PLC0415

        return Lmtp(account.lmtp, account.lmtp_recipient, account.delivery_timeout)
    return None


def _as_kind(fetched: Fetched) -> Kind:
    return "headers" if fetched.status == "headers" else "stored"


def _maybe_twice(uid: str) -> str:
    return (
        f"message {uid!r} is handed over again after an earlier hand-off ended without an "
        "answer (fetchd stopped, or the destination timed out): if that one delivered it, "
        "it is there twice"
    )


def _hooks_for(account: AccountConfig, rows: Sequence[Indexed]) -> list[PendingHook]:
    """The hooks ``account`` runs for these messages, queued with their index rows."""
    hooks = []
    for row in rows:
        if account.on_message and row.path:
            hooks.append(PendingHook(row.uid, "on_message", row.path))
        if account.on_attachment:
            hooks.extend(PendingHook(row.uid, "on_attachment", file) for file in row.attachments)
    return hooks


def _let_through(data_dir: Path, access: Access) -> None:
    """Let the sharing group pass through ``data_dir`` to the account's folder.

    Only the search bit: the group cannot list it, and the state database
    in it stays 0600. For the group that owns it that is g+x, for any other
    o+x (accounts may share with different groups).
    """
    try:
        st = os.stat(data_dir)
        bit = stat.S_IXGRP if st.st_gid == access.gid else stat.S_IXOTH
        if not st.st_mode & bit:
            os.chmod(data_dir, stat.S_IMODE(st.st_mode) | bit)
    except OSError as exc:
        raise StorageError(
            f"cannot let the group {access.group!r} (share_group) through {data_dir}: "
            f"{exc.strerror}"
        ) from exc


def _kind_of(file: StoredFile, listed_size: int) -> Kind:
    """What a recovered file holds, by its name; a "whole" file must also be whole in size.

    Files written before the name told the kinds apart were all tagged as
    whole, headers-only ones too: a file far smaller than LIST's size (more
    than its CRLF/LF difference) is taken as headers only, so it is never the
    reason the full message is deleted on the server.
    """
    if file.kind == "headers":
        return "headers"
    with file.path.open("rb") as fp:
        size = lines = 0
        while chunk := fp.read(1 << 20):
            size += len(chunk)
            lines += chunk.count(b"\n")
    return "stored" if size + lines >= listed_size else "headers"
