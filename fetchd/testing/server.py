"""A scriptable POP3 server for tests and ``fetchd demo``.

Dovecot shows that fetchd works against a real server; this server shows what
fetchd does when a server is old, odd or broken: no CAPA, no UIDL, only LAST,
APOP, SASL mechanisms, STLS stripped, response codes, dropped connections,
garbage replies, stalls. It speaks correct POP3 (RFC 1939) otherwise: DELE only
marks, deletion happens at QUIT, message numbers are stable within a session,
the maildrop is locked for the session, and multi-line replies are dot-stuffed.

It listens on 127.0.0.1 only, one thread per connection. ``options`` may be
changed between sessions; each session reads them once, when it starts. The
sessions themselves are in ``_session`` (POP3) and ``_connection`` (line I/O).
"""

from __future__ import annotations

import itertools
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from fetchd.testing._connection import Hangup, shutdown_quietly
from fetchd.testing._running import Running
from fetchd.testing._session import Session

__all__ = ["Mailbox", "POP3TestServer", "ServerOptions"]


@dataclass
class Mailbox:
    """The maildrop one server serves; shared by its sessions and thread-safe.

    ``uidls`` of ``None`` gives every message a generated id that stays the same
    across sessions. ``last`` is the highest message number retrieved (RFC 1460
    LAST), carried from one session to the next. Messages may use CRLF or bare
    LF; they are served with CRLF.
    """

    messages: list[bytes] = field(default_factory=list)
    uidls: list[str] | None = None
    last: int = 0
    #: Ids retrieved in an earlier session; hidden from later ones when the
    #: server hands out slices (``ServerOptions.max_messages_per_session``).
    retrieved: set[str] = field(default_factory=set, init=False)
    lock: threading.RLock = field(
        default_factory=threading.RLock, init=False, repr=False, compare=False
    )
    _ids: Iterator[int] = field(
        default_factory=lambda: itertools.count(1), init=False, repr=False, compare=False
    )
    _locked_by: object | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.messages = list(self.messages)
        if self.uidls is None:
            self.uidls = [self._new_uidl() for _ in self.messages]
        if len(self.uidls) != len(self.messages):
            raise ValueError("uidls and messages must have the same length")
        self.uidls = list(self.uidls)

    @property
    def ids(self) -> list[str]:
        """The message ids, in mailbox order (``uidls`` after generation)."""
        assert self.uidls is not None
        return self.uidls

    def add(self, message: bytes, uidl: str | None = None) -> None:
        """Append a message (visible to sessions that log in afterwards)."""
        with self.lock:
            self.messages.append(message)
            self.ids.append(uidl if uidl is not None else self._new_uidl())

    def remove(self, uidl: str) -> None:
        """Delete the first message with this id; ValueError if there is none."""
        with self.lock:
            index = self.ids.index(uidl)
            del self.ids[index]
            del self.messages[index]

    def discard(self, uidl: str, message: bytes) -> None:
        """Delete exactly this entry, even when ids repeat (servers with duplicate UIDLs)."""
        with self.lock:
            for index, (known, content) in enumerate(zip(self.ids, self.messages, strict=True)):
                if known == uidl and content is message:
                    del self.ids[index]
                    del self.messages[index]
                    return

    def snapshot(self) -> list[tuple[str, bytes]]:
        """A consistent copy of (uidl, message) pairs, in mailbox order."""
        with self.lock:
            return list(zip(self.ids, self.messages, strict=True))

    def try_lock(self, owner: object) -> bool:
        """Take the maildrop lock for a session (RFC 1939 section 8); False if held."""
        with self.lock:
            if self._locked_by is not None:
                return False
            self._locked_by = owner
            return True

    def unlock(self, owner: object) -> None:
        with self.lock:
            if self._locked_by is owner:
                self._locked_by = None

    def _new_uidl(self) -> str:
        return f"fetchd-test-{next(self._ids):06d}"


@dataclass
class ServerOptions:
    """What the server supports and which fault it injects."""

    user: str = "alice"
    password: str = "secret"  # noqa: S105 - the test server's documented default
    capa: bool = True
    uidl: bool = True
    last: bool = False
    top: bool = True
    pipelining: bool = True
    apop: bool = False
    sasl: tuple[str, ...] = ("PLAIN", "LOGIN")
    user_command: bool = True
    stls: ssl.SSLContext | None = None
    strip_stls: bool = False
    in_use: bool = False
    login_delay: int | None = None
    auth_fail_code: str | None = "AUTH"
    expire: str | None = None
    max_messages_per_session: int | None = None
    drop_during_retr: int | None = None
    garbage_reply_to: str | None = None
    stall_on: str | None = None
    greeting_delay: float = 0.0
    multiline_lf_only: bool = False
    #: Octets added to every size STAT and LIST announce: a server whose sizes
    #: are not exact (it counts its own files, or adds a header as it sends).
    listed_sizes_off_by: int = 0
    #: Announce TOP, UIDL and PIPELINING only after login, as Gmail does.
    late_capa: bool = False
    #: Verb -> ``hook(session, arg)``, run before the normal handler; a hook
    #: that returns True has answered the command itself. For scripting a
    #: hostile server: replies twice, lies about sizes, sends raw bytes.
    hooks: dict[str, Callable[[Any, str], bool]] = field(default_factory=dict)
    #: Send the whole reply to this command twice (one reply too many).
    repeat_reply_to: str | None = None
    #: (command or "GREETING", seconds): send that reply one byte every so often.
    trickle: tuple[str, float] | None = None
    #: Answer this multi-line command (CAPA, LIST, UIDL, TOP) with lines that never end.
    endless_reply_to: str | None = None
    #: Answer AUTH with SASL challenges whatever the client says, until it hangs up.
    endless_sasl: bool = False


class POP3TestServer(Running):
    """A threaded POP3 server on 127.0.0.1; a context manager.

    ``tls_context`` makes the listener implicit TLS (POP3S); STLS is configured
    with ``ServerOptions.stls`` instead.
    """

    def __init__(
        self,
        mailbox: Mailbox | None = None,
        options: ServerOptions | None = None,
        *,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self.mailbox = mailbox if mailbox is not None else Mailbox()
        self.options = options if options is not None else ServerOptions()
        self.tls_context = tls_context
        self.transcript: list[tuple[str, str]] = []
        self.sessions = 0
        self.stopping = threading.Event()
        self.last_login: float | None = None
        self._state_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._tcp: _TCPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind a free loopback port and serve in a background thread."""
        if self._tcp is not None:
            raise RuntimeError("this server is already running")
        self.stopping.clear()
        self._tcp = _TCPServer(self)
        self.port = self._tcp.server_address[1]
        self._thread = threading.Thread(
            target=self._tcp.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, end open sessions (stalled ones too) and release the port."""
        tcp, self._tcp = self._tcp, None
        if tcp is None:
            return
        self.stopping.set()
        tcp.shutdown()
        tcp.server_close()
        with self._state_lock:
            connections = list(self._connections)
        for conn in connections:
            shutdown_quietly(conn)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _count_session(self) -> None:
        with self._state_lock:
            self.sessions += 1

    def track(self, old: socket.socket | None, new: socket.socket | None) -> None:
        """Replace ``old`` by ``new`` among the open connections that ``stop`` ends."""
        with self._state_lock:
            self._connections.discard(old)
            if new is not None:
                self._connections.add(new)

    def record(self, side: str, line: str) -> None:
        """Append a line a session read (``C``) or sent (``S``) to the transcript."""
        with self._state_lock:
            self.transcript.append((side, line))


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, owner: POP3TestServer) -> None:
        self.owner = owner
        super().__init__((owner.host, 0), _Handler)


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        owner = cast(_TCPServer, self.server).owner
        owner._count_session()
        session = Session(owner, cast(socket.socket, self.request))
        try:
            session.run()
        except (OSError, ValueError, Hangup):
            # The client went away, stop() closed the socket (ValueError: I/O on a
            # closed file), or a fault was injected: nothing more to say.
            pass
        finally:
            session.close()
