"""``fetchd run`` as a real process against Dovecot: polling, reload, stop, backoff, systemd."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fetchd.testing.dovecot import Dovecot
from tests.daemon.conftest import (
    DaemonProcess,
    NotifySocket,
    account_toml,
    cli,
    environment,
    write_config,
)
from tests.messages import make_large_message, make_message

StartDaemon = Callable[..., DaemonProcess]


def maildir_files(config: Path, account: str, sub: str = "new") -> list[Path]:
    directory = config.parent / "data" / account / "Maildir" / sub
    return sorted(directory.iterdir()) if directory.is_dir() else []


def wait_until(condition: Callable[[], bool], timeout: float = 15, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.05)


def status_json(config: Path, code: int = 0) -> dict[str, dict[str, object]]:
    """``fetchd status --json`` by account; ``code``: its exit status (1: a poll failed)."""
    done = cli(config, "status", "--json")
    assert done.returncode == code, done.stderr
    return {entry["account"]: entry for entry in json.loads(done.stdout)["accounts"]}


def test_new_mail_is_fetched_and_systemd_hears_about_it(
    dovecot_alice: Dovecot,
    workdir: Path,
    notify_socket: NotifySocket,
    start_daemon: StartDaemon,
) -> None:
    config = write_config(workdir / "config.toml", account_toml("work", dovecot_alice, "alice"))
    dovecot_alice.deliver("alice", make_message("before start"))
    daemon = start_daemon(config, NOTIFY_SOCKET=str(notify_socket.path), WATCHDOG_USEC="1000000")
    notify_socket.wait_for(lambda m: "READY=1" in m.splitlines())
    wait_until(lambda: len(maildir_files(config, "work")) == 1, what="the first message")

    dovecot_alice.deliver("alice", make_message("while running"))
    wait_until(lambda: len(maildir_files(config, "work")) == 2, what="the second message")
    status = notify_socket.wait_for(lambda m: "2 fetched today" in m)
    assert status.startswith("STATUS=1 account; last poll ")
    assert " work ok" in status
    notify_socket.wait_for(lambda m: m == "WATCHDOG=1")
    running = status_json(config)["work"]
    assert running["outcome"] == "ok"
    assert running["next_poll"] is not None

    code, seconds = daemon.stop()
    assert (code, seconds < 10) == (0, True), daemon.log_text()
    notify_socket.wait_for(lambda m: m == "STOPPING=1", timeout=1)
    stopped = status_json(config)["work"]
    assert stopped["fetched_total"] == 2
    assert stopped["fetched_today"] == 2
    assert stopped["failures"] == 0
    assert stopped["next_poll"] is None
    # Every poll event carries the account, and nothing was fetched twice.
    polls = daemon.matching("poll")
    assert polls
    assert all(event["account"] == "work" for event in polls)
    assert sum(event["stored"] for event in polls) == 2


def test_sighup_adds_and_drops_accounts_and_survives_a_broken_config(
    dovecot_both: Dovecot,
    workdir: Path,
    notify_socket: NotifySocket,
    start_daemon: StartDaemon,
) -> None:
    config = write_config(workdir / "config.toml", account_toml("a", dovecot_both, "alice"))
    daemon = start_daemon(config, NOTIFY_SOCKET=str(notify_socket.path))
    notify_socket.wait_for(lambda m: "READY=1" in m.splitlines())
    daemon.wait_for_event("poll", "a")

    # Drop "a" from the main file, add "b" as a drop-in the way `account add` does.
    write_config(config, "")
    added = cli(
        config,
        *("account", "add", "b", "--host", "127.0.0.1", "--port", str(dovecot_both.pop3_port)),
        *("--security", "plain", "--user", "bob", "--password-env", "PW_BOB"),
    )
    assert added.returncode == 0, added.stderr
    daemon.signal(signal.SIGHUP)
    reloading = notify_socket.wait_for(lambda m: m.startswith("RELOADING=1"))
    assert reloading.splitlines()[1].startswith("MONOTONIC_USEC=")
    notify_socket.wait_for(lambda m: "READY=1" in m and "1 account;" in m)
    [reloaded] = daemon.wait_for_event("reloaded")
    assert (reloaded["added"], reloaded["removed"], reloaded["changed"]) == (["b"], ["a"], [])

    dovecot_both.deliver("alice", make_message("for the dropped account"))
    dovecot_both.deliver("bob", make_message("for the added account"))
    wait_until(lambda: len(maildir_files(config, "b")) == 1, what="bob's message")

    config.write_text(config.read_text() + "\n[daemon.oops]\n")  # invalid: reload must keep "b"
    daemon.signal(signal.SIGHUP)
    [failed] = daemon.wait_for_event("reload failed; the running configuration stays")
    assert failed["level"] == "error"
    assert "daemon.oops" in failed["error"]
    polls_before = len(daemon.matching("poll", "b"))
    daemon.wait_for_event("poll", "b", count=polls_before + 2)
    assert daemon.stop()[0] == 0
    assert maildir_files(config, "a") == []  # "a" was never polled after the reload


def test_sigterm_during_a_large_fetch_stops_promptly_and_loses_nothing(
    dovecot_alice: Dovecot, workdir: Path, start_daemon: StartDaemon
) -> None:
    messages = {f"big {i}": make_large_message(100_000, subject=f"big {i}") for i in range(300)}
    dovecot_alice.deliver_many("alice", messages.values())
    config = write_config(
        workdir / "config.toml", account_toml("work", dovecot_alice, "alice"), interval="1h"
    )
    daemon = start_daemon(config)
    wait_until(lambda: bool(maildir_files(config, "work", "tmp")), what="the fetch to begin")

    code, seconds = daemon.stop()
    assert code == 0, daemon.log_text()
    assert seconds < 30
    stored = maildir_files(config, "work")
    assert 0 < len(stored) < len(messages), "the stop did not interrupt the fetch"
    assert maildir_files(config, "work", "tmp") == []
    _assert_complete_and_recorded(config, stored, messages)

    done = cli(config, "fetch")
    assert done.returncode == 0, done.stderr
    everything = maildir_files(config, "work")
    assert len(everything) == len(messages)
    _assert_complete_and_recorded(config, everything, messages)


def _assert_complete_and_recorded(
    config: Path, files: list[Path], messages: dict[str, bytes]
) -> None:
    """Each file is one whole message, no subject twice, each recorded path present."""
    subjects = []
    for path in files:
        data = path.read_bytes()
        subject = data.split(b"Subject: ", 1)[1].split(b"\n", 1)[0].decode()
        assert data == messages[subject].replace(b"\r\n", b"\n"), f"{path.name} is incomplete"
        subjects.append(subject)
    assert len(set(subjects)) == len(subjects)
    with sqlite3.connect(config.parent / "data" / "state.sqlite3") as db:
        paths = [p for (p,) in db.execute("SELECT path FROM messages WHERE account = 'work'")]
    assert sorted(config.parent / "data" / p for p in paths) == sorted(files)


def test_failing_accounts_back_off_while_others_keep_fetching(
    dovecot_both: Dovecot, workdir: Path, start_daemon: StartDaemon
) -> None:
    accounts = (
        account_toml("good", dovecot_both, "alice")
        + account_toml("badpass", dovecot_both, "bob").replace("PW_BOB", "PW_WRONG")
        + account_toml("down", dovecot_both, "alice").replace(
            f"port = {dovecot_both.pop3_port}", "port = 1"
        )
    )
    config = write_config(workdir / "config.toml", accounts)
    daemon = DaemonProcess(config, environment(PW_WRONG="not-the-password"))
    try:
        daemon.wait_for_event("poll", "good", count=2)
        dovecot_both.deliver("alice", make_message("still fetching"))
        wait_until(lambda: len(maildir_files(config, "good")) == 1, what="mail for good")
        # Five polls of "good" take four seconds: room for four more attempts on
        # "down" if it were not backed off.
        daemon.wait_for_event("poll", "good", count=5)
        running = status_json(config, code=1)
    finally:
        code, _ = daemon.stop()
    assert code == 0
    # The refused login: logged once at error level, with what to fix, and not retried.
    [refused] = daemon.matching("login refused", "badpass")
    assert refused["level"] == "error"
    assert "fix" in refused
    assert daemon.matching("login still refused", "badpass") == []
    assert running["badpass"]["outcome"] == "auth"
    assert running["badpass"]["failures"] == 1
    next_poll = running["badpass"]["next_poll"]
    assert isinstance(next_poll, str)
    assert _seconds_from_now(next_poll) > 50 * 60
    # The unreachable server: attempts at about 0 and 2 s instead of every second.
    attempts = len(daemon.matching("poll failed; will retry", "down"))
    assert 1 <= attempts <= 3, daemon.log_text()
    assert running["down"]["outcome"] == "network"
    # Meanwhile the good account kept its one-second rhythm.
    assert len(daemon.matching("poll", "good")) >= 5
    assert running["good"]["fetched_total"] == 1
    assert running["good"]["failures"] == 0


def _timestamp(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _seconds_from_now(iso: str) -> float:
    return _timestamp(iso) - time.time()


def _catches(pid: int, signum: signal.Signals) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (``SigCgt`` in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.15, 0.3, 0.6])
def test_sigterm_during_start_up_is_a_clean_exit(
    dovecot_alice: Dovecot, workdir: Path, start_daemon: StartDaemon, delay: float
) -> None:
    """SIGTERM from the first instant fetchd's own code runs: exit 0, never death by signal.

    ``delay`` counts from the moment the handler is in place, which is before the
    heavy imports and the config: with 0 the signal always lands before the first poll.
    """
    config = write_config(workdir / "config.toml", account_toml("work", dovecot_alice, "alice"))
    dovecot_alice.deliver("alice", make_message("not yet"))
    daemon = start_daemon(config)
    pid = daemon.process.pid
    deadline = time.monotonic() + 15
    # A tight loop: the handler comes about 0.2 s before the first poll could.
    while daemon.process.poll() is None and not _catches(pid, signal.SIGTERM):
        assert time.monotonic() < deadline, "fetchd never caught SIGTERM"
        time.sleep(0.001)
    time.sleep(delay)  # the instant under test, not a wait for an event
    code, _ = daemon.stop()
    assert code == 0, daemon.log_text()
    before_start = daemon.matching("stop signal during start-up; exiting before the first poll")
    if delay == 0.0:
        assert before_start, daemon.log_text()
    if before_start:
        assert daemon.matching("daemon started") == []
        assert daemon.matching("poll") == []
        assert maildir_files(config, "work") == []
        assert len(dovecot_alice.messages("alice")) == 1
    else:
        assert daemon.matching("stopped"), daemon.log_text()
