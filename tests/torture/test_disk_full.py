"""A full disk: a poll fails cleanly, records only what is whole, deletes nothing unsafe.

Each test mounts a 2 MB tmpfs (as root; CI runs as root, so a failed mount
fails the test) where one part of fetchd's data lives: the Maildir, the
attachment folders, or the whole data directory with the state database.
It polls a real Dovecot until the disk is full, checks what is left, then
grows the tmpfs to 64 MB and checks that the next poll completes the work
exactly once.
"""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import fetchd.rules
from fetchd.config import AccountConfig
from fetchd.errors import StorageError
from fetchd.mime.folders import MARKER_FILE
from fetchd.poll import PollResult, poll_account
from fetchd.store.state import State
from fetchd.testing.dovecot import Dovecot
from tests.messages import make_message

Mount = Callable[[Path], Path]


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"mount {' '.join(args)} failed (these tests need root): {done.stderr}")


@pytest.fixture
def small_disk() -> Iterator[Mount]:
    """``small_disk(path)`` mounts a 2 MB tmpfs at ``path``; unmounted after the test."""
    mounted: list[Path] = []

    def mount(path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        _mount("-t", "tmpfs", "-o", "size=2m,mode=0755", "fetchd-test", str(path))
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", str(path)], check=True)


def grow(path: Path) -> None:
    """Free space: the tmpfs at ``path`` grows to 64 MB, its files kept."""
    _mount("-o", "remount,size=64m", str(path))


@contextlib.contextmanager
def opened(data_dir: Path) -> Iterator[State]:
    state = State(data_dir / "state.sqlite3")
    try:
        yield state
    finally:
        state.close()


def account(dovecot: Dovecot, **settings: Any) -> AccountConfig:
    values: dict[str, Any] = {
        "name": "work",
        "host": "127.0.0.1",
        "port": dovecot.pop3_port,
        "security": "plain",
        "username": "alice",
        "password": "secret",
        "timeout": 10,
        "delete_after_fetch": True,
    }
    values.update(settings)
    return AccountConfig(**values)


def lf(message: bytes) -> bytes:
    return message.replace(b"\r\n", b"\n")


def stored(data_dir: Path) -> list[bytes]:
    maildir = data_dir / "work" / "Maildir"
    return sorted(p.read_bytes() for sub in ("new", "cur") for p in (maildir / sub).iterdir())


def assert_recorded_whole(data_dir: Path, state: State, originals: list[bytes]) -> None:
    """Every recorded message is on disk, complete; nothing on disk is stored twice."""
    wanted = {lf(m) for m in originals}
    for row in state.listing("work"):
        assert row.path is not None
        assert (data_dir / row.path).read_bytes() in wanted, f"{row.path} recorded incomplete"
    on_disk = stored(data_dir)
    assert len(on_disk) == len(set(on_disk)), "a message was stored twice"


def assert_tmp_empty(data_dir: Path) -> None:
    assert list((data_dir / "work" / "Maildir" / "tmp").iterdir()) == []


def assert_all_once(data_dir: Path, state: State, originals: list[bytes]) -> None:
    assert stored(data_dir) == sorted(lf(m) for m in originals)
    assert len(state.listing("work")) == len(originals)
    assert_tmp_empty(data_dir)


# -- (a) the Maildir fills up mid-batch


def big_body(i: int) -> str:
    return "".join(f"line {k:05} of message {i:03}\n" for k in range(4000))


def test_full_maildir_records_only_whole_messages_and_deletes_nothing(
    dovecot_alice: Dovecot, tmp_path: Path, small_disk: Mount, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 30 messages of about 100 KB: 3 MB for a 2 MB disk.
    mails = [make_message(f"big {i}", big_body(i), message_id=f"<b{i}@t>") for i in range(30)]
    dovecot_alice.deliver_many("alice", mails)
    data_dir = tmp_path / "data"
    maildir = small_disk(data_dir / "work" / "Maildir")
    monkeypatch.setattr(fetchd.rules, "BATCH_MESSAGES", 5)  # some batches commit before it fills
    acct = account(dovecot_alice)
    with opened(data_dir) as state:
        for _attempt in range(2):  # and again while the disk is still full
            with pytest.raises(StorageError) as failure:
                poll_account(acct, data_dir, state)
            assert failure.value.kind == "storage"
            assert "No space left" in str(failure.value)
            assert_recorded_whole(data_dir, state, mails)
            assert_tmp_empty(data_dir)  # the message cut short was removed
            assert len(dovecot_alice.messages("alice")) == 30, "DELE sent by a failed poll"
        recorded = len(state.listing("work"))
        assert 0 < recorded < 30

        grow(maildir)
        result = poll_account(acct, data_dir, state)
        assert (result.stored, result.deleted) == (30 - recorded, 30)
        assert_all_once(data_dir, state, mails)
        assert dovecot_alice.messages("alice") == []


# -- (b) the message fits, its attachments do not


def with_file(i: int) -> tuple[bytes, bytes]:
    """A message of about 400 KB with one 300 KB attachment; returns both."""
    content = b"".join(hashlib.sha256(f"{i}-{k}".encode()).digest() for k in range(9600))
    raw = make_message(
        f"files {i}", "see attached\n", attachments=[(f"data-{i}.bin", content, "application/pdf")]
    )
    return raw, content


def folders(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "work" / "attachments").iterdir())


def assert_folders_sane(data_dir: Path, files: dict[bytes, tuple[str, bytes]]) -> int:
    """No partial or duplicate folder; each holds its message and its file. Returns how many."""
    seen = set()
    for folder in folders(data_dir):
        assert not folder.name.startswith("."), f"{folder.name} left behind"
        message = (folder / "message.eml").read_bytes()
        assert message not in seen, f"a second folder for one message: {folder.name}"
        seen.add(message)
        name, content = files[message]
        copied = (folder / "message.eml").stat().st_nlink == 1  # another filesystem: marked
        marker = {MARKER_FILE} if copied else set()
        assert {p.name for p in folder.iterdir()} == {"message.eml", name, *marker}
        assert (folder / name).read_bytes() == content
    return len(seen)


def test_full_attachments_disk_keeps_mail_and_extracts_later(
    dovecot_alice: Dovecot, tmp_path: Path, small_disk: Mount
) -> None:
    made = [with_file(i) for i in range(5)]
    plain = [make_message(f"plain {i}", message_id=f"<p{i}@t>") for i in range(3)]
    mails = [raw for raw, _ in made] + plain
    files = {lf(raw): (f"data-{i}.bin", content) for i, (raw, content) in enumerate(made)}
    dovecot_alice.deliver_many("alice", mails)
    data_dir = tmp_path / "data"
    attachments = small_disk(data_dir / "work" / "attachments")
    acct = account(dovecot_alice)

    def not_extracted(result: PollResult) -> list[str]:
        return [w for w in result.warnings if "not extracted" in w and "more space" in w]

    with opened(data_dir) as state:
        result = poll_account(acct, data_dir, state)
        assert (result.stored, result.deleted) == (8, 8)  # the .eml files are safe
        assert_all_once(data_dir, state, mails)
        assert not_extracted(result), result.warnings
        room_for = assert_folders_sane(data_dir, files)
        assert room_for < 5
        for _again in range(2):  # each poll tries again; nothing doubles, nothing half-made
            result = poll_account(acct, data_dir, state)
            assert len(not_extracted(result)) == 5 - room_for, result.warnings
            assert assert_folders_sane(data_dir, files) == room_for

        grow(attachments)
        result = poll_account(acct, data_dir, state)
        assert not_extracted(result) == []
        assert assert_folders_sane(data_dir, files) == 5
        indexed = {row_bytes(data_dir, row.path) for row in state.listing("work") if row.folder}
        assert indexed == set(files), "the index does not name the folders"
        poll_account(acct, data_dir, state)
        assert assert_folders_sane(data_dir, files) == 5
        assert_all_once(data_dir, state, mails)


def row_bytes(data_dir: Path, path: str | None) -> bytes:
    assert path is not None
    return (data_dir / path).read_bytes()


# -- (c) the state database's disk fills up: at the commit, the index, or after QUIT


def fill(directory: Path) -> None:
    """Write a file in ``directory`` until its filesystem has no byte left."""
    with (directory / "filler").open("wb", buffering=0) as fp:
        with contextlib.suppress(OSError):
            while True:
                fp.write(b"\0" * 65536)
        with contextlib.suppress(OSError):
            while True:
                fp.write(b"\0")


#: The state's write at which its disk is full, and how many messages the
#: server must still hold after the failed poll: before the commit and before
#: the index nothing may be deleted; after QUIT the deletion has happened and
#: only the state's note of it is missing.
STEPS = [("record", 10), ("index_many", 10), ("mark_gone", 0)]


@pytest.mark.parametrize(("step", "left"), STEPS)
def test_full_state_disk_fails_the_poll_and_deletes_nothing_unrecorded(
    dovecot_alice: Dovecot,
    tmp_path: Path,
    small_disk: Mount,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
    left: int,
) -> None:
    made = [with_file(i) for i in range(2)]
    mails = [raw for raw, _ in made] + [
        make_message(f"small {i}", message_id=f"<s{i}@t>") for i in range(8)
    ]
    files = {lf(raw): (f"data-{i}.bin", content) for i, (raw, content) in enumerate(made)}
    dovecot_alice.deliver_many("alice", mails)
    data_dir = small_disk(tmp_path / "data")
    acct = account(dovecot_alice)
    write = getattr(State, step)

    def on_a_full_disk(self: State, *args: Any) -> Any:
        fill(data_dir)
        return write(self, *args)

    with opened(data_dir) as state:
        monkeypatch.setattr(State, step, on_a_full_disk)
        with pytest.raises(StorageError) as failure:
            poll_account(acct, data_dir, state)
        monkeypatch.undo()
        assert failure.value.kind == "storage"
        assert "database or disk is full" in str(failure.value)
    assert len(dovecot_alice.messages("alice")) == left, "DELE of a message not recorded"

    (data_dir / "filler").unlink()
    with opened(data_dir) as state:
        recorded = len(state.known("work"))
        assert recorded == (0 if step == "record" else 10)
        result = poll_account(acct, data_dir, state)
        assert (result.stored, result.deleted) == (0, left)  # recovered, not fetched again
        assert_all_once(data_dir, state, mails)
        assert assert_folders_sane(data_dir, files) == 2
        indexed = {row_bytes(data_dir, row.path) for row in state.listing("work") if row.folder}
        assert indexed == set(files)
        assert not any(k.on_server for k in state.known("work").values())
    assert dovecot_alice.messages("alice") == []
