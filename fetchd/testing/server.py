"""A scriptable POP3 server for tests and ``fetchd demo``.

Dovecot shows that fetchd works against a real server; this server shows what
fetchd does when a server is old, odd or broken: no CAPA, no UIDL, only LAST,
APOP, SASL mechanisms, STLS stripped, response codes, dropped connections,
garbage replies, stalls. It speaks correct POP3 (RFC 1939) otherwise: DELE only
marks, deletion happens at QUIT, message numbers are stable within a session,
the maildrop is locked for the session, and multi-line replies are dot-stuffed.

It listens on 127.0.0.1 only, one thread per connection. ``options`` may be
changed between sessions; each session reads them once, when it starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import BinaryIO, cast

from fetchd.testing._sasl import MECHANISMS
from fetchd.testing._wire import BLOCK, body_blocks, served_size, top

__all__ = ["Mailbox", "POP3TestServer", "ServerOptions"]

# RFC 2449 section 4: command lines are at most 255 octets including CRLF.
_MAX_COMMAND = 255
# RFC 5034 section 4 does not bound continuation lines (OAuth tokens are long).
_MAX_CONTINUATION = 64 * 1024
_IDLE_TIMEOUT = 120.0
_GARBAGE = b"\x00\xff\xfe garbage \x80\x81\x1b[0m\r\n"


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
    #: Announce TOP, UIDL and PIPELINING only after login, as Gmail does.
    late_capa: bool = False


class POP3TestServer:
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

    def __enter__(self) -> POP3TestServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

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
            _shutdown_quietly(conn)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _count_session(self) -> None:
        with self._state_lock:
            self.sessions += 1

    def _track(self, old: socket.socket | None, new: socket.socket | None) -> None:
        """Replace ``old`` by ``new`` in the set of open connections ``stop`` ends."""
        with self._state_lock:
            self._connections.discard(old)
            if new is not None:
                self._connections.add(new)

    def _record(self, side: str, line: str) -> None:
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
        session = _Session(owner, cast(socket.socket, self.request))
        try:
            session.run()
        except (OSError, ValueError, _Hangup):
            # The client went away, stop() closed the socket (ValueError: I/O on a
            # closed file), or a fault was injected: nothing more to say.
            pass
        finally:
            session.close()


class _Hangup(Exception):
    """End the session without another word (injected faults, QUIT)."""


@dataclass
class _Message:
    number: int
    uidl: str
    content: bytes
    deleted: bool = False

    @property
    def size(self) -> int:
        return served_size(self.content)


@dataclass
class _Auth:
    """What the AUTHORIZATION state remembers between commands."""

    user: str | None = None
    timestamp: str = ""
    tls: bool = False


@dataclass
class _Transaction:
    messages: list[_Message] = field(default_factory=list)
    last: int = 0


class _Session:
    """One client connection, from greeting to QUIT or hangup."""

    def __init__(self, owner: POP3TestServer, conn: socket.socket) -> None:
        self.owner = owner
        self.options = owner.options
        self.mailbox = owner.mailbox
        self.conn = conn
        self.conn.settimeout(_IDLE_TIMEOUT)
        owner._track(None, conn)
        self.reader: BinaryIO = conn.makefile("rb")
        self.eol = b"\n" if self.options.multiline_lf_only else b"\r\n"
        self.auth = _Auth()
        self.txn: _Transaction | None = None

    def start_tls(self, context: ssl.SSLContext) -> None:
        """Wrap the connection; bytes the client sent early are dropped with the reader."""
        self.reader.close()
        tls = context.wrap_socket(self.conn, server_side=True)
        self.owner._track(self.conn, tls)
        self.conn = tls
        self.reader = tls.makefile("rb")
        self.auth.tls = True

    def close(self) -> None:
        self.mailbox.unlock(self)
        self.owner._track(self.conn, None)
        self.reader.close()
        _shutdown_quietly(self.conn)

    def run(self) -> None:
        if self.owner.tls_context is not None:
            self.start_tls(self.owner.tls_context)
        if self.options.greeting_delay:
            time.sleep(self.options.greeting_delay)
        greeting = "+OK fetchd test server ready"
        if self.options.apop:
            # RFC 1939 section 7: the timestamp must differ for every greeting.
            self.auth.timestamp = f"<{os.getpid()}.{time.time_ns()}@localhost>"
            greeting += " " + self.auth.timestamp
        self.reply(greeting)
        while (line := self.read_command()) is not None:
            self.dispatch(line)

    # -- reading ---------------------------------------------------------------

    def read_command(self) -> str | None:
        """Next command line without CRLF; None at end of stream. Over-long -> -ERR."""
        while True:
            raw = self.reader.readline(_MAX_COMMAND + 1)
            if not raw:
                return None
            if len(raw) > _MAX_COMMAND or not raw.endswith(b"\n"):
                self._discard_rest_of_line(raw)
                self.owner._record("C", raw[:_MAX_COMMAND].decode("latin-1") + "...")
                self.reply("-ERR command line too long (RFC 2449 allows 255 octets)")
                continue
            line = raw.rstrip(b"\r\n").decode("latin-1")
            self.owner._record("C", line)
            return line

    def read_continuation(self) -> str:
        """A SASL client response line (RFC 5034 section 4); hangs up at end of stream."""
        raw = self.reader.readline(_MAX_CONTINUATION)
        if not raw:
            raise _Hangup
        line = raw.rstrip(b"\r\n").decode("latin-1")
        self.owner._record("C", line)
        return line

    def _discard_rest_of_line(self, raw: bytes) -> None:
        while raw and not raw.endswith(b"\n"):
            raw = self.reader.readline(BLOCK)

    # -- writing ---------------------------------------------------------------

    def reply(self, status: str) -> None:
        self.owner._record("S", status)
        self.conn.sendall(status.encode("latin-1") + self.eol)

    def reply_lines(self, status: str, lines: list[str]) -> None:
        """A short multi-line reply (CAPA, LIST, UIDL), dot-stuffed and terminated."""
        self.owner._record("S", status)
        body = [status, *("." + line if line.startswith(".") else line for line in lines), "."]
        self.conn.sendall(self.eol.join(part.encode("latin-1") for part in body) + self.eol)

    def send_message(self, content: bytes, *, cut_after: int | None = None) -> None:
        """Stream ``content`` as a multi-line body in blocks; hang up after ``cut_after``."""
        sent = 0
        for block in body_blocks(content, self.eol):
            if cut_after is not None and sent + len(block) >= cut_after:
                self.conn.sendall(block[: max(cut_after - sent, 1)])
                raise _Hangup
            self.conn.sendall(block)
            sent += len(block)
        self.conn.sendall(b"." + self.eol)

    # -- dispatch --------------------------------------------------------------

    def dispatch(self, line: str) -> None:
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        if self.options.stall_on is not None and verb == self.options.stall_on.upper():
            self.owner.stopping.wait()
            raise _Hangup
        if self.options.garbage_reply_to is not None and (
            verb == self.options.garbage_reply_to.upper()
        ):
            self.owner._record("S", repr(_GARBAGE))
            self.conn.sendall(_GARBAGE)
            return
        table = _AUTHORIZATION if self.txn is None else _TRANSACTION
        handler = table.get(verb)
        if handler is None:
            known = verb in _AUTHORIZATION or verb in _TRANSACTION
            self.reply("-ERR command not valid in this state" if known else "-ERR unknown command")
            return
        handler(self, arg)

    # -- AUTHORIZATION state (RFC 1939 section 4, 7; RFC 2449; RFC 2595; RFC 5034) ----

    def cmd_capa(self, arg: str) -> None:
        if not self.options.capa:
            self.reply("-ERR unknown command")
            return
        self.reply_lines("+OK capability list follows", self.capabilities())

    def capabilities(self) -> list[str]:
        opts, authed = self.options, self.txn is not None
        caps = ["RESP-CODES", "AUTH-RESP-CODE"]
        if authed or not opts.late_capa:
            caps += [name for name, on in (("TOP", opts.top), ("UIDL", opts.uidl)) if on]
            caps += ["PIPELINING"] if opts.pipelining else []
        if not authed:
            caps += ["USER"] if opts.user_command else []
            caps += [f"SASL {' '.join(opts.sasl)}"] if opts.sasl else []
            if opts.stls is not None and not opts.strip_stls and not self.auth.tls:
                caps.append("STLS")
        if opts.login_delay is not None:
            caps.append(f"LOGIN-DELAY {opts.login_delay}")
        if opts.expire is not None:
            caps.append(f"EXPIRE {opts.expire}")
        return [*caps, "IMPLEMENTATION fetchd-test"]

    def cmd_stls(self, arg: str) -> None:
        context = self.options.stls
        if context is None or self.options.strip_stls or self.auth.tls:
            self.reply("-ERR STLS not available")
            return
        self.reply("+OK begin TLS negotiation")
        # RFC 2595 section 4: the client must not pipeline past STLS; whatever it did
        # send early is dropped, and the USER given before TLS is forgotten.
        self.auth.user = None
        self.start_tls(context)

    def cmd_user(self, arg: str) -> None:
        if not self.options.user_command:
            self.reply("-ERR USER/PASS not allowed, use AUTH")
            return
        # Answer +OK for any name so that user names cannot be probed.
        self.auth.user = arg
        self.reply("+OK send PASS")

    def cmd_pass(self, arg: str) -> None:
        user, self.auth.user = self.auth.user, None
        if not self.options.user_command:
            self.reply("-ERR USER/PASS not allowed, use AUTH")
        elif user is None:
            self.reply("-ERR send USER first")
        else:
            self.login(user, arg)

    def cmd_apop(self, arg: str) -> None:
        name, _, digest = arg.partition(" ")
        if not self.options.apop:
            self.reply("-ERR APOP not supported")
            return
        expected = hashlib.md5((self.auth.timestamp + self.options.password).encode()).hexdigest()
        self.login(name, self.options.password if digest.lower() == expected else None)

    def cmd_auth(self, arg: str) -> None:
        mechanism, _, initial = arg.partition(" ")
        mechanism = mechanism.upper()
        if not mechanism:
            self.reply_lines("+OK mechanisms follow", list(self.options.sasl))
            return
        if mechanism not in self.options.sasl or mechanism not in MECHANISMS:
            self.reply("-ERR unsupported authentication mechanism")
            return
        MECHANISMS[mechanism](self, initial or None)

    def login(self, user: str, password: str | None) -> None:
        """Check credentials and enter TRANSACTION (RFC 1939 section 4)."""
        opts = self.options
        if user != opts.user or password != opts.password:
            code = f"[{opts.auth_fail_code}] " if opts.auth_fail_code else ""
            self.reply(f"-ERR {code}invalid user name or password")
            return
        now = time.monotonic()
        last = self.owner.last_login
        if opts.login_delay is not None and last is not None and now - last < opts.login_delay:
            self.reply(f"-ERR [LOGIN-DELAY] wait {opts.login_delay} seconds between logins")
            return
        if opts.in_use or not self.mailbox.try_lock(self):
            self.reply("-ERR [IN-USE] maildrop is locked by another session")
            return
        self.owner.last_login = now
        self.txn = _Transaction(messages=self.visible_messages(), last=self.mailbox.last)
        self.txn.last = min(self.txn.last, len(self.txn.messages))
        self.reply(f"+OK maildrop has {len(self.txn.messages)} messages")

    def visible_messages(self) -> list[_Message]:
        snapshot = self.mailbox.snapshot()
        limit = self.options.max_messages_per_session
        if limit is not None:
            hidden = self.mailbox.retrieved
            snapshot = [(uidl, data) for uidl, data in snapshot if uidl not in hidden][:limit]
        return [_Message(n, uidl, data) for n, (uidl, data) in enumerate(snapshot, start=1)]

    def cmd_quit(self, arg: str) -> None:
        if self.txn is not None:
            self.update()
        # Unlock before answering: a client that reconnects right after +OK must get in.
        self.mailbox.unlock(self)
        self.reply("+OK bye")
        raise _Hangup

    def update(self) -> None:
        """UPDATE state (RFC 1939 section 6): expunge what DELE marked, only now."""
        assert self.txn is not None
        deleted = [m for m in self.txn.messages if m.deleted]
        with self.mailbox.lock:
            for message in deleted:
                self.mailbox.discard(message.uidl, message.content)
            # Keep LAST pointing at the same message after renumbering.
            shift = sum(1 for m in deleted if m.number <= self.txn.last)
            self.mailbox.last = self.txn.last - shift

    # -- TRANSACTION state (RFC 1939 section 5, RFC 1460 LAST) ------------------

    def message(self, arg: str) -> _Message | None:
        """The undeleted message numbered ``arg``; answers -ERR itself if there is none."""
        assert self.txn is not None
        if not arg.isdigit() or not 1 <= int(arg) <= len(self.txn.messages):
            self.reply("-ERR no such message")
            return None
        found = self.txn.messages[int(arg) - 1]
        if found.deleted:
            self.reply(f"-ERR message {arg} already deleted")
            return None
        return found

    def live(self) -> list[_Message]:
        assert self.txn is not None
        return [m for m in self.txn.messages if not m.deleted]

    def cmd_stat(self, arg: str) -> None:
        live = self.live()
        self.reply(f"+OK {len(live)} {sum(m.size for m in live)}")

    def cmd_list(self, arg: str) -> None:
        if arg:
            if (found := self.message(arg)) is not None:
                self.reply(f"+OK {found.number} {found.size}")
            return
        live = self.live()
        self.reply_lines(f"+OK {len(live)} messages", [f"{m.number} {m.size}" for m in live])

    def cmd_uidl(self, arg: str) -> None:
        if not self.options.uidl:
            self.reply("-ERR unknown command")
        elif arg:
            if (found := self.message(arg)) is not None:
                self.reply(f"+OK {found.number} {found.uidl}")
        else:
            lines = [f"{m.number} {m.uidl}" for m in self.live()]
            self.reply_lines("+OK unique-id listing follows", lines)

    def cmd_retr(self, arg: str) -> None:
        assert self.txn is not None
        if (found := self.message(arg)) is None:
            return
        self.txn.last = max(self.txn.last, found.number)
        if self.options.max_messages_per_session is not None:
            with self.mailbox.lock:
                self.mailbox.retrieved.add(found.uidl)
        self.reply(f"+OK {found.size} octets")
        cut = found.size // 2 if self.options.drop_during_retr == found.number else None
        self.send_message(found.content, cut_after=cut)

    def cmd_top(self, arg: str) -> None:
        number, _, lines = arg.partition(" ")
        if not self.options.top:
            self.reply("-ERR unknown command")
        elif not lines.isdigit():
            self.reply("-ERR usage: TOP msg n")
        elif (found := self.message(number)) is not None:
            self.reply("+OK top of message follows")
            self.send_message(top(found.content, int(lines)))

    def cmd_dele(self, arg: str) -> None:
        if (found := self.message(arg)) is not None:
            found.deleted = True
            self.reply(f"+OK message {found.number} deleted")

    def cmd_rset(self, arg: str) -> None:
        assert self.txn is not None
        for message in self.txn.messages:
            message.deleted = False
        self.txn.last = 0  # RFC 1460: RSET also resets the highest access number
        self.reply("+OK")

    def cmd_last(self, arg: str) -> None:
        assert self.txn is not None
        if not self.options.last:
            self.reply("-ERR unknown command")
        else:
            self.reply(f"+OK {self.txn.last}")

    def cmd_noop(self, arg: str) -> None:
        self.reply("+OK")


_Command = Callable[[_Session, str], None]
_AUTHORIZATION: dict[str, _Command] = {
    "CAPA": _Session.cmd_capa,
    "STLS": _Session.cmd_stls,
    "USER": _Session.cmd_user,
    "PASS": _Session.cmd_pass,
    "APOP": _Session.cmd_apop,
    "AUTH": _Session.cmd_auth,
    "QUIT": _Session.cmd_quit,
}
_TRANSACTION: dict[str, _Command] = {
    "CAPA": _Session.cmd_capa,
    "STAT": _Session.cmd_stat,
    "LIST": _Session.cmd_list,
    "UIDL": _Session.cmd_uidl,
    "RETR": _Session.cmd_retr,
    "TOP": _Session.cmd_top,
    "DELE": _Session.cmd_dele,
    "RSET": _Session.cmd_rset,
    "LAST": _Session.cmd_last,
    "NOOP": _Session.cmd_noop,
    "QUIT": _Session.cmd_quit,
}


def _shutdown_quietly(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)
    conn.close()
