"""Crash safety: kill -9 at any instant loses nothing and stores nothing twice.

Each test runs ``fetchd fetch`` as a real process against Dovecot, with
delete_after_fetch on and off, kills it (at chosen points, by fault injection,
or at timed instants), then lets a clean run finish, and checks exactly once
for all three things a poll makes: every message is in the Maildir once and
complete; every message with attachments has one folder, linked to its .eml,
holding exactly its files; and the server holds the message only if it is not
to be deleted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest

from fetchd.mime.folders import MARKER_FILE, maildir_name
from fetchd.store.state import State
from fetchd.testing.dovecot import Dovecot
from tests.messages import make_message

COUNT = 120
#: Batches this small give six commits per run: kills land between and inside them.
BATCH = 20

# Runs fetchd in-process after patching one step to SIGKILL the process:
# argv: config, "module:Class.method" or "module:function" (or "-": no kill),
# before|after, nth call.
INJECTOR = textwrap.dedent(
    f"""
    import importlib, os, signal, sys
    import fetchd.rules
    fetchd.rules.BATCH_MESSAGES = {BATCH}
    config, target, when, nth = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    def die():
        os.kill(os.getpid(), signal.SIGKILL)
    def patch():
        module_name, _, attr = target.partition(":")
        owner = importlib.import_module(module_name)
        *path, name = attr.split(".")
        for part in path:
            owner = getattr(owner, part)
        original = getattr(owner, name)
        calls = [0]
        def patched(*args, **kwargs):
            calls[0] += 1
            if when == "before" and calls[0] == nth:
                die()
            result = original(*args, **kwargs)
            if when == "after" and calls[0] == nth:
                die()
            return result
        setattr(owner, name, patched)
    if target != "-":
        patch()
    from fetchd.cli import main
    sys.exit(main(["-c", config, "fetch"]))
    """
)


@dataclass(frozen=True)
class Mail:
    """One message as delivered, and the attachment files it must give (name -> bytes)."""

    raw: bytes
    files: dict[str, bytes]

    @property
    def stored(self) -> bytes:
        return self.raw.replace(b"\r\n", b"\n")


def _attachments(i: int) -> list[tuple[str, bytes, str]]:
    """Every 5th message has files: one, or two for every 10th; sizes differ by message."""
    if i % 5:
        return []
    pdf = bytes((i * 31 + k * 7) % 256 for k in range(1500 + 40 * i))
    found = [(f"report-{i}.pdf", pdf, "application/pdf")]
    if i % 10 == 0:
        found.append((f"photo {i}.jpg", bytes((i + k) % 251 for k in range(4000)), "image/jpeg"))
    return found


def build_mailbox(count: int) -> list[Mail]:
    mails = []
    for i in range(count):
        files = _attachments(i)
        raw = make_message(
            f"crash {i}", f"body {i}\n" * 30, message_id=f"<crash-{i}@test>", attachments=files
        )
        mails.append(Mail(raw, {name: content for name, content, _ in files}))
    return mails


@pytest.fixture
def mailbox(dovecot_alice: Dovecot) -> list[Mail]:
    mails = build_mailbox(COUNT)
    dovecot_alice.deliver_many("alice", [m.raw for m in mails])
    return mails


def write_config(
    tmp_path: Path, dovecot: Dovecot, extra: str = "", *, delete: bool = True, daemon: str = ""
) -> Path:
    """The config of one account, ``extra`` its further keys, ``daemon`` those of [daemon]."""
    config = tmp_path / "config.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [daemon]
            data_dir = "{tmp_path / "data"}"
            transcript = false
            log_level = "warning"
            {daemon}
            [accounts.work]
            host = "127.0.0.1"
            port = {dovecot.pop3_port}
            security = "plain"
            username = "alice"
            password = "secret"
            delete_after_fetch = {"true" if delete else "false"}
            """
        )
        + extra
    )
    config.chmod(0o600)
    return config


def fetch(config: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "fetchd", "-c", str(config), "fetch"],
        capture_output=True,
        timeout=120,
        check=False,
    )


def inject(config: Path, target: str, when: str, nth: int) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-c", INJECTOR, str(config), target, when, str(nth)],
        capture_output=True,
        timeout=120,
        check=False,
    )


#: A folder named as a second one of the same title: "title (2)".
_NUMBERED = re.compile(r" \(\d+\)$")


def stored_files(tmp_path: Path, maildir: Path | None = None) -> list[Path]:
    """The messages in the Maildir they were delivered to: fetchd's own by default."""
    maildir = maildir or tmp_path / "data" / "work" / "Maildir"
    return [
        p for sub in ("new", "cur") if (maildir / sub).exists() for p in (maildir / sub).iterdir()
    ]


def default_root(tmp_path: Path) -> Path:
    return tmp_path / "data" / "work" / "attachments"


def identity(folder: Path) -> object:
    """What names the stored message of a folder: its marker, else message.eml's inode."""
    marker = folder / MARKER_FILE
    if marker.exists():
        return marker.read_text(encoding="utf-8").strip()
    st = (folder / "message.eml").stat()
    return (st.st_dev, st.st_ino)


def identities(tmp_path: Path, maildir: Path | None = None) -> dict[object, Path]:
    """Each stored message by the identities a folder may give it (inode, Maildir name)."""
    found: dict[object, Path] = {}
    for path in stored_files(tmp_path, maildir):
        st = path.stat()
        found[(st.st_dev, st.st_ino)] = path
        found[maildir_name(path)] = path
    return found


def assert_no_duplicates(
    tmp_path: Path, root: Path | None = None, maildir: Path | None = None
) -> None:
    """What must hold even right after a kill: no message stored twice, no folder made twice."""
    ids = [
        message_from_bytes(p.read_bytes())["Message-ID"] for p in stored_files(tmp_path, maildir)
    ]
    assert len(ids) == len(set(ids)), "a message was stored twice"
    root = root or default_root(tmp_path)
    folders = [p for p in root.iterdir() if not p.name.startswith(".")] if root.exists() else []
    assert not [p.name for p in folders if _NUMBERED.search(p.name)], "a folder was made twice"
    links = [identity(p) for p in folders]
    assert len(links) == len(set(links)), "two folders for one message"


def assert_folders_once(
    tmp_path: Path, mails: list[Mail], root: Path | None = None, maildir: Path | None = None
) -> None:
    """Each message with files has one folder, naming its .eml, holding exactly its files."""
    root = root or default_root(tmp_path)
    entries = list(root.iterdir()) if root.exists() else []
    assert not [e.name for e in entries if e.name.startswith(".partial-")], "partial folder left"
    stored = identities(tmp_path, maildir)
    folders: dict[bytes, Path] = {}
    for entry in entries:
        assert entry.is_dir(), f"{entry.name} is not a folder"
        assert not _NUMBERED.search(entry.name), f"folder made twice: {entry.name}"
        eml = stored.get(identity(entry))
        assert eml is not None, f"{entry.name} names no stored .eml"
        content = eml.read_bytes()
        assert (entry / "message.eml").read_bytes() == content, entry.name
        assert content not in folders, f"two folders for one message: {entry.name}"
        folders[content] = entry
    with_files = {m.stored: m for m in mails if m.files}
    assert set(folders) == set(with_files), "a message has no folder, or one without files has"
    for content, folder in folders.items():
        held = {
            p.name: p.read_bytes()
            for p in folder.iterdir()
            if p.name not in ("message.eml", MARKER_FILE)
        }
        assert held == with_files[content].files, f"{folder.name} holds the wrong files"


def assert_index_matches(tmp_path: Path, maildir: Path | None = None) -> None:
    """The state records each stored message with the folder it really has."""
    data = tmp_path / "data"
    db = State.open_readonly(data / "state.sqlite3")
    try:
        rows = db.listing("work")
    finally:
        db.close()
    on_disk = {
        os.path.relpath(p, data) if p.is_relative_to(data) else str(p)
        for p in stored_files(tmp_path, maildir)
    }
    assert {r.path for r in rows} == on_disk, "the state and the Maildir disagree"
    stored = identities(tmp_path, maildir)
    for row in rows:
        assert row.path is not None
        if row.folder is None:
            continue
        assert stored.get(identity(data / row.folder)) == data / row.path, row.folder


def assert_exactly_once(
    tmp_path: Path,
    dovecot: Dovecot,
    mails: list[Mail],
    *,
    deleted: bool = True,
    root: Path | None = None,
    maildir: Path | None = None,
) -> None:
    contents = [p.read_bytes() for p in stored_files(tmp_path, maildir)]
    assert_no_duplicates(tmp_path, root, maildir)
    assert sorted(contents) == sorted(m.stored for m in mails), "a message missing or incomplete"
    assert list((maildir or tmp_path / "data" / "work" / "Maildir").joinpath("tmp").iterdir()) == []
    assert_folders_once(tmp_path, mails, root, maildir)
    assert_index_matches(tmp_path, maildir)
    left = sorted(p.read_bytes() for p in dovecot.messages("alice"))
    assert left == ([] if deleted else sorted(m.raw for m in mails))


def finish_and_check(
    config: Path,
    tmp_path: Path,
    dovecot: Dovecot,
    mails: list[Mail],
    *,
    delete: bool,
    root: Path | None = None,
    maildir: Path | None = None,
) -> None:
    """A clean run completes the work; with deletion off, one more run stores nothing new."""
    final = fetch(config)
    assert final.returncode == 0, final.stderr.decode()[-2000:]
    assert_exactly_once(tmp_path, dovecot, mails, deleted=delete, root=root, maildir=maildir)
    if not delete:
        before = sorted(p.name for p in stored_files(tmp_path, maildir))
        again = fetch(config)
        assert again.returncode == 0, again.stderr.decode()[-2000:]
        assert sorted(p.name for p in stored_files(tmp_path, maildir)) == before, "stored again"
        assert_exactly_once(tmp_path, dovecot, mails, deleted=False, root=root, maildir=maildir)


# Each step boundary of the durability order (see fetchd.poll), in order. Six
# batches of 20; messages 0, 5, 10 ... have files, so extract's calls 1, 6, 11
# ... and every publish call are extractions that write a folder.
INJECTION_POINTS = [
    ("fetchd.store.maildir:MessageFile.write", "after", 17),  # mid-batch, in tmp/
    ("fetchd.store.durable:sync_files", "after", 2),  # flushed, not renamed
    ("fetchd.store.durable:sync_directory", "after", 3),  # in new/, not recorded
    ("fetchd.store.state:State.record", "before", 2),
    ("fetchd.store.state:State.record", "after", 4),  # recorded, not extracted, no DELE
    ("fetchd.mime.attachments:extract", "before", 6),  # recorded, extraction not begun
    ("fetchd.mime.extraction:_link_or_copy", "after", 2),  # partial folder holds only the link
    ("fetchd.mime.folders:publish", "before", 3),  # partial folder complete, not renamed
    ("fetchd.mime.folders:publish", "after", 4),  # folder in place, not indexed
    ("fetchd.mime.attachments:extract", "after", 11),  # two-file folder in place
    ("fetchd.store.state:State.index_many", "before", 3),  # extracted, not indexed
    ("fetchd.store.state:State.index_many", "after", 2),  # indexed, next batch not begun
    ("fetchd.poll:_dele", "before", 1),  # everything recorded, no DELE
    ("fetchd.poll:_dele", "after", 1),  # DELE sent, no QUIT
    ("fetchd.pop3.client:Session.quit", "before", 1),
    ("fetchd.pop3.client:Session.quit", "after", 1),  # QUIT done, state not updated
    ("fetchd.store.state:State.mark_gone", "before", 1),
    ("fetchd.store.state:State.mark_gone", "after", 1),  # gone recorded, summary not logged
]


#: After the poll was recorded, before its hooks run or with their starts counted:
#: still exactly once, the killed poll's on_poll included.
HOOK_POINTS = [
    ("fetchd.store.state:State.record_poll", "after", 1),
    ("fetchd.hooks:run_pending", "before", 1),
    ("fetchd.store.state:State.start_hooks", "after", 1),
]


def hooks_config(tmp_path: Path) -> str:
    """on_message and on_attachment hooks that append one line per run to hooks.log."""
    log = tmp_path / "hooks.log"
    line = 'printf "%s %s %s\\n" "$FETCHD_HOOK" "$FETCHD_MESSAGE_ID" "${FETCHD_ATTACHMENT##*/}"'
    return (
        f'on_message = ["sh", "-c", \'{line} >> "$0"\', "{log}"]\n'
        f'on_attachment = ["sh", "-c", \'{line} >> "$0"\', "{log}"]\n'
    )


def on_poll_config(tmp_path: Path) -> str:
    """An on_poll hook that appends one line per run to polls.log."""
    log = tmp_path / "polls.log"
    line = 'printf "%s %s\\n" "$FETCHD_HOOK" "$FETCHD_OUTCOME"'
    return f'on_poll = ["sh", "-c", \'{line} >> "$0"\', "{log}"]'


def assert_on_poll_per_poll(tmp_path: Path, polls: int) -> None:
    """on_poll ran once for each recorded poll: ``polls`` of them, all of them ok."""
    log = tmp_path / "polls.log"
    ran = log.read_text().splitlines() if log.exists() else []
    assert ran == ["on_poll ok"] * polls


def assert_hooks_once(tmp_path: Path, mails: list[Mail]) -> None:
    """Each message's on_message, and on_attachment per file, ran exactly once."""
    log = tmp_path / "hooks.log"
    ran = sorted(log.read_text().splitlines()) if log.exists() else []
    expected = []
    for mail in mails:
        message_id = message_from_bytes(mail.raw)["Message-ID"]
        expected.append(f"on_message {message_id} ")
        expected.extend(f"on_attachment {message_id} {name}" for name in mail.files)
    assert ran == sorted(expected)


@pytest.mark.parametrize("delete", [True, False], ids=["delete", "keep"])
@pytest.mark.parametrize(("target", "when", "nth"), INJECTION_POINTS + HOOK_POINTS)
def test_kill_at_injected_point(
    tmp_path: Path,
    dovecot_alice: Dovecot,
    mailbox: list[Mail],
    target: str,
    when: str,
    nth: int,
    delete: bool,
) -> None:
    config = write_config(
        tmp_path,
        dovecot_alice,
        hooks_config(tmp_path),
        delete=delete,
        daemon=on_poll_config(tmp_path),
    )
    crashed = inject(config, target, when, nth)
    # Killed, so the point was reached: not a clean exit, not an error.
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr.decode()[-2000:]
    assert_no_duplicates(tmp_path)
    finish_and_check(config, tmp_path, dovecot_alice, mailbox, delete=delete)
    assert_hooks_once(tmp_path, mailbox)
    # Each clean run's poll, and the killed one if it was recorded before the kill.
    recorded = (target, when, nth) in HOOK_POINTS
    assert_on_poll_per_poll(tmp_path, int(recorded) + (1 if delete else 2))


def kill_at_instants(
    config: Path, delays: Sequence[float], tmp_path: Path, root: Path | None = None
) -> int:
    """A fetch per delay, SIGKILLed after it unless done; the store is checked
    for duplicates after each (``assert_no_duplicates``). Returns how many were killed."""
    kills = 0
    for delay in delays:
        process = subprocess.Popen(
            [sys.executable, "-c", INJECTOR, str(config), "-", "never", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            kills += 1
        process.wait()
        assert_no_duplicates(tmp_path, root)
    return kills


@pytest.mark.parametrize("delete", [True, False], ids=["delete", "keep"])
def test_kill_at_timed_instants(
    tmp_path: Path, dovecot_alice: Dovecot, mailbox: list[Mail], delete: bool
) -> None:
    config = write_config(tmp_path, dovecot_alice, delete=delete)
    # Each interrupted run must already hold a duplicate-free store.
    kills = kill_at_instants(config, (0.3, 0.45, 0.6, 0.75, 0.9, 1.2), tmp_path)
    assert kills > 0
    finish_and_check(config, tmp_path, dovecot_alice, mailbox, delete=delete)


# -- attachments on another filesystem: message.eml is a copy, known by its marker

#: Where extraction goes when the attachment folders are on another filesystem.
OTHER_DISK_POINTS = [
    ("fetchd.mime.attachments:extract", "before", 6),
    ("fetchd.mime.extraction:_link_or_copy", "after", 2),  # copy and marker, no attachment
    ("fetchd.mime.folders:write_marker", "before", 3),  # copy without its marker yet
    ("fetchd.mime.folders:publish", "before", 3),
    ("fetchd.mime.folders:publish", "after", 4),  # folder in place, not indexed
    ("fetchd.mime.attachments:extract", "after", 11),
    ("fetchd.store.state:State.index_many", "before", 3),
]


@pytest.fixture
def other_disk(tmp_path: Path) -> Iterator[Path]:
    """A folder on another filesystem than tmp_path: tmpfs /dev/shm."""
    if os.stat("/dev/shm").st_dev == tmp_path.stat().st_dev:
        pytest.fail("/dev/shm is on the same filesystem as tmp_path")
    path = Path(tempfile.mkdtemp(prefix="fetchd-crash-", dir="/dev/shm"))
    yield path / "attachments"
    shutil.rmtree(path)


@pytest.mark.parametrize("delete", [True, False], ids=["delete", "keep"])
@pytest.mark.parametrize(("target", "when", "nth"), OTHER_DISK_POINTS)
def test_kill_with_attachments_on_another_filesystem(
    tmp_path: Path,
    dovecot_alice: Dovecot,
    mailbox: list[Mail],
    other_disk: Path,
    target: str,
    when: str,
    nth: int,
    delete: bool,
) -> None:
    extra = f'attachments_dir = "{other_disk}"\n'
    config = write_config(tmp_path, dovecot_alice, extra, delete=delete)
    crashed = inject(config, target, when, nth)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr.decode()[-2000:]
    assert_no_duplicates(tmp_path, other_disk)
    finish_and_check(config, tmp_path, dovecot_alice, mailbox, delete=delete, root=other_disk)
    assert (tmp_path / "data" / "work" / "attachments").exists() is False
    assert all((folder / MARKER_FILE).exists() for folder in other_disk.iterdir())


def test_kill_at_timed_instants_with_attachments_on_another_filesystem(
    tmp_path: Path, dovecot_alice: Dovecot, mailbox: list[Mail], other_disk: Path
) -> None:
    config = write_config(tmp_path, dovecot_alice, f'attachments_dir = "{other_disk}"\n')
    kill_at_instants(config, (0.3, 0.5, 0.7, 0.9), tmp_path, other_disk)
    finish_and_check(config, tmp_path, dovecot_alice, mailbox, delete=True, root=other_disk)


# -- mail too big to fetch: only its headers are stored, and it stays on the server

OVERSIZED = 'max_message_size = "20 KB"\nfetch_oversized = "headers"\n'


@pytest.fixture
def mixed_sizes(dovecot_alice: Dovecot) -> tuple[list[bytes], list[bytes]]:
    """60 small messages and, among them, 4 too big to fetch."""
    small = [
        make_message(f"small {i}", f"body {i}\n", message_id=f"<s-{i}@test>") for i in range(60)
    ]
    big = [make_message(f"big {i}", "y" * 40_000, message_id=f"<b-{i}@test>") for i in range(4)]
    mixed = small[:15] + big[:1] + small[15:30] + big[1:3] + small[30:] + big[3:]
    dovecot_alice.deliver_many("alice", mixed)
    return small, big


def assert_big_ones_kept(
    tmp_path: Path, dovecot: Dovecot, small: list[bytes], big: list[bytes]
) -> None:
    """Small mail stored once and gone; big mail on the server, its headers stored once."""
    maildir = tmp_path / "data" / "work" / "Maildir"
    files = [p for sub in ("new", "cur") for p in (maildir / sub).iterdir()]
    whole = [p.read_bytes() for p in files if ",FD=" in p.name]
    headers = [p.read_bytes() for p in files if ",FH=" in p.name]
    assert sorted(whole) == sorted(m.replace(b"\r\n", b"\n") for m in small)
    header_ids = sorted(str(message_from_bytes(h)["Message-ID"]) for h in headers)
    assert header_ids == sorted(f"<b-{i}@test>" for i in range(len(big)))
    assert all(b"yyyy" not in h for h in headers)
    left = sorted(p.read_bytes() for p in dovecot.messages("alice"))
    assert left == sorted(big), "a message fetched as headers only was deleted on the server"


@pytest.mark.parametrize(
    ("target", "when", "nth"),
    [
        ("fetchd.store.durable:sync_directory", "after", 1),  # headers in new/, not recorded
        ("fetchd.store.state:State.record", "before", 2),
        ("fetchd.store.state:State.record", "after", 2),
        ("fetchd.poll:_dele", "after", 1),
        ("fetchd.store.state:State.mark_gone", "before", 1),
    ],
)
def test_kill_with_oversized_mail_never_deletes_it(
    tmp_path: Path,
    dovecot_alice: Dovecot,
    mixed_sizes: tuple[list[bytes], list[bytes]],
    target: str,
    when: str,
    nth: int,
) -> None:
    config = write_config(tmp_path, dovecot_alice, OVERSIZED)
    crashed = inject(config, target, when, nth)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr.decode()[-2000:]
    for _ in range(2):  # the second run must change nothing
        final = fetch(config)
        assert final.returncode == 0, final.stderr.decode()[-2000:]
    assert_big_ones_kept(tmp_path, dovecot_alice, *mixed_sizes)


def test_lost_state_never_deletes_mail_stored_as_headers(
    tmp_path: Path, dovecot_alice: Dovecot, mixed_sizes: tuple[list[bytes], list[bytes]]
) -> None:
    config = write_config(tmp_path, dovecot_alice, OVERSIZED)
    assert fetch(config).returncode == 0
    for path in (tmp_path / "data").glob("state.sqlite3*"):
        path.unlink()
    again = fetch(config)
    assert again.returncode == 0, again.stderr.decode()[-2000:]
    assert_big_ones_kept(tmp_path, dovecot_alice, *mixed_sizes)


# -- delivering elsewhere: a shared Maildir, an MDA command, an LMTP server
#
# Mail goes into bob's mailbox of the same Dovecot (through dovecot-lda or its
# LMTP server), or into a Maildir++ folder fetchd creates. After the kill and a
# clean run every message is in the destination exactly once; only a kill right
# after the destination confirmed a message, before fetchd recorded it (the one
# window no order closes, see fetchd.poll), may leave that one message twice.


@pytest.fixture
def bob(dovecot_alice: Dovecot) -> Dovecot:
    dovecot_alice.reset("bob")
    return dovecot_alice


def destination_keys(dovecot: Dovecot, kind: str) -> str:
    """The account keys that send the mail to ``kind`` ("mda" or "lmtp"), into bob's mailbox."""
    if kind == "mda":
        return f"mda = {json.dumps(dovecot.lda_command('bob'))}\n"
    return f'lmtp = "unix:{dovecot.lmtp_socket}"\nlmtp_recipient = "bob"\n'


def delivered_counts(dovecot: Dovecot) -> Counter[str]:
    """How often each Message-ID is in bob's mailbox."""
    return Counter(
        str(message_from_bytes(p.read_bytes())["Message-ID"]) for p in dovecot.messages("bob")
    )


def assert_delivered(dovecot: Dovecot, mails: list[Mail], *, window: bool) -> None:
    """Each message in bob's mailbox once; in the window, one of them at most twice."""
    counts = delivered_counts(dovecot)
    expected = {str(message_from_bytes(m.raw)["Message-ID"]) for m in mails}
    assert set(counts) == expected, "a message was never delivered"
    twice = [mid for mid, n in counts.items() if n > 1]
    if window:
        assert len(twice) <= 1, f"more than the message in flight delivered twice: {twice}"
        assert max(counts.values()) <= 2
    else:
        assert twice == [], f"delivered twice: {twice}"


def assert_no_double_delivery(dovecot: Dovecot) -> None:
    twice = [mid for mid, n in delivered_counts(dovecot).items() if n > 1]
    assert twice == [], f"delivered twice right after the kill: {twice}"


# Batches of 20 with one journal row each and one record per message handed over.
HANDOFF_POINTS = [
    ("fetchd.store.durable:sync_directory", "after", 3),  # copies kept, not handed over
    ("fetchd.store.state:State.begin_handoffs", "after", 2),  # journal open, nothing sent
    ("fetchd.store.state:State.record", "before", 25),  # confirmed, not recorded: the window
    ("fetchd.store.state:State.record", "after", 25),  # recorded, next not sent
    ("fetchd.mime.attachments:extract", "before", 6),  # handed over, recorded, not extracted
    ("fetchd.poll:_dele", "after", 1),  # DELE sent, no QUIT
]
#: The hand-off itself: killed as it begins (nothing sent), and as it returns (the window).
SEND = {"mda": "fetchd.store.mda:Mda.send", "lmtp": "fetchd.store.lmtp:_transaction"}


def _handoff_cases() -> list[Any]:
    cases = []
    for kind in ("mda", "lmtp"):
        points = list(HANDOFF_POINTS)
        points += [(SEND[kind], "before", 25), (SEND[kind], "after", 25)]
        for target, when, nth in points:
            label = f"{kind}-{target.rpartition(':')[2]}-{when}-{nth}"
            cases.append(pytest.param(kind, target, when, nth, id=label))
    return cases


@pytest.mark.parametrize(("kind", "target", "when", "nth"), _handoff_cases())
def test_kill_around_the_hand_off(
    tmp_path: Path,
    bob: Dovecot,
    mailbox: list[Mail],
    kind: str,
    target: str,
    when: str,
    nth: int,
) -> None:
    window = (target, when) in (
        (SEND[kind], "after"),
        ("fetchd.store.state:State.record", "before"),
    )
    config = write_config(tmp_path, bob, destination_keys(bob, kind))
    crashed = inject(config, target, when, nth)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr.decode()[-2000:]
    assert_no_double_delivery(bob)
    assert_no_duplicates(tmp_path)
    # fetchd's own copies, folders and index: exactly once; the server emptied.
    finish_and_check(config, tmp_path, bob, mailbox, delete=True)
    assert_delivered(bob, mailbox, window=window)


@pytest.mark.parametrize("kind", ["mda", "lmtp"])
def test_kill_around_the_hand_off_keeping_mail(
    tmp_path: Path, bob: Dovecot, mailbox: list[Mail], kind: str
) -> None:
    """Deletion off: after the window's kill, two more runs deliver nothing more."""
    config = write_config(tmp_path, bob, destination_keys(bob, kind), delete=False)
    crashed = inject(config, SEND[kind], "after", 25)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr.decode()[-2000:]
    finish_and_check(config, tmp_path, bob, mailbox, delete=False)
    assert_delivered(bob, mailbox, window=True)


def test_kill_at_timed_instants_with_an_mda(
    tmp_path: Path, bob: Dovecot, mailbox: list[Mail]
) -> None:
    config = write_config(tmp_path, bob, destination_keys(bob, "mda"))
    kill_at_instants(config, (0.5, 0.9, 1.3, 1.8), tmp_path)
    finish_and_check(config, tmp_path, bob, mailbox, delete=True)
    # A timed kill may land in the window once per run: each at most twice, and
    # no more messages twice than there were kills.
    counts = delivered_counts(bob)
    assert set(counts) == {str(message_from_bytes(m.raw)["Message-ID"]) for m in mailbox}
    assert max(counts.values()) <= 2
    assert sum(n - 1 for n in counts.values()) <= 4


# A Maildir++ folder fetchd creates, which others may share: every Maildir point.
FOREIGN_POINTS = [
    ("fetchd.store.maildir:MessageFile.write", "after", 17),
    ("fetchd.store.durable:sync_files", "after", 2),
    ("fetchd.store.durable:sync_directory", "after", 3),
    ("fetchd.store.state:State.record", "before", 2),
    ("fetchd.store.state:State.record", "after", 4),
    ("fetchd.mime.attachments:extract", "before", 6),
    ("fetchd.mime.folders:publish", "after", 4),
    ("fetchd.poll:_dele", "after", 1),
]


@pytest.mark.parametrize(
    ("target", "when", "nth", "delete"),
    [(*point, True) for point in FOREIGN_POINTS]
    + [(*FOREIGN_POINTS[2], False), (*FOREIGN_POINTS[4], False)],
)
def test_kill_delivering_into_a_shared_maildir(
    tmp_path: Path,
    dovecot_alice: Dovecot,
    mailbox: list[Mail],
    target: str,
    when: str,
    nth: int,
    delete: bool,
) -> None:
    shared = tmp_path / "home" / "Maildir" / ".Work"
    config = write_config(tmp_path, dovecot_alice, f'maildir = "{shared}"\n', delete=delete)
    crashed = inject(config, target, when, nth)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr.decode()[-2000:]
    assert_no_duplicates(tmp_path, maildir=shared)
    finish_and_check(config, tmp_path, dovecot_alice, mailbox, delete=delete, maildir=shared)
    assert not (tmp_path / "data" / "work" / "Maildir").exists()
    assert all(".eml" not in p.name for p in stored_files(tmp_path, shared))
