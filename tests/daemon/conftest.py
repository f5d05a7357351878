"""Helpers for daemon tests: a config writer, a ``fetchd run`` process, a NOTIFY_SOCKET,
and daemons started in the test's own process.

The daemon runs as a real process (``python -m fetchd ... run``), its JSON log
goes to a file the test reads, and systemd's notification socket is a Unix
datagram socket the test binds itself. The ``running`` fixture starts
``Daemon`` objects in-process instead, with a ``RecordingNotifier``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from fetchd.config import Config
from fetchd.daemon import Daemon
from fetchd.daemon.sdnotify import Notifier
from fetchd.log import configure_logging
from fetchd.testing.dovecot import Dovecot

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {"alice": "secret", "bob": "secret2"}


def account_toml(name: str, dovecot: Dovecot, user: str, **extra: object) -> str:
    """An ``[accounts.NAME]`` table for a Dovecot user; the password comes from $PW_<USER>."""
    lines = [
        f"[accounts.{name}]",
        'host = "127.0.0.1"',
        f"port = {dovecot.pop3_port}",
        'security = "plain"',
        f'username = "{user}"',
        f'password_env = "PW_{user.upper()}"',
    ]
    lines += [f"{key} = {json.dumps(value)}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


def write_config(path: Path, accounts: str, **daemon: object) -> Path:
    settings = {"interval": "1s", "transcript": False, **daemon}
    head = "[daemon]\n" + f'data_dir = "{path.parent / "data"}"\n'
    head += "".join(f"{key} = {json.dumps(value)}\n" for key, value in settings.items())
    path.write_text(head + "\n" + accounts)
    return path


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
    env.update({f"PW_{user.upper()}": password for user, password in PASSWORDS.items()})
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def cli(config: Path, *args: str, env: Mapping[str, str] | None = None) -> Any:
    """Run ``fetchd -c CONFIG ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "fetchd", "-c", str(config), *args],
        env=dict(env or environment()),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class RecordingNotifier(Notifier):
    def __init__(self) -> None:
        super().__init__("@unused")
        self.sent: list[tuple[str, ...]] = []

    def notify(self, *assignments: str) -> bool:
        self.sent.append(assignments)
        return True


class NotifySocket:
    """A bound datagram socket collecting what the daemon tells "systemd"."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages: list[str] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.1)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed.is_set():
            try:
                self.messages.append(self._sock.recv(65536).decode())
            except TimeoutError:
                continue

    def close(self) -> None:
        self._closed.set()
        self._thread.join()
        self._sock.close()

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for message in self.messages[seen:]:
                if predicate(message):
                    return message
            seen = len(self.messages)
            time.sleep(0.05)
        raise AssertionError(f"no such notification within {timeout} s: {self.messages[-20:]}")

    def fields(self) -> list[dict[str, str]]:
        return [dict(line.split("=", 1) for line in m.splitlines()) for m in list(self.messages)]


class DaemonProcess:
    """``fetchd run`` as a child process with its log in a file."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.log_path = config.parent / "daemon.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "fetchd", "-c", str(config), "run"],
                env=env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )

    def events(self) -> list[dict[str, Any]]:
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
        return found

    def matching(self, event: str, account: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events()
            if e.get("event") == event and (account is None or e.get("account") == account)
        ]

    def wait_for_event(
        self, event: str, account: str | None = None, count: int = 1, timeout: float = 15
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.matching(event, account)
            if len(found) >= count:
                return found
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {count} x {event!r} ({account}) in:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def stop(self, timeout: float = 30) -> tuple[int, float]:
        """SIGTERM, then wait; returns the exit code and the seconds it took."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


@pytest.fixture
def start_daemon() -> Iterator[Callable[..., DaemonProcess]]:
    """Start ``fetchd run`` processes; any still running after the test are killed."""
    started: list[DaemonProcess] = []

    def start(config: Path, **env: str) -> DaemonProcess:
        daemon = DaemonProcess(config, environment(**env))
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.kill()


@pytest.fixture
def running(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Daemon]]:
    """Start daemons in this process; each is stopped after the test.

    ``running(config, notifier=None, **options)``: the options (``load_period``)
    go to ``Daemon``; without a notifier the daemon gets a ``RecordingNotifier``.
    """
    monkeypatch.setenv("FETCHD_TEST_PW", "secret")
    # Poll threads log; not into a stream an earlier test captured and closed.
    configure_logging("debug", "json", io.StringIO())
    started: list[Daemon] = []

    def start(config: Config, notifier: Notifier | None = None, **options: Any) -> Daemon:
        daemon = Daemon(config, notifier or RecordingNotifier(), **options)
        started.append(daemon)
        daemon.start()
        return daemon

    yield start
    for daemon in started:
        daemon.stop()
        assert daemon.wait_idle(10)


@pytest.fixture
def dovecot_both(dovecot: Dovecot) -> Dovecot:
    """The session's Dovecot with alice's and bob's mailboxes emptied."""
    dovecot.reset("alice")
    dovecot.reset("bob")
    return dovecot
