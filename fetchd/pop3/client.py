"""A blocking POP3 session: the sans-IO core driven over a transport.

``Session.exchange`` sends one command and returns its ``Reply``;
``Session.pipelined`` keeps up to ``window`` commands in flight when the
server announced PIPELINING (RFC 2449 section 6.6) and yields the replies in
order. A reply's body streams: read it with ``read_into`` (a file) or
``read_all`` (small listings) before asking for the next reply.

The typed helpers (``stat``, ``retr`` ...) raise an ``AccountError`` for -ERR;
``exchange`` itself does not, so the interactive shell can show -ERR lines.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from fetchd.errors import (
    AccountError,
    AuthError,
    ProtocolError,
    ServerBusyError,
    ServerError,
    TLSError,
    UsageError,
)
from fetchd.pop3 import auth, replies
from fetchd.pop3.commands import Command
from fetchd.pop3.core import Connection
from fetchd.pop3.events import NEED_DATA, Continuation, Data, EndOfData, Event, Response
from fetchd.pop3.replies import Capabilities
from fetchd.pop3.states import State
from fetchd.pop3.transport import Transport

#: Commands kept in flight when pipelining; small enough that neither side's
#: socket buffers fill with unread commands (RFC 2449 section 6.6).
DEFAULT_WINDOW = 100

_BUSY_CODES = frozenset({"IN-USE", "LOGIN-DELAY", "SYS/TEMP"})


class Sink(Protocol):
    def write(self, data: bytes, /) -> object: ...


#: Receives every command line (redacted) and reply status line: direction
#: ("C" or "S"), text, and the size of a multi-line body (else None).
Transcript = Callable[[str, str, int | None], None]


def error_for(response: Response, doing: str) -> AccountError:
    """The error a -ERR reply means, with the server's words and what to do."""
    said = f"{doing}: the server said {response.line[:200]!r}"
    if response.code in _BUSY_CODES:
        return ServerBusyError(f"{said}; fetchd will retry later", code=response.code)
    if response.code == "AUTH":
        return AuthError(f"{said}; check the username and password or token")
    if response.code == "SYS/PERM":
        return ServerError(f"{said}; the server reports a permanent problem, ask its admin")
    return ServerError(said)


class Reply:
    """One reply; ``response`` is its status line, the body (if any) streams."""

    def __init__(self, session: Session, command: Command, response: Response) -> None:
        self.session = session
        self.command = command
        self.response = response
        self.octets = 0
        self._open = response.ok and command.multiline

    @property
    def ok(self) -> bool:
        return self.response.ok

    def chunks(self) -> Iterator[bytes]:
        """The body's bytes, dot-unstuffed, as they arrive."""
        while self._open:
            event = self.session.next_event()
            if isinstance(event, Data):
                self.octets += len(event.data)
                yield event.data
            elif isinstance(event, EndOfData):
                self._open = False
                self.session.log_body(self)
            else:
                raise ProtocolError(f"unexpected {type(event).__name__} inside a reply body")

    def read_into(self, sink: Sink) -> int:
        """Stream the body into ``sink``; returns its size in octets."""
        for chunk in self.chunks():
            sink.write(chunk)
        return self.octets

    def read_all(self) -> bytes:
        """The whole body in memory: only for listings, never for messages."""
        return b"".join(self.chunks())

    def drain(self) -> None:
        for _ in self.chunks():
            pass

    def check(self, doing: str) -> Reply:
        if not self.response.ok:
            raise error_for(self.response, doing)
        return self


class Session:
    """One POP3 connection from greeting to QUIT."""

    def __init__(
        self,
        transport: Transport,
        *,
        transcript: Transcript | None = None,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        self.transport = transport
        self.connection = Connection()
        self.capabilities = Capabilities(known=False)
        self.window = window
        self.pipelining_allowed = True
        #: The login method used, once logged in ("auto" resolved).
        self.auth_method: str | None = None
        self._transcript = transcript
        self._current: Reply | None = None
        self.greeting = self._read_greeting()

    # -- plumbing ------------------------------------------------------------

    def next_event(self) -> Event:
        while True:
            event = self.connection.next_event()
            if event is not NEED_DATA:
                return event
            self.connection.receive_data(self.transport.read())

    def _read_greeting(self) -> Response:
        event = self.next_event()
        assert isinstance(event, Response)  # the core only gives a Response first
        self._log("S", event.line)
        if not event.ok:
            self.transport.close()
            raise error_for(event, "connecting")
        return event

    def _read_response(self, command: Command) -> Reply:
        event = self.next_event()
        if isinstance(event, Continuation):
            raise ProtocolError(f"the server sent a SASL challenge in reply to {command.name}")
        if not isinstance(event, Response):
            raise ProtocolError(f"expected a status line in reply to {command.name}")
        reply = Reply(self, command, event)
        if not reply._open:
            self._log("S", event.line)
        return reply

    def _log(self, direction: str, text: str, octets: int | None = None) -> None:
        if self._transcript is not None:
            self._transcript(direction, text, octets)

    def log_body(self, reply: Reply) -> None:
        self._log("S", reply.response.line, reply.octets)

    def _finish_current(self) -> None:
        if self._current is not None:
            self._current.drain()
            self._current = None

    @property
    def pipelining(self) -> bool:
        return self.pipelining_allowed and "PIPELINING" in self.capabilities

    # -- commands ------------------------------------------------------------

    def exchange(self, command: Command) -> Reply:
        """Send one command and read its status line (the body streams after)."""
        self._finish_current()
        data = self.connection.send(command)
        self._log("C", command.redacted())
        self.transport.write(data)
        self._current = self._read_response(command)
        return self._current

    def pipelined(self, commands: Iterable[Command]) -> Iterator[Reply]:
        """Replies to ``commands`` in order, with a bounded window in flight."""
        self._finish_current()
        window = self.window if self.pipelining else 1
        todo = iter(commands)
        in_flight: deque[Command] = deque()
        exhausted = False
        while True:
            if not exhausted and len(in_flight) <= window // 2:
                exhausted = self._send_more(todo, in_flight, window)
            if not in_flight:
                return
            reply = self._read_response(in_flight.popleft())
            self._current = reply
            yield reply
            reply.drain()
            self._current = None

    def _send_more(self, todo: Iterator[Command], in_flight: deque[Command], window: int) -> bool:
        """Send commands, in one write, until the window is full; True once ``todo`` ran out."""
        lines = []
        exhausted = True
        for command in todo:
            lines.append(self.connection.send(command))
            self._log("C", command.redacted())
            in_flight.append(command)
            if len(in_flight) >= window:
                exhausted = False
                break
        if lines:
            self.transport.write(b"".join(lines))
        return exhausted

    def capa(self) -> Capabilities:
        """Ask CAPA; an old server's -ERR means "assume nothing" (RFC 2449 section 5)."""
        reply = self.exchange(Command("CAPA"))
        if reply.ok:
            self.capabilities = replies.parse_capa(reply.read_all())
        else:
            self.capabilities = Capabilities(known=False)
        return self.capabilities

    def stls(self) -> None:
        """Upgrade to TLS (RFC 2595 section 4), then forget and re-ask capabilities."""
        reply = self.exchange(Command("STLS"))
        if not reply.ok:  # never continue in cleartext when TLS was asked for
            raise TLSError(f"the server refused STLS: {reply.response.line[:200]!r}")
        self.transport.start_tls()
        self.capa()

    def stat(self) -> tuple[int, int]:
        return replies.parse_stat(self.exchange(Command("STAT")).check("STAT").response.text)

    def list(self) -> dict[int, int]:
        return replies.parse_scan_listing(self.exchange(Command("LIST")).check("LIST").read_all())

    def list_one(self, number: int) -> int:
        reply = self.exchange(Command("LIST", (str(number),))).check(f"LIST {number}")
        return replies.parse_scan_line(reply.response.text)[1]

    def uidl(self) -> dict[int, str]:
        return replies.parse_uidl_listing(self.exchange(Command("UIDL")).check("UIDL").read_all())

    def uidl_one(self, number: int) -> str:
        reply = self.exchange(Command("UIDL", (str(number),))).check(f"UIDL {number}")
        return replies.parse_uidl_line(reply.response.text)[1]

    def retr(self, number: int, sink: Sink) -> int:
        return (
            self.exchange(Command("RETR", (str(number),))).check(f"RETR {number}").read_into(sink)
        )

    def top(self, number: int, lines: int, sink: Sink) -> int:
        command = Command("TOP", (str(number), str(lines)))
        return self.exchange(command).check(f"TOP {number}").read_into(sink)

    def dele(self, number: int) -> Response:
        return self.exchange(Command("DELE", (str(number),))).check(f"DELE {number}").response

    def rset(self) -> Response:
        return self.exchange(Command("RSET")).check("RSET").response

    def noop(self) -> Response:
        return self.exchange(Command("NOOP")).check("NOOP").response

    def last(self) -> int:
        return replies.parse_last(self.exchange(Command("LAST")).check("LAST").response.text)

    def quit(self) -> Response:
        """QUIT; in TRANSACTION this commits the DELE marks (RFC 1939 section 6)."""
        try:
            reply = self.exchange(Command("QUIT")).check("QUIT (deleting marked messages)")
        finally:
            self.transport.close()
        return reply.response

    def close(self) -> None:
        """Drop the connection without QUIT: marked messages stay on the server."""
        self.transport.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()  # after QUIT this is a no-op; otherwise nothing is deleted

    @property
    def state(self) -> State:
        return self.connection.state

    # -- authentication --------------------------------------------------------

    def login(self, method: str, username: str, secret: str, host: str, port: int) -> str:
        """Authenticate; ``method`` "auto" picks the strongest offered. Returns the method used."""
        timestamp = replies.apop_timestamp(self.greeting.text)
        if method == "auto":
            method = auth.choose_method(self.capabilities, timestamp, tls=self.transport.tls_active)
        if method == "user":
            self._login_user(username, secret)
        elif method == "apop":
            self._login_apop(username, secret, timestamp)
        else:
            self._login_sasl(auth.sasl_exchange(method, username, secret, host, port))
        self.capa()  # RFC 2449 section 5: capabilities may change after login
        self.auth_method = method
        return method

    def _login_user(self, username: str, secret: str) -> None:
        self.exchange(Command("USER", (username,))).check(f"USER {username}")
        self._check_login(self.exchange(Command("PASS", (secret,))), username)

    def _login_apop(self, username: str, secret: str, timestamp: str | None) -> None:
        if timestamp is None:
            raise UsageError("the server's greeting has no APOP timestamp: it does not offer APOP")
        digest = auth.apop_digest(timestamp, secret)
        self._check_login(self.exchange(Command("APOP", (username, digest))), username)

    def _login_sasl(self, sasl: auth.SaslExchange) -> None:
        self._finish_current()
        command = Command("AUTH", (sasl.mechanism,))
        pending = list(sasl.responses)
        if sasl.initial is not None:
            with_initial = Command.fits("AUTH", sasl.mechanism, sasl.initial)
            if with_initial is not None:
                command = with_initial
            else:  # RFC 5034 section 4: too long for the AUTH line, send it when asked
                pending.insert(0, sasl.initial)
        self.transport.write(self.connection.send(command))
        self._log("C", command.redacted())
        while True:
            event = self.next_event()
            if isinstance(event, Response):
                self._log("S", event.line)
                self._check_login(Reply(self, command, event), sasl.mechanism)
                return
            if not isinstance(event, Continuation):
                raise ProtocolError("unexpected data during SASL authentication")
            self._log("S", "+ (challenge)")
            answer = pending.pop(0) if pending else "*"  # "*" cancels (RFC 5034)
            self.transport.write(self.connection.send_sasl_response(answer))
            self._log("C", "***" if answer != "*" else "*")

    def _check_login(self, reply: Reply, who: str) -> None:
        if reply.ok:
            return
        if reply.response.code in _BUSY_CODES:
            raise error_for(reply.response, "logging in")
        raise AuthError(
            f"the server refused the login ({who}): {reply.response.line[:200]!r}; "
            "check the username, the password or token, and the auth method"
        )
