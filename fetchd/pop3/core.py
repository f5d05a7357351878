"""The sans-IO POP3 client core: bytes in, events out, commands to bytes.

``Connection`` never touches a socket. The transport feeds it whatever it read
(``receive_data``), pulls events (``next_event``) until ``NEED_DATA``, and asks
it for the bytes of each command (``send``). Because every reply is read
according to the command it answers, the core knows whether to expect a
status line, a SASL challenge or a dot-terminated body. Commands may be
pipelined (RFC 2449 section 6.6) except across state changes.

Any bytes the server may not send raise ``ProtocolError`` and leave the
connection in the sticky ERROR state.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import NoReturn

from fetchd.errors import NetworkError, ProtocolError, UsageError
from fetchd.pop3 import states
from fetchd.pop3.commands import Command, sasl_line
from fetchd.pop3.events import NEED_DATA, Continuation, Data, EndOfData, Event, NeedData, Response
from fetchd.pop3.states import State

#: RFC 1939 section 3 allows 512 octets; real servers exceed it, so be lenient but bounded.
MAX_STATUS_LINE = 8192

#: SASL challenges answered in one AUTH exchange. The mechanisms fetchd speaks
#: need at most two (LOGIN); a server that keeps challenging holds the poll forever.
MAX_SASL_CHALLENGES = 8


@dataclass(slots=True)
class _Pending:
    """A sent command whose reply has not been read completely."""

    command: Command
    in_body: bool = False


class Connection:
    """One POP3 session's protocol state, fed by any transport."""

    def __init__(self) -> None:
        self.state = State.GREETING
        self._buffer = bytearray()
        self._pending: deque[_Pending] = deque()
        self._greeted = False
        self._at_line_start = True
        self._sasl = False
        self._sasl_challenges = 0
        self._sasl_cancelled = False
        self._body_done = False
        self._peer_closed = False

    # -- sending -----------------------------------------------------------

    def send(self, command: Command) -> bytes:
        """Validate ``command`` for the current state and return its bytes."""
        self._check_can_send(command.name)
        self._pending.append(_Pending(command))
        self.state = states.state_after_send(self.state, command.name)
        if command.name == "AUTH":
            self._sasl_challenges = 0
            self._sasl_cancelled = False
        return command.to_bytes()

    def send_sasl_response(self, payload: str) -> bytes:
        """Answer a ``Continuation``; ``*`` cancels the exchange (RFC 5034 section 4)."""
        if not self._sasl or not self._pending or self._pending[0].command.name != "AUTH":
            raise UsageError("no SASL exchange is waiting for a response")
        self._sasl = False
        self._sasl_cancelled = payload == "*"
        return sasl_line(payload)

    @property
    def pending(self) -> int:
        """How many sent commands still await (part of) their reply."""
        return len(self._pending)

    @property
    def buffered(self) -> int:
        """Octets received but not yet handed out as events."""
        return len(self._buffer)

    def check_synchronized(self) -> None:
        """Fail if the server sent anything while no reply is due.

        Replies are matched to commands by order only (RFC 1939 section 3), so
        one extra reply would pair every later reply with the wrong command:
        a body read as RETR 2 that is really RETR 1's second copy.
        """
        if self.state is State.ERROR:
            raise ProtocolError("the POP3 session failed earlier and cannot be used")
        if not self._pending and self._buffer:
            self._fail("the server sent data nobody asked for")

    def abandon(self) -> None:
        """Make the session unusable: a reply was left half read (over its cap, say)."""
        self.state = State.ERROR

    def _check_can_send(self, name: str) -> None:
        if self.state is State.ERROR:
            raise UsageError("the POP3 session failed earlier and cannot be used")
        if self._pending and (
            name in states.STATE_CHANGING or self._pending[-1].command.name in states.STATE_CHANGING
        ):
            # RFC 2449 section 6.6: never pipeline across a state change.
            raise UsageError(f"{name} must wait for the reply to the previous command")
        if name not in states.LEGAL_COMMANDS[self.state]:
            raise UsageError(f"{name} is not allowed in the {self.state.value} state")

    # -- receiving ---------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Add bytes read from the server; ``b""`` means the server closed."""
        if data:
            self._buffer += data
        else:
            self._peer_closed = True

    def next_event(self) -> Event | NeedData:
        """The next thing the server said, or ``NEED_DATA``."""
        if self.state is State.ERROR:
            raise ProtocolError("the POP3 session failed earlier and cannot be used")
        event = self._next_event()
        if event is NEED_DATA and self._peer_closed and (self._pending or not self._greeted):
            self.state = State.ERROR
            doing = self._pending[0].command.name if self._pending else "the greeting"
            raise NetworkError(f"the server closed the connection while sending {doing}")
        return event

    def _next_event(self) -> Event | NeedData:
        if not self._greeted:
            return self._read_greeting()
        if not self._pending:
            if self._buffer:
                self._fail("the server sent data nobody asked for")
            return NEED_DATA
        if self._pending[0].in_body:
            return self._read_body()
        return self._read_reply()

    def _read_greeting(self) -> Response | NeedData:
        response = self._read_status("")
        if not isinstance(response, Response):
            return NEED_DATA
        if not response.ok:
            self.state = State.CLOSED
        else:
            self.state = State.AUTHORIZATION
        self._greeted = True
        return response

    def _read_reply(self) -> Event | NeedData:
        pending = self._pending[0]
        name = pending.command.name
        response = self._read_status(name, sasl=name == "AUTH")
        if isinstance(response, Continuation):
            self._challenged()
        if not isinstance(response, Response):
            return response
        self._sasl = False
        if response.ok and pending.command.multiline:
            pending.in_body = True
            self._at_line_start = True
            return response
        self._pending.popleft()
        self._after_reply(name, response.ok)
        return response

    def _challenged(self) -> None:
        if self._sasl:
            self._fail("a second SASL challenge before the client answered the first")
        if self._sasl_cancelled:
            # RFC 5034 section 4: after "*" the server must answer -ERR.
            self._fail("a SASL challenge after the client cancelled the exchange")
        self._sasl_challenges += 1
        if self._sasl_challenges > MAX_SASL_CHALLENGES:
            self._fail(f"more than {MAX_SASL_CHALLENGES} SASL challenges")
        self._sasl = True

    def _after_reply(self, name: str, ok: bool) -> None:
        self.state = states.next_state(self.state, name, ok)
        if name == "STLS" and ok and self._buffer:
            # RFC 2595 section 4: bytes after the STLS reply would be read as if
            # protected by TLS; a man in the middle could inject commands that way.
            self._fail("the server sent data after accepting STLS")

    def _read_status(self, name: str, *, sasl: bool = False) -> Response | Continuation | NeedData:
        end = self._buffer.find(b"\n")
        if end < 0:
            if len(self._buffer) > MAX_STATUS_LINE:
                self._fail(f"status line longer than {MAX_STATUS_LINE} octets")
            return NEED_DATA
        if end > MAX_STATUS_LINE:
            # The same cap whether the line came in one read or several: TCP's
            # segmentation must not decide whether a reply is accepted.
            self._fail(f"status line longer than {MAX_STATUS_LINE} octets")
        raw = bytes(self._buffer[:end]).rstrip(b"\r")
        del self._buffer[: end + 1]
        if sasl and (raw == b"+" or raw.startswith(b"+ ")):
            return Continuation(raw[2:].decode("ascii", "replace"))
        return self._parse_status(raw, name)

    def _parse_status(self, raw: bytes, name: str) -> Response:
        upper = raw[:4].upper()
        if upper.startswith(b"+OK") and raw[3:4] in (b"", b" "):
            ok, rest = True, raw[4:]
        elif upper == b"-ERR" and raw[4:5] in (b"", b" "):
            ok, rest = False, raw[5:]
        else:
            shown = raw[:60].decode("ascii", "backslashreplace")
            self._fail(f"expected +OK or -ERR in reply to {name or 'the greeting'}, got {shown!r}")
        text = rest.decode("utf-8", "replace")
        code = parse_response_code(text)
        return Response(ok=ok, text=text, code=code, command=name, raw=bytes(rest))

    def _read_body(self) -> Data | EndOfData | NeedData:
        if self._body_done:
            self._body_done = False
            return EndOfData(self._pending.popleft().command.name)
        chunks, self._body_done = self._unstuff()
        if chunks:
            return Data(b"".join(chunks))  # the EndOfData, if any, comes next call
        return self._read_body() if self._body_done else NEED_DATA

    def _fail(self, message: str) -> NoReturn:
        self.state = State.ERROR
        raise ProtocolError(f"the server violated POP3: {message}")

    # -- dot-unstuffing ----------------------------------------------------

    def _unstuff(self) -> tuple[list[bytes], bool]:
        """Take body bytes off the buffer, removing dot-stuffing (RFC 1939 section 3).

        Works on raw bytes and searches for ``LF .`` only, so long lines and
        binary content cost nothing extra. Returns the chunks and whether the
        terminating ``.`` line was consumed.
        """
        buf = self._buffer
        size = len(buf)
        chunks: list[bytes] = []
        pos = 0
        ended = False
        while pos < size:
            if self._at_line_start and buf[pos] == 0x2E:  # "."
                tail = bytes(buf[pos + 1 : pos + 3])
                if tail in (b"\r\n",) or tail[:1] == b"\n":
                    pos += 2 if tail[:1] == b"\n" else 3
                    ended = True
                    break
                if tail in (b"", b"\r"):
                    break  # cannot tell yet: terminator or stuffed line
                pos += 1
            self._at_line_start = False
            found = _dot_line(buf, pos)
            if found < 0:
                chunks.append(bytes(buf[pos:]))
                self._at_line_start = buf[size - 1] == 0x0A
                pos = size
                break
            chunks.append(bytes(buf[pos : found + 1]))
            pos = found + 1
            self._at_line_start = True
        del buf[:pos]
        return chunks, ended


def _dot_line(buf: bytearray, pos: int) -> int:
    """Where the next ``LF .`` in ``buf`` starts, from ``pos``; -1 if there is none.

    A dot at all is looked for first: a one-byte search runs about fifty
    times faster than the two-byte one, and many bodies hold few dots
    (base64 none), so the two-byte search runs only from the first dot on.
    """
    dot = buf.find(b".", pos + 1)
    return -1 if dot < 0 else buf.find(b"\n.", dot - 1)


def parse_response_code(text: str) -> str | None:
    """The RFC 2449 section 8 response code at the start of ``text``, upper-cased."""
    if not text.startswith("["):
        return None
    end = text.find("]")
    if end < 2:
        return None
    return text[1:end].upper()
