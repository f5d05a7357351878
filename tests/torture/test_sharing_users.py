"""share_group as real Unix users see it: the group reads everything, nobody else anything.

A session fixture creates a group and two unprivileged users (one in the
group, one outside it) and removes them afterwards, so this needs root, as
CI runs (``.ci/run`` re-executes itself under sudo). A real ``fetchd fetch``
against Dovecot fills a Maildir and an attachments_dir on another
filesystem; then each user, through ``runuser``, walks the tree and reads
every file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fetchd.store.state import State, state_path
from fetchd.testing.dovecot import Dovecot
from tests.messages import make_message

GROUP = "fetchd-t-share"
READER = "fetchd-t-reader"
OUTSIDER = "fetchd-t-outsider"
FILES = [
    ("report.pdf", b"%PDF-1.4 " * 400, "application/pdf"),
    ("photo.jpg", bytes(range(256)) * 50, "image/jpeg"),
]


@dataclass(frozen=True)
class Users:
    group: str
    reader: str
    outsider: str


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=60)


def _remove(users: Users) -> None:
    """Remove what an earlier, interrupted run may have left too."""
    for user in (users.reader, users.outsider):
        subprocess.run(["userdel", user], capture_output=True, check=False, timeout=60)
    subprocess.run(["groupdel", users.group], capture_output=True, check=False, timeout=60)


@pytest.fixture(scope="session")
def unix_users() -> Iterator[Users]:
    if os.geteuid() != 0:
        pytest.skip("creating Unix users needs root (CI runs as root: .ci/run uses sudo)")
    users = Users(GROUP, READER, OUTSIDER)
    _remove(users)
    _run("groupadd", "--system", users.group)
    try:
        for user, groups in ((users.reader, [users.group]), (users.outsider, [])):
            extra = ["--groups", ",".join(groups)] if groups else []
            _run("useradd", "--system", "--no-create-home", "--shell", "/bin/sh", *extra, user)
        yield users
    finally:
        _remove(users)


@pytest.fixture
def base() -> Iterator[Path]:
    """A folder every user may pass through (pytest's own tmp folders are root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="fetchd-share-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.fixture
def other_disk() -> Iterator[Path]:
    """Like ``base``, on another filesystem (tmpfs /dev/shm): no hard links from the Maildir."""
    path = Path(tempfile.mkdtemp(prefix="fetchd-share-", dir="/dev/shm"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def fetch(base: Path, attachments: Path, dovecot: Dovecot) -> Path:
    """Run ``fetchd fetch`` with share_group and attachments_dir set; returns the config."""
    etc = base / "etc"
    etc.mkdir(mode=0o755)
    password = etc / "work.password"
    password.write_text("secret\n", encoding="utf-8")
    password.chmod(0o600)
    config = etc / "config.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [daemon]
            data_dir = "{base / "data"}"
            share_group = "{GROUP}"
            [accounts.work]
            host = "127.0.0.1"
            port = {dovecot.pop3_port}
            security = "plain"
            username = "alice"
            password_file = "{password}"
            attachments_dir = "{attachments}"
            """
        ),
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "fetchd", "-c", str(config), "fetch"],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return config


def files_under(*roots: Path) -> dict[str, str]:
    """Every regular file under ``roots``, path -> SHA-256, as root reads them."""
    found = {}
    for root in roots:
        for directory, _subdirs, names in os.walk(root):
            for name in names:
                path = Path(directory) / name
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def as_user(user: str, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", user, "--", "sh", "-c", script, "sh", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


#: Lists every folder and hashes every file under the arguments, as the user sees them.
WALK = 'find "$@" -type f -exec sha256sum -- {} +'
#: Tries each argument; prints one line per file: "ok PATH" or cat's complaint.
TRY_EACH = 'for f in "$@"; do cat -- "$f" 2>&1 >/dev/null && echo "ok $f"; done'


def assert_refused(tried: subprocess.CompletedProcess[str], count: int) -> None:
    """Each of ``count`` files failed to open with EACCES (cat quotes odd names, hence endswith)."""
    lines = tried.stdout.splitlines()
    assert len(lines) == count, tried.stdout
    assert all(line.endswith(": Permission denied") for line in lines), tried.stdout


def hashes_seen(output: str) -> dict[str, str]:
    pairs = (line.split("  ", 1) for line in output.splitlines())
    return {path: digest for digest, path in pairs}


def test_the_group_reads_every_message_and_attachment_and_nobody_else_anything(
    unix_users: Users, base: Path, other_disk: Path, dovecot_alice: Dovecot
) -> None:
    dovecot_alice.deliver_many(
        "alice",
        [make_message(f"with files {i}", attachments=FILES) for i in range(3)]
        + [make_message("plain")],
    )
    attachments = other_disk / "attachments"
    fetch(base, attachments, dovecot_alice)
    maildir = base / "data" / "work" / "Maildir"
    shared = files_under(maildir, attachments)
    assert len([p for p in shared if p.endswith("/report.pdf")]) == 3
    assert len([p for p in shared if "/Maildir/new/" in p]) == 4
    assert len([p for p in shared if p.endswith("/message.eml")]) == 3

    # The member lists every folder and reads every file, with the same content.
    seen = as_user(unix_users.reader, WALK, str(maildir), str(attachments))
    assert seen.returncode == 0, seen.stderr
    assert hashes_seen(seen.stdout) == shared

    # The outsider: every folder and every file refused.
    refused = as_user(unix_users.outsider, WALK, str(maildir), str(attachments))
    assert refused.returncode != 0
    assert "Permission denied" in refused.stderr
    assert refused.stdout == ""
    assert_refused(as_user(unix_users.outsider, TRY_EACH, *shared), len(shared))

    # Neither reads the password or the state (held open: with its -wal and -shm files).
    state = State(state_path(base / "data"))
    secrets = [base / "etc" / "work.password", state.path]
    secrets += [p for p in (base / "data").iterdir() if p.name.startswith("state.sqlite3-")]
    assert len(secrets) == 4
    for user in (unix_users.reader, unix_users.outsider):
        assert_refused(as_user(user, TRY_EACH, *map(str, secrets)), len(secrets))
        listing = as_user(user, 'ls -- "$1"', str(base / "data"))
        assert listing.returncode != 0, "the data folder may be passed through, not listed"
    state.close()
