"""Who may read what a poll writes: modes and groups, whatever the umask.

Sharing is tested with the process's own group, so these run without root;
tests/torture/test_sharing_users.py reads the tree as real other users.
"""

from __future__ import annotations

import contextlib
import grp
import io
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fetchd.access import Access
from fetchd.cli import main
from fetchd.errors import StorageError
from fetchd.mime.folders import MARKER_FILE, MESSAGE_FILE
from fetchd.poll import poll_account
from fetchd.store.state import State, state_path
from fetchd.testing.dovecot import Dovecot
from tests.accounts import account
from tests.messages import make_message

OWN_GROUP = grp.getgrgid(os.getegid()).gr_name
FILES = [
    ("report.pdf", b"%PDF-1.4 " * 300, "application/pdf"),
    ("photo.jpg", bytes(range(256)) * 40, "image/jpeg"),
]


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def tree(root: Path) -> Iterator[Path]:
    """``root`` and everything under it."""
    yield root
    for directory, subdirs, files in os.walk(root):
        for name in [*subdirs, *files]:
            yield Path(directory) / name


@pytest.fixture
def mailbox(dovecot_alice: Dovecot) -> Dovecot:
    dovecot_alice.deliver_many(
        "alice",
        [make_message("plain"), make_message("with files", attachments=FILES)],
    )
    return dovecot_alice


@pytest.fixture
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    value: int = request.param
    old = os.umask(value)
    yield value
    os.umask(old)


@pytest.fixture
def other_disk() -> Iterator[Path]:
    """A folder on another filesystem than the tests' tmp_path (tmpfs /dev/shm)."""
    if os.stat("/dev/shm").st_dev == os.stat(tempfile.gettempdir()).st_dev:
        pytest.fail("/dev/shm is on the same filesystem as the temporary folder")
    path = Path(tempfile.mkdtemp(prefix="fetchd-test-", dir="/dev/shm"))
    yield path
    shutil.rmtree(path)


def poll(port: int, data_dir: Path, **settings: object) -> None:
    state = State(state_path(data_dir))
    try:
        result = poll_account(account(port, **settings), data_dir, state)
        assert_state_private(data_dir)  # while open: with its -wal and -shm files
    finally:
        state.close()
    recovered = "stored before an interruption were recorded"
    assert [w for w in result.warnings if recovered not in w] == []


def assert_state_private(data_dir: Path) -> None:
    for name in ("state.sqlite3", "state.sqlite3-wal", "state.sqlite3-shm", "work/.lock"):
        assert mode(data_dir / name) == 0o600, name


@pytest.mark.parametrize("umask", [0, 0o077], indirect=True)
def test_without_share_group_everything_is_private(
    mailbox: Dovecot, data_dir: Path, umask: int
) -> None:
    poll(mailbox.pop3_port, data_dir)
    assert mode(data_dir) == 0o700
    account_dir = data_dir / "work"
    written = list(tree(account_dir))
    assert len([p for p in written if p.name == "report.pdf"]) == 1
    for path in written:
        assert mode(path) == (0o700 if path.is_dir() else 0o600), path


@pytest.mark.parametrize("umask", [0, 0o077], indirect=True)
def test_share_group_gives_the_mail_and_attachments_to_the_group(
    mailbox: Dovecot, data_dir: Path, umask: int
) -> None:
    poll(mailbox.pop3_port, data_dir, share_group=OWN_GROUP)
    assert mode(data_dir) == 0o710  # the group may pass through, not list
    account_dir = data_dir / "work"
    messages = list((account_dir / "Maildir" / "new").iterdir())
    assert len(messages) == 2
    for path in tree(account_dir):
        if path.name == ".lock":
            continue
        assert os.lstat(path).st_gid == os.getegid(), path
        assert mode(path) == (0o2750 if path.is_dir() else 0o640), path


def test_turning_sharing_on_and_off_brings_what_was_written_along(
    mailbox: Dovecot, data_dir: Path
) -> None:
    poll(mailbox.pop3_port, data_dir)
    account_dir = data_dir / "work"
    mailbox.deliver_many("alice", [make_message("later", attachments=FILES[:1])])
    poll(mailbox.pop3_port, data_dir, share_group=OWN_GROUP)
    shared = [p for p in tree(account_dir) if p.name != ".lock"]
    assert len([p for p in shared if p.name == "report.pdf"]) == 2
    assert {mode(p) for p in shared if p.is_file()} == {0o640}
    assert {mode(p) for p in shared if p.is_dir()} == {0o2750}
    poll(mailbox.pop3_port, data_dir, share_group=False)
    assert {mode(p) for p in tree(account_dir) if p.is_file()} == {0o600}
    assert {mode(p) for p in tree(account_dir) if p.is_dir()} == {0o700}


def test_a_group_that_does_not_exist_is_a_storage_error() -> None:
    with pytest.raises(StorageError, match="no group named 'fetchd-no-such-group'"):
        Access.for_group("fetchd-no-such-group")


def test_a_refused_chown_says_to_join_the_group(other_disk: Path) -> None:
    """Run as a user outside the group (root drops to nobody in a child process)."""
    foreign = next(g for g in grp.getgrall() if g.gr_gid not in {*os.getgroups(), 65534})
    other_disk.chmod(0o777)
    access = Access(foreign.gr_gid, foreign.gr_name)
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        try:
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            access.make_dir(other_disk / "x")
            os.write(writer, b"no error")
        except StorageError as exc:
            os.write(writer, str(exc).encode())
        finally:
            os._exit(0)
    os.close(writer)
    os.waitpid(child, 0)
    with os.fdopen(reader, "rb") as fp:
        said = fp.read().decode()
    assert f"to the group {foreign.gr_name!r} (share_group)" in said
    assert "must be a member of that group" in said


def test_attachments_on_another_filesystem_are_made_once_and_listed(
    mailbox: Dovecot, tmp_path: Path, data_dir: Path, other_disk: Path
) -> None:
    root = other_disk / "work"
    settings = {"attachments_dir": root, "share_group": OWN_GROUP}
    poll(mailbox.pop3_port, data_dir, **settings)
    [folder] = root.iterdir()
    assert sorted(p.name for p in folder.iterdir()) == [
        MARKER_FILE,
        MESSAGE_FILE,
        "photo.jpg",
        "report.pdf",
    ]
    [stored] = [
        p for p in (data_dir / "work/Maildir/new").iterdir() if b"report.pdf" in p.read_bytes()
    ]
    assert (folder / MESSAGE_FILE).read_bytes() == stored.read_bytes()
    assert {mode(p) for p in folder.iterdir()} == {0o640}
    assert mode(folder) == mode(root) == 0o2750

    # The state lost: the messages are recovered, extracted again, and the folder is found.
    for name in ("state.sqlite3", "state.sqlite3-wal", "state.sqlite3-shm"):
        (data_dir / name).unlink(missing_ok=True)
    poll(mailbox.pop3_port, data_dir, **settings)
    assert list(root.iterdir()) == [folder]

    config = tmp_path / "config.toml"
    config.write_text(
        f'[daemon]\ndata_dir = "{data_dir}"\n[accounts.work]\nhost = "127.0.0.1"\n'
        f'port = {mailbox.pop3_port}\nsecurity = "plain"\nusername = "alice"\n'
        f'password_env = "FETCHD_TEST_PASSWORD"\nattachments_dir = "{root}"\n',
        encoding="utf-8",
    )
    listed = list_json(config)
    [row] = [r for r in listed if r["attachments"]]
    assert row["folder"] == str(folder)
    assert sorted(row["attachments"]) == [str(folder / "photo.jpg"), str(folder / "report.pdf")]


def test_a_moved_message_keeps_its_folder_on_another_filesystem(
    mailbox: Dovecot, data_dir: Path, other_disk: Path
) -> None:
    """A mail client moves new/ to cur/ and appends flags; the marker still names it."""
    poll(mailbox.pop3_port, data_dir, attachments_dir=other_disk)
    maildir = data_dir / "work" / "Maildir"
    for path in (maildir / "new").iterdir():
        path.rename(maildir / "cur" / f"{path.name}:2,S")
    for name in ("state.sqlite3", "state.sqlite3-wal", "state.sqlite3-shm"):
        (data_dir / name).unlink(missing_ok=True)
    poll(mailbox.pop3_port, data_dir, attachments_dir=other_disk)
    assert len(list(other_disk.iterdir())) == 1


def list_json(config: Path) -> list[dict[str, object]]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["-c", str(config), "list", "--json"]) == 0
    return [json.loads(line) for line in out.getvalue().splitlines()]
