"""A blocking POP3 session: the sans-IO core driven over a transport.

``Session.exchange`` sends one command and returns its ``Reply``;
``Session.pipelined`` keeps up to ``window`` commands in flight when the
server announced PIPELINING (RFC 2449 section 6.6) and yields the replies in
order. A reply's body streams: read it with ``read_into`` (a file) or
``read_all`` (small listings) before asking for the next reply.

The typed helpers (``stat``, ``retr`` ...) raise an ``AccountError`` for -ERR;
``exchange`` itself does not, so the interactive shell can show -ERR lines.

A hostile or broken server is bounded three ways. Order: replies pair with
commands by position only, so before each command the session checks that
nothing unasked arrived (``ensure_synchronized``), and ``expect`` checks a
body against LIST's size. Size: every body reader has a cap
(``ReplyTooLongError``). Time: ``timeout`` bounds one read, and also a whole
status line; a body gets ``timeout + allowed / MIN_RATE`` seconds, so a server
trickling a byte a second cannot hold a poll for ever (``NetworkTimeout``).
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import NoReturn, Protocol

from fetchd.errors import (
    AccountError,
    AuthError,
    NetworkError,
    NetworkTimeout,
    ProtocolError,
    ReplyTooLongError,
    ServerBusyError,
    ServerError,
    SizeMismatchError,
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

#: Seconds a status line may take (and the grace before a body's rate counts),
#: when the caller gives none; ``Timeouts.read`` by default.
DEFAULT_TIMEOUT = 60.0

#: The slowest body fetchd waits for, in octets a second, after ``timeout``:
#: 8 KiB/s is far below any working link (a 20 MB message may take 42 min),
#: yet a server trickling a byte a second is dropped after ``timeout``.
MIN_RATE = 8 * 1024

#: CAPA is a few dozen short lines (RFC 2449 section 6); these are generous.
CAPA_MAX_OCTETS = 64 * 1024
CAPA_MAX_LINES = 1000

#: LIST and UIDL lines: STAT's count plus slack (a listing should match STAT
#: exactly; the slack only spares a server that is off by a few), and on average
#: LISTING_LINE_OCTETS a line (RFC 1939 allows ~83 for UIDL, ~22 for LIST).
LISTING_SLACK_LINES = 16
LISTING_LINE_OCTETS = 600

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


#: How much of a body ``Reply.head`` keeps: enough to tell a status line.
HEAD_OCTETS = 8


def looks_like_status(head: bytes) -> bool:
    """Whether a body starts like a status line: a stray reply read as the real
    one's status line leaves the real one at the start of the body."""
    return _STATUS_START.match(head) is not None


_STATUS_START = re.compile(rb"(?:\+OK|-ERR)(?:[ \r\n]|\Z)", re.IGNORECASE)


def listing_caps(count: int) -> tuple[int, int]:
    """(max_octets, max_lines) for a LIST or UIDL listing of a ``count``-message maildrop."""
    lines = count + LISTING_SLACK_LINES
    return lines * LISTING_LINE_OCTETS, lines


class Reply:
    """One reply; ``response`` is its status line, the body (if any) streams.

    The reply owns its body's lifecycle: it pulls the body's events through
    its session under a deadline and says when it is ``done``. Every reader
    is bounded: ``read_into`` by ``limit``, ``read_all`` by ``max_octets``.
    """

    def __init__(self, session: Session, command: Command, response: Response) -> None:
        self.session = session
        self.command = command
        self.response = response
        self.octets = 0
        #: ``read_into`` was not strict and the body cannot be the size expected.
        self.unexpected_size = False
        #: The first octets of the body ``read_into`` read (up to ``HEAD_OCTETS``).
        self.head = b""
        self._open = response.ok and command.multiline

    @property
    def ok(self) -> bool:
        return self.response.ok

    @property
    def done(self) -> bool:
        """Whether the whole reply, body included, has been read."""
        return not self._open

    def chunks(self, *, allowed: int | None = None) -> Iterator[bytes]:
        """The body's bytes, dot-unstuffed, as they arrive.

        The body must arrive within ``timeout + allowed / MIN_RATE`` seconds,
        or, without ``allowed``, keep up MIN_RATE on average after ``timeout``.
        """
        start = time.monotonic() + self.session.timeout
        deadline = _Deadline(start, self.command)
        while self._open:
            deadline.at = start + (self.octets if allowed is None else allowed) / MIN_RATE
            event = self.session.next_event(deadline)
            if isinstance(event, Data):
                self.octets += len(event.data)
                yield event.data
            elif isinstance(event, EndOfData):
                self._open = False
                self.session.log_body(self)
            else:
                raise ProtocolError(f"unexpected {type(event).__name__} inside a reply body")

    def read_into(
        self,
        sink: Sink,
        *,
        limit: int | None = None,
        expect: int | None = None,
        strict: bool = True,
        line_ends: Callable[[], tuple[int, int]] | None = None,
    ) -> int:
        """Stream the body into ``sink``; returns its size in octets.

        More than ``limit`` octets raise ``ReplyTooLongError`` at once (the
        excess is not written). ``expect`` is LIST's size: a body that cannot
        be that size under any CRLF/LF conversion raises ``SizeMismatchError``,
        since it may be another command's reply; unless not ``strict``, when
        it sets ``unexpected_size`` for the caller to prove the reply its own.

        Judging a body of another size needs its LF and CRLF counts. A sink
        that can tell them (``line_ends``: LF, CRLF written so far) is asked
        only then; otherwise every chunk is counted on the way, two more
        passes over each octet of every body.
        """
        ends = None
        if line_ends is None:
            ends = _LineEnds()
            line_ends = ends.counts
        # A body at most doubles when every bare LF of what LIST counted became CRLF;
        # its time is reckoned on that, not on a generous ``limit``.
        bounds = [n for n in (limit, None if expect is None else 2 * expect) if n is not None]
        allowed = min(bounds) if bounds else None
        for chunk in self.chunks(allowed=allowed):
            if limit is not None and self.octets > limit:
                self._too_long(f"more than {limit} octets", limit)
            if expect is not None and ends is not None:
                ends.count(chunk)
            if len(self.head) < HEAD_OCTETS:
                self.head += chunk[: HEAD_OCTETS - len(self.head)]
            sink.write(chunk)
        if expect is None or _could_be(self.octets, expect, line_ends):
            return self.octets
        if not strict:
            self.unexpected_size = True
            return self.octets
        self.session.connection.abandon()
        raise SizeMismatchError(
            f"the reply to {self.command.redacted()} has {self.octets} octets but LIST "
            f"announced {expect}: it may belong to another command, so fetchd stops here"
        )

    def read_all(self, *, max_octets: int, max_lines: int | None = None) -> bytes:
        """The whole body in memory, for listings only: at most ``max_octets`` and ``max_lines``."""
        parts = []
        lines = 0
        for chunk in self.chunks(allowed=max_octets):
            if self.octets > max_octets:
                self._too_long(f"more than {max_octets} octets", max_octets)
            if max_lines is not None:
                lines += chunk.count(b"\n")
                if lines > max_lines:
                    self._too_long(f"more than {max_lines} lines", max_lines)
            parts.append(chunk)
        return b"".join(parts)

    def drain(self) -> None:
        """Read and drop the rest of the body (still under the rate deadline)."""
        for _ in self.chunks():
            pass

    def check(self, doing: str) -> Reply:
        if not self.response.ok:
            raise error_for(self.response, doing)
        return self

    def _too_long(self, what: str, limit: int) -> NoReturn:
        self.session.connection.abandon()
        raise ReplyTooLongError(
            f"the reply to {self.command.redacted()} went past its cap ({what}); "
            "fetchd stopped reading it and drops the connection",
            limit=limit,
        )


class _LineEnds:
    """Counts LF and CRLF across chunks, a CR at the end of one chunk included."""

    __slots__ = ("cr_last", "crlf", "lf")

    def __init__(self) -> None:
        self.lf = self.crlf = 0
        self.cr_last = False

    def count(self, chunk: bytes) -> None:
        self.lf += chunk.count(b"\n")
        self.crlf += chunk.count(b"\r\n") + (self.cr_last and chunk[:1] == b"\n")
        self.cr_last = chunk[-1:] == b"\r"

    def counts(self) -> tuple[int, int]:
        """The LF and the CRLF counted so far."""
        return self.lf, self.crlf


def _could_be(octets: int, size: int, line_ends: Callable[[], tuple[int, int]]) -> bool:
    """Whether ``size`` lies between a body of ``octets`` with CRLF->LF and with bare LF->CRLF.

    ``line_ends`` (LF, CRLF) is asked only for a body of another size.
    """
    if octets == size:
        return True
    lf, crlf = line_ends()
    return octets - crlf <= size <= octets + (lf - crlf)


@dataclass(slots=True)
class _Deadline:
    """When (time.monotonic) the reply to ``command`` (None: the greeting) must be complete."""

    at: float
    command: Command | None

    @property
    def what(self) -> str:  # only built when the deadline passed
        return "the greeting" if self.command is None else f"the reply to {self.command.redacted()}"


class Session:
    """One POP3 connection from greeting to QUIT."""

    def __init__(
        self,
        transport: Transport,
        *,
        transcript: Transcript | None = None,
        window: int = DEFAULT_WINDOW,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.transport = transport
        self.connection = Connection()
        self.capabilities = Capabilities(known=False)
        self.window = window
        #: Seconds a status line may take, and the grace before a body's rate counts.
        self.timeout = timeout
        self.pipelining_allowed = True
        #: The login method used, once logged in ("auto" resolved).
        self.auth_method: str | None = None
        self._transcript = transcript
        self._current: Reply | None = None
        self.greeting = self._read_greeting()

    # -- plumbing ------------------------------------------------------------

    def next_event(self, deadline: _Deadline) -> Event:
        """The next event; reads the transport until ``deadline``, then NetworkTimeout."""
        while True:
            event = self.connection.next_event()
            if event is not NEED_DATA:
                return event
            left = deadline.at - time.monotonic()
            try:
                if left <= 0:
                    raise NetworkTimeout("deadline passed")
                data = self.transport.read(left)
            except NetworkError as exc:
                self.connection.abandon()
                if isinstance(exc, NetworkTimeout) and time.monotonic() >= deadline.at:
                    raise NetworkTimeout(
                        f"{deadline.what} did not arrive in time (a server that stalls or "
                        "trickles); fetchd drops the connection and retries later"
                    ) from exc
                raise
            self.connection.receive_data(data)

    def _status_deadline(self, command: Command | None) -> _Deadline:
        return _Deadline(time.monotonic() + self.timeout, command)

    def _read_greeting(self) -> Response:
        event = self.next_event(self._status_deadline(None))
        assert isinstance(event, Response)  # the core only gives a Response first
        self._log("S", event.line)
        if not event.ok:
            self.transport.close()
            raise error_for(event, "connecting")
        return event

    def _read_response(self, command: Command) -> Reply:
        event = self.next_event(self._status_deadline(command))
        if isinstance(event, Continuation):
            raise ProtocolError(f"the server sent a SASL challenge in reply to {command.name}")
        if not isinstance(event, Response):
            raise ProtocolError(f"expected a status line in reply to {command.name}")
        reply = Reply(self, command, event)
        if reply.done:
            self._log("S", event.line)
        return reply

    def _log(self, direction: str, text: str, octets: int | None = None) -> None:
        if self._transcript is not None:
            self._transcript(direction, text, octets)

    def log_body(self, reply: Reply) -> None:
        self._log("S", reply.response.line, reply.octets)

    def _finish_current(self) -> None:
        current, self._current = self._current, None
        if current is not None and self.connection.state is not State.ERROR:
            current.drain()

    def ensure_synchronized(self) -> None:
        """Raise ProtocolError if the server sent anything while no reply is due.

        Checks the core's buffer and, without blocking, the connection (TLS
        records already decrypted included). Call it between replies: with
        replies still due it raises UsageError.
        """
        self._finish_current()
        if self.connection.pending:
            raise UsageError("replies are still due; read them before checking synchronization")
        data = self.transport.read_nowait()
        if data is not None:
            self.connection.receive_data(data)
        self.connection.check_synchronized()

    @property
    def pipelining(self) -> bool:
        return self.pipelining_allowed and "PIPELINING" in self.capabilities

    # -- commands ------------------------------------------------------------

    def exchange(self, command: Command) -> Reply:
        """Send one command and read its status line (the body streams after)."""
        self.ensure_synchronized()
        data = self.connection.send(command)
        self._log("C", command.redacted())
        self.transport.write(data)
        self._current = self._read_response(command)
        return self._current

    def pipelined(self, commands: Iterable[Command]) -> Iterator[Reply]:
        """Replies to ``commands`` in order, with a bounded window in flight."""
        self.ensure_synchronized()
        window = self.window if self.pipelining else 1
        todo = iter(commands)
        in_flight: deque[Command] = deque()
        exhausted = False
        while True:
            if not exhausted and len(in_flight) <= window // 2:
                exhausted = self._send_more(todo, in_flight, window)
            if not in_flight:
                self.connection.check_synchronized()  # what is buffered already: free
                return
            reply = self._read_response(in_flight.popleft())
            self._current = reply
            yield reply
            self._finish_current()

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
            body = reply.read_all(max_octets=CAPA_MAX_OCTETS, max_lines=CAPA_MAX_LINES)
            self.capabilities = replies.parse_capa(body)
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
        return replies.parse_stat(self.exchange(Command.stat()).check("STAT").response.text)

    def list(self) -> dict[int, int]:
        return replies.parse_scan_listing(self._capped_listing(Command.list()))

    def list_one(self, number: int) -> int:
        """LIST n's size; a reply about another message means replies are out of step."""
        reply = self.exchange(Command.list(number)).check(f"LIST {number}")
        said, size = replies.parse_scan_line(reply.response.text)
        self._check_about("LIST", number, said)
        return size

    def uidl(self) -> dict[int, str]:
        return replies.parse_uidl_listing(self._capped_listing(Command.uidl()))

    def uidl_one(self, number: int) -> str:
        reply = self.exchange(Command.uidl(number)).check(f"UIDL {number}")
        said, uid = replies.parse_uidl_line(reply.response.raw)
        self._check_about("UIDL", number, said)
        return uid

    def _capped_listing(self, command: Command) -> bytes:
        """LIST or UIDL, capped by what STAT says first (see ``listing_caps``)."""
        max_octets, max_lines = listing_caps(self.stat()[0])
        reply = self.exchange(command).check(command.name)
        return reply.read_all(max_octets=max_octets, max_lines=max_lines)

    def _check_about(self, name: str, number: int, said: int) -> None:
        if said != number:
            self.connection.abandon()
            raise ProtocolError(
                f"the server answered {name} {number} about message {said}: its replies are "
                "out of step with fetchd's commands"
            )

    def retr(
        self, number: int, sink: Sink, *, limit: int | None = None, expect: int | None = None
    ) -> int:
        reply = self.exchange(Command.retr(number)).check(f"RETR {number}")
        return reply.read_into(sink, limit=limit, expect=expect)

    def top(self, number: int, lines: int, sink: Sink, *, limit: int | None = None) -> int:
        """TOP n lines into ``sink``; more than ``limit`` octets raise ReplyTooLongError."""
        reply = self.exchange(Command.top(number, lines)).check(f"TOP {number}")
        return reply.read_into(sink, limit=limit)

    def dele(self, number: int) -> Response:
        return self.exchange(Command.dele(number)).check(f"DELE {number}").response

    def rset(self) -> Response:
        return self.exchange(Command("RSET")).check("RSET").response

    def noop(self) -> Response:
        return self.exchange(Command("NOOP")).check("NOOP").response

    def last(self) -> int:
        return replies.parse_last(self.exchange(Command.last()).check("LAST").response.text)

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
        command = Command("AUTH", (sasl.mechanism,))
        pending = list(sasl.responses)
        if sasl.initial is not None:
            with_initial = Command.fits("AUTH", sasl.mechanism, sasl.initial)
            if with_initial is not None:
                command = with_initial
            else:  # RFC 5034 section 4: too long for the AUTH line, send it when asked
                pending.insert(0, sasl.initial)
        self.ensure_synchronized()
        self.transport.write(self.connection.send(command))
        self._log("C", command.redacted())
        while True:  # the core bounds the round-trips (core.MAX_SASL_CHALLENGES)
            event = self.next_event(self._status_deadline(command))
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
