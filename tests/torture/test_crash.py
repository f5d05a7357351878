"""Crash safety: kill -9 at any instant loses nothing and stores nothing twice.

Each test runs ``fetchd fetch`` as a real process against Dovecot with
delete_after_fetch on, kills it (at chosen points, by fault injection, or at
timed instants), then lets a clean run finish, and checks that every message
is in the Maildir exactly once, complete, and gone from the server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from email import message_from_bytes
from pathlib import Path

import pytest

from fetchd.testing.dovecot import Dovecot
from tests.messages import make_message

COUNT = 300

# Runs fetchd in-process after patching one step to SIGKILL the process:
# argv: config, "module:Class.method" or "module:function", before|after, nth call.
INJECTOR = textwrap.dedent(
    """
    import importlib, os, signal, sys
    import fetchd.poll
    fetchd.poll.BATCH_MESSAGES = 40
    config, target, when, nth = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    module_name, _, attr = target.partition(":")
    owner = importlib.import_module(module_name)
    *path, name = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, name)
    calls = [0]
    def die():
        os.kill(os.getpid(), signal.SIGKILL)
    def patched(*args, **kwargs):
        calls[0] += 1
        if when == "before" and calls[0] == nth:
            die()
        result = original(*args, **kwargs)
        if when == "after" and calls[0] == nth:
            die()
        return result
    setattr(owner, name, patched)
    from fetchd.cli import main
    sys.exit(main(["-c", config, "fetch"]))
    """
)


@pytest.fixture
def mailbox(dovecot_alice: Dovecot) -> list[bytes]:
    messages = [
        make_message(f"crash {i}", f"body {i}\n" * 30, message_id=f"<crash-{i}@test>")
        for i in range(COUNT)
    ]
    dovecot_alice.deliver_many("alice", messages)
    return messages


def write_config(tmp_path: Path, dovecot: Dovecot, extra: str = "") -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [daemon]
            data_dir = "{tmp_path / "data"}"
            transcript = false
            log_level = "warning"
            [accounts.work]
            host = "127.0.0.1"
            port = {dovecot.pop3_port}
            security = "plain"
            username = "alice"
            password = "secret"
            delete_after_fetch = true
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


def assert_exactly_once(tmp_path: Path, dovecot: Dovecot, messages: list[bytes]) -> None:
    maildir = tmp_path / "data" / "work" / "Maildir"
    files = [p for sub in ("new", "cur") for p in (maildir / sub).iterdir()]
    contents = [p.read_bytes() for p in files]
    ids = [message_from_bytes(c)["Message-ID"] for c in contents]
    assert len(ids) == len(set(ids)), "a message was stored twice"
    expected = {m.replace(b"\r\n", b"\n") for m in messages}
    assert set(contents) == expected, "a message is missing or incomplete"
    assert list((maildir / "tmp").iterdir()) == []
    assert dovecot.messages("alice") == []


INJECTION_POINTS = [
    ("fetchd.store.maildir:MessageFile.write", "after", 17),  # mid-batch, in tmp/
    ("fetchd.store.durable:sync_files", "after", 2),  # flushed, not renamed
    ("fetchd.store.durable:sync_directory", "after", 3),  # in new/, not recorded
    ("fetchd.store.state:State.record", "before", 2),
    ("fetchd.store.state:State.record", "after", 4),  # recorded, no DELE yet
    ("fetchd.poll:_dele", "after", 1),  # DELE sent, no QUIT
    ("fetchd.pop3.client:Session.quit", "before", 1),
    ("fetchd.store.state:State.mark_gone", "before", 1),  # QUIT done, state not updated
    ("fetchd.store.state:State.index_many", "before", 3),  # recorded, not extracted
]


@pytest.mark.parametrize(("target", "when", "nth"), INJECTION_POINTS)
def test_kill_at_injected_point(
    tmp_path: Path,
    dovecot_alice: Dovecot,
    mailbox: list[bytes],
    target: str,
    when: str,
    nth: int,
) -> None:
    config = write_config(tmp_path, dovecot_alice)
    crashed = subprocess.run(
        [sys.executable, "-c", INJECTOR, str(config), target, when, str(nth)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr.decode()[-2000:]
    final = fetch(config)
    assert final.returncode == 0, final.stderr.decode()[-2000:]
    assert_exactly_once(tmp_path, dovecot_alice, mailbox)


def test_kill_at_timed_instants(
    tmp_path: Path, dovecot_alice: Dovecot, mailbox: list[bytes]
) -> None:
    config = write_config(tmp_path, dovecot_alice)
    kills = 0
    for delay in (0.05, 0.15, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.8):
        process = subprocess.Popen(
            [sys.executable, "-m", "fetchd", "-c", str(config), "fetch"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            kills += 1
        process.wait()
        # Each interrupted run must already hold a consistent, duplicate-free store.
        maildir = tmp_path / "data" / "work" / "Maildir" / "new"
        if maildir.exists():
            ids = [message_from_bytes(p.read_bytes())["Message-ID"] for p in maildir.iterdir()]
            assert len(ids) == len(set(ids))
    assert kills > 0
    final = fetch(config)
    assert final.returncode == 0, final.stderr.decode()[-2000:]
    assert_exactly_once(tmp_path, dovecot_alice, mailbox)


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
    crashed = subprocess.run(
        [sys.executable, "-c", INJECTOR, str(config), target, when, str(nth)],
        capture_output=True,
        timeout=120,
        check=False,
    )
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
