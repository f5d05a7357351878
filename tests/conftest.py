"""Fixtures shared by the whole test suite: the three POP3 servers and message builders.

- ``dovecot``: one private Dovecot for the session (users alice/secret, bob/secret2);
  ``dovecot_alice`` empties alice's mailbox first.
- ``pop3_server``: a factory for scriptable servers, stopped after the test.
- ``popa3d``: a real server that still answers LAST; ``.ci/popa3d.sh`` provides it.

Under pytest-xdist (``-n 2``) each worker is a session of its own, so each has
its own Dovecot (own root, own ports) and its own scriptable servers. popa3d
serves the one system mailbox of one system user; its tests take turns through
a file lock, across workers and across test runs on the same machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, settings

from fetchd.store.state import State, state_path
from fetchd.testing.dovecot import Dovecot
from fetchd.testing.server import Mailbox, POP3TestServer, ServerOptions
from tests.messages import make_message as _make_message

# Example counts are bounded for the 2-core CI machine; deadlines are off because
# a shared machine's timing says nothing about the code.
settings.register_profile("dev", deadline=None, max_examples=100)
settings.register_profile(
    "ci", deadline=None, max_examples=50, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

DOVECOT_USERS = (("alice", "secret"), ("bob", "secret2"))

# Must match .ci/popa3d.sh, which creates this system user with this password.
POPA3D_USER = "fetchdpop"
POPA3D_PASSWORD = "popa3d-test-secret"
POPA3D_BINARY = Path(os.environ.get("FETCHD_POPA3D", "/opt/fetchd-test/popa3d/usr/sbin/popa3d"))
# Held by each popa3d test: /var/mail/fetchdpop is one mailbox for the whole machine.
POPA3D_LOCK = Path("/tmp/fetchd-test-popa3d.lock")


def _restoring_logging() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


# Commands run in process (``main(["-c", config, "fetch"])``) set the global log level
# from their config. Each test, and each module with its module-scoped fixtures, gets
# the logging setup back as it found it, so that no test depends on which ran before
# it: under xdist that differs from run to run.
_module_logging_restored = pytest.fixture(scope="module", autouse=True)(_restoring_logging)
_logging_restored = pytest.fixture(autouse=True)(_restoring_logging)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """Where a test's fetchd keeps its mail and state."""
    return tmp_path / "data"


@pytest.fixture
def state(data_dir: Path) -> Iterator[State]:
    """The state database in ``data_dir``, closed after the test."""
    db = State(state_path(data_dir))
    yield db
    db.close()


@pytest.fixture
def make_message() -> Callable[..., bytes]:
    """The message builder of ``tests.messages``, for tests that prefer a fixture."""
    return _make_message


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """A private Dovecot for the whole test session (each xdist worker has its own)."""
    # Not pytest's tmp dir: that one is private to root, and Dovecot's mail
    # processes run as nobody.
    root = Path(tempfile.mkdtemp(prefix="fetchd-dovecot-"))
    try:
        with Dovecot(root, users=DOVECOT_USERS) as server:
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def dovecot_alice(dovecot: Dovecot) -> Dovecot:
    """The session's Dovecot with alice's mailbox emptied and UIDs restarted."""
    dovecot.reset("alice")
    return dovecot


@pytest.fixture
def pop3_server() -> Iterator[Callable[..., POP3TestServer]]:
    """Start scriptable servers: ``pop3_server(messages_or_mailbox, options, **overrides)``.

    ``overrides`` are ServerOptions fields applied on top of ``options``.
    """
    servers: list[POP3TestServer] = []

    def start(
        mailbox: Mailbox | Iterable[bytes] | None = None,
        options: ServerOptions | None = None,
        *,
        tls_context: Any = None,
        **overrides: Any,
    ) -> POP3TestServer:
        if mailbox is not None and not isinstance(mailbox, Mailbox):
            mailbox = Mailbox(list(mailbox))
        options = dataclasses.replace(options or ServerOptions(), **overrides)
        server = POP3TestServer(mailbox, options, tls_context=tls_context)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


class Popa3d:
    """popa3d served on a loopback port, one inetd-style process per connection."""

    host = "127.0.0.1"

    def __init__(self, binary: Path, user: str, password: str) -> None:
        self.binary = binary
        self.user = user
        self.password = password
        self.mbox = Path("/var/mail") / user
        self._listener = socket.create_server((self.host, 0))
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._children: list[subprocess.Popen[bytes]] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def deliver(self, messages: Iterable[bytes]) -> None:
        """Replace the user's mbox with ``messages`` (mboxrd: "From " lines quoted)."""
        parts = []
        for message in messages:
            text = message.replace(b"\r\n", b"\n")
            lines = [b">" + line if line.lstrip(b">").startswith(b"From ") else line
                     for line in text.split(b"\n")]  # fmt: skip
            body = b"\n".join(lines).rstrip(b"\n")
            parts.append(b"From sender@example.org Mon Jan  1 12:00:00 2024\n" + body + b"\n\n")
        entry = pwd.getpwnam(self.user)
        self.mbox.write_bytes(b"".join(parts))
        os.chown(self.mbox, entry.pw_uid, entry.pw_gid)
        self.mbox.chmod(0o600)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
        for child in self._children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)
            if child.poll() is None:
                child.kill()
                child.wait()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                # inetd mode: the connection is popa3d's stdin and stdout.
                child = subprocess.Popen(
                    [str(self.binary)],
                    stdin=conn.fileno(),
                    stdout=conn.fileno(),
                    stderr=subprocess.DEVNULL,
                )
            self._children.append(child)


@pytest.fixture
def popa3d() -> Iterator[Popa3d]:
    """popa3d with an empty mailbox for the test user; fails if it is not set up."""
    if not POPA3D_BINARY.is_file():
        pytest.fail(f"popa3d is missing at {POPA3D_BINARY}: run .ci/popa3d.sh (as root)")
    if os.geteuid() != 0:
        pytest.fail("popa3d must be started as root (it switches to the mail user itself)")
    try:
        pwd.getpwnam(POPA3D_USER)
        pwd.getpwnam("popa3d")
    except KeyError:
        pytest.fail("the popa3d users are missing: run .ci/popa3d.sh (as root)")
    with POPA3D_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        server = Popa3d(POPA3D_BINARY, POPA3D_USER, POPA3D_PASSWORD)
        server.deliver([])
        try:
            yield server
        finally:
            server.stop()
            server.mbox.unlink(missing_ok=True)
