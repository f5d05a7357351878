"""Under overload every account is still polled, in turn, and the daemon says so."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

import fetchd.runner
from fetchd.config import load_config
from fetchd.daemon import Daemon
from fetchd.daemon.rotation import LoadMeter, PollThreads, Rotation
from fetchd.poll import PollResult
from fetchd.store.state import State, state_path
from fetchd.testing.server import POP3TestServer
from tests.daemon.test_daemon import account, wait_until, write


def test_the_account_polled_longest_ago_goes_first_and_none_waits_twice() -> None:
    rotation = Rotation()
    assert rotation.offer("b", 2.0)
    assert rotation.offer("a", 1.0)
    assert not rotation.offer("a", 3.0)  # waits already
    assert rotation.take() == ("a", 1.0)  # never polled: the one due first
    assert not rotation.offer("a", 4.0)  # runs
    rotation.done("a")
    assert rotation.offer("a", 0.5)  # due earlier, but polled just now
    assert rotation.offer("c", 3.0)
    rotation.discard("c")  # removed by a reload
    assert rotation.oldest() == ("a", 0.5)
    assert [rotation.take(), rotation.take()] == [("b", 2.0), ("a", 0.5)]
    rotation.close()
    assert rotation.take() is None
    assert not rotation.offer("d", 5.0)


def test_threads_start_only_while_every_one_is_busy() -> None:
    rotation = Rotation()
    release = threading.Event()
    ended: list[str] = []  # the thread of each poll, as it ends

    def poll(name: str, due: float) -> None:
        release.wait(5)
        ended.append(threading.current_thread().name)

    threads = PollThreads(rotation, poll, limit=64, after=ThreadPoolExecutor(1))
    for index in range(3):
        rotation.offer(f"a{index}", 0.0)
        threads.wake()
    wait_until(lambda: rotation.waiting() == 0)
    release.set()
    wait_until(lambda: len(ended) == 3)
    assert len(set(ended)) == 3  # three accounts at once: three threads, never 64
    for index in range(20):  # a free thread takes each
        assert rotation.offer(f"again{index}", 0.0)
        threads.wake()
        wait_until(lambda: rotation.waiting() == 0)
    wait_until(lambda: len(ended) == 23)
    assert len(set(ended)) == 3
    rotation.close()


def test_what_a_poll_leaves_runs_off_its_thread_and_its_account_waits_for_it() -> None:
    rotation = Rotation()
    release = threading.Event()
    polled: list[tuple[str, str]] = []

    def hooks() -> None:
        release.wait(5)

    def poll(name: str, due: float) -> Callable[[], None] | None:
        polled.append((name, threading.current_thread().name))
        return hooks if name == "slow" else None

    threads = PollThreads(rotation, poll, limit=2, after=ThreadPoolExecutor(1))
    rotation.offer("slow", 0.0)
    threads.wake()
    wait_until(lambda: len(polled) == 1)
    rotation.offer("fast", 1.0)
    threads.wake()
    wait_until(lambda: len(polled) == 2)
    # The thread that polled "slow" is free: no second one was started for "fast".
    assert polled[0][1] == polled[1][1]
    assert not rotation.offer("slow", 2.0)  # its hooks still run
    release.set()
    wait_until(lambda: rotation.offer("slow", 3.0))
    threads.wake()
    wait_until(lambda: len(polled) == 3)
    assert [name for name, _ in polled] == ["slow", "fast", "slow"]
    rotation.close()


def test_the_meter_calls_a_period_with_late_polls_overloaded() -> None:
    meter = LoadMeter(configured=600.0, now=0.0)
    for _ in range(30):
        meter.started(waited=0.1, interval=10.0)
    calm = meter.sample(60.0, still_waiting=0.0, interval=10.0)
    assert (calm.overloaded_since, calm.achieved, calm.max_wait) == (None, 30.0, 0.1)
    meter.started(waited=12.0, interval=10.0)
    late = meter.sample(120.0, still_waiting=3.0, interval=10.0)
    assert (late.overloaded_since, late.achieved, late.max_wait) == (120.0, 1.0, 12.0)
    waiting = meter.sample(180.0, still_waiting=15.0, interval=10.0)  # nothing started at all
    assert (waiting.overloaded_since, waiting.achieved, waiting.max_wait) == (120.0, 0.0, 15.0)
    assert meter.sample(240.0, still_waiting=0.0, interval=10.0).overloaded_since is None


def _with_parallel(config_path: Path, parallel: int) -> None:
    text = config_path.read_text()
    config_path.write_text(text.replace("[daemon]\n", f"[daemon]\nmax_parallel = {parallel}\n", 1))


def poll_threads(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The names of the threads that poll, filled in as the daemon polls."""
    names: set[str] = set()
    real_poll = fetchd.runner.poll_account

    def poll(*args: Any, **kwargs: Any) -> PollResult:
        names.add(threading.current_thread().name)
        return real_poll(*args, **kwargs)

    monkeypatch.setattr(fetchd.runner, "poll_account", poll)
    return names


ACCOUNTS = 30


@pytest.mark.timeout(90)
def test_overload_polls_every_account_in_turn_and_says_so(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pop3_server: Callable[..., POP3TestServer],
    running: Callable[..., Daemon],
) -> None:
    # Each login waits 0.3 s for the greeting: two threads manage some 6 polls a
    # second, and 30 accounts every second ask for 30.
    servers = [pop3_server([], greeting_delay=0.3) for _ in range(ACCOUNTS)]
    path = tmp_path / "config.toml"
    write(path, *(account(f"a{i:02d}", server.port) for i, server in enumerate(servers)))
    _with_parallel(path, 2)
    config = load_config(path)
    threads = poll_threads(monkeypatch)
    spread: list[int] = []
    with capture_logs() as events:
        daemon = running(config, load_period=2.0)

        def sessions() -> list[int]:
            counts = [server.sessions for server in servers]
            spread.append(max(counts) - min(counts))
            return counts

        wait_until(lambda: min(sessions()) >= 2, timeout=60)
        assert len(threads) == 2
        wait_until(lambda: any(e["event"] == "overloaded: polls run late" for e in events))
    # Polled in turn: at any moment the counts differ by the poll running, and
    # at most one more where an account turns due a moment after another.
    assert max(spread) <= 2, spread
    [warning, *_] = [e for e in events if e["event"] == "overloaded: polls run late"]
    assert warning["log_level"] == "warning"
    assert 0 < warning["achieved_per_minute"] < warning["configured_per_minute"] == 1800
    assert warning["max_wait"] < 15  # one round of 30 polls on two threads, not forever
    with contextlib.closing(State(state_path(config.daemon.data_dir))) as state:
        load = state.load()
    assert load is not None
    assert load.overloaded_since is not None
    assert "overloaded" in daemon._status_text()
    daemon.stop()
    assert daemon.wait_idle(10)
    with contextlib.closing(State(state_path(config.daemon.data_dir))) as state:
        assert state.load() is None  # a stopped daemon is overloaded no more


def test_a_daemon_that_keeps_up_records_no_overload_and_few_threads(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pop3_server: Callable[..., POP3TestServer],
    running: Callable[..., Daemon],
) -> None:
    servers = [pop3_server([]) for _ in range(3)]
    path = tmp_path / "config.toml"
    write(path, *(account(f"a{i}", s.port) for i, s in enumerate(servers)), interval="2s")
    _with_parallel(path, 64)
    config = load_config(path)
    threads = poll_threads(monkeypatch)
    with capture_logs() as events:
        running(config, load_period=1.0)
        wait_until(lambda: min(server.sessions for server in servers) >= 2, timeout=20)
        time.sleep(1.2)
    assert len(threads) <= 3
    assert not [e for e in events if e["event"] == "overloaded: polls run late"]
    with contextlib.closing(State(state_path(config.daemon.data_dir))) as state:
        load = state.load()
    assert load is not None
    assert load.overloaded_since is None
