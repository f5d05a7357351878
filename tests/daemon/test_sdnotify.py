"""The sd_notify client: datagrams to a path or an abstract socket, environment handling."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from fetchd.daemon.sdnotify import Notifier, monotonic_usec


def receiver(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    return sock


def test_sends_one_datagram_to_a_socket_path(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with receiver(str(path)) as sock:
        assert Notifier(str(path)).notify("READY=1", "STATUS=2 accounts")
        assert sock.recv(4096) == b"READY=1\nSTATUS=2 accounts"


def test_an_address_starting_with_at_is_in_the_abstract_namespace() -> None:
    name = f"fetchd-test-{os.getpid()}"
    with receiver("\0" + name) as sock:
        assert Notifier("@" + name).notify("WATCHDOG=1")
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_without_systemd_or_with_a_dead_socket_nothing_is_raised(tmp_path: Path) -> None:
    assert not Notifier().notify("READY=1")
    assert not Notifier(str(tmp_path / "nobody-listens")).notify("READY=1")


def test_the_environment_is_taken_and_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    notifier = Notifier.from_environment()
    assert notifier.address == "/run/systemd/notify"
    assert notifier.watchdog_period == 15.0
    # Children (password commands) must not inherit them.
    assert not {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} & set(os.environ)


@pytest.mark.parametrize(
    ("usec", "pid", "period"),
    [("2000000", None, 1.0), ("2000000", "1", None), ("0", None, None), ("soon", None, None)],
)
def test_the_watchdog_is_ours_only_when_systemd_says_so(
    monkeypatch: pytest.MonkeyPatch, usec: str, pid: str | None, period: float | None
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", usec)
    if pid is None:
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
    else:
        monkeypatch.setenv("WATCHDOG_PID", pid)
    assert Notifier.from_environment().watchdog_period == period


def test_monotonic_usec_is_the_monotonic_clock() -> None:
    import time

    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert before <= monotonic_usec() <= before + 5_000_000
