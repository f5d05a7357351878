"""The load record: written apart from the heartbeat, and only when it says something new."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from fetchd.config import Config
from fetchd.daemon import Daemon, service
from fetchd.store.state import Load, State, state_path
from tests.daemon.conftest import RecordingNotifier
from tests.daemon.test_daemon import account, wait_until, write


def recorded_load(config: Config) -> Load | None:
    with contextlib.closing(State(state_path(config.daemon.data_dir))) as state:
        return state.load()


@contextlib.contextmanager
def write_locked(path: Path) -> Iterator[None]:
    """Hold the database's write lock, as a slow writer in another process would."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        yield
        db.execute("ROLLBACK")
    finally:
        db.close()


def pings(notifier: RecordingNotifier) -> int:
    return sum(1 for sent in notifier.sent if sent == ("WATCHDOG=1",))


def test_a_locked_database_never_holds_back_the_watchdog_heartbeat(
    tmp_path: Path, running: Callable[..., Daemon]
) -> None:
    # Port 1 refuses at once; after its first poll the account idles for an hour.
    config = write(tmp_path / "config.toml", account("idle", 1), interval="1h")
    notifier = RecordingNotifier()
    notifier.watchdog_usec = 400_000  # a ping every 0.2 s while the heartbeat is fresh
    with capture_logs() as events:
        running(config, load_period=0.3, notifier=notifier)
        with write_locked(state_path(config.daemon.data_dir)):
            before = pings(notifier)
            time.sleep(1.5)  # the load check is due every 0.3 s: it waits for the lock
            during = pings(notifier) - before
            assert recorded_load(config) is None  # readers go on; the writer waits
            released = time.time()
        wait_until(lambda: recorded_load(config) is not None)
    load = recorded_load(config)
    assert load is not None
    assert load.updated < released  # sampled while the database was locked
    assert during >= 4, notifier.sent
    assert not [e for e in events if "stopped dispatching" in e["event"]]


def test_an_idle_daemon_writes_its_load_record_once_not_every_period(
    tmp_path: Path, running: Callable[..., Daemon]
) -> None:
    config = write(tmp_path / "config.toml", account("idle", 1), interval="1h")
    running(config, load_period=0.1)
    wait_until(lambda: recorded_load(config) is not None)
    first = recorded_load(config)
    time.sleep(1.0)  # ten periods, each keeping up
    assert recorded_load(config) == first


def test_an_unchanged_load_record_is_written_again_once_it_grows_old(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, running: Callable[..., Daemon]
) -> None:
    monkeypatch.setattr(service, "LOAD_REFRESH", 0.5)
    config = write(tmp_path / "config.toml", account("idle", 1), interval="1h")
    running(config, load_period=0.1)
    wait_until(lambda: recorded_load(config) is not None)
    first = recorded_load(config)
    assert first is not None
    wait_until(lambda: recorded_load(config) != first)
    refreshed = recorded_load(config)
    assert refreshed is not None
    assert refreshed.updated - first.updated >= 0.5  # not every period: once it grew old
    assert refreshed.overloaded_since is None
