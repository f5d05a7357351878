"""The test server's end of one TCP connection: command lines in, replies out.

``Connection`` knows nothing of POP3 states. It reads command lines within the
RFC 2449 limit, writes status lines and dot-stuffed multi-line bodies (RFC 1939
section 3), switches to TLS, and records both directions in the server's
transcript. ``fetchd.testing._session.Session`` is the POP3 state machine on top.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import ssl
import threading
from typing import BinaryIO, Protocol

from fetchd.testing._wire import BLOCK, body_blocks

# RFC 2449 section 4: command lines are at most 255 octets including CRLF.
_MAX_COMMAND = 255
# RFC 5034 section 4 does not bound continuation lines (OAuth tokens are long).
_MAX_CONTINUATION = 64 * 1024
_IDLE_TIMEOUT = 120.0


class Hangup(Exception):
    """End the session without another word (injected faults, QUIT)."""


class Owner(Protocol):
    """What a connection needs of the server that accepted it (``POP3TestServer``).

    A protocol, not an import of ``server``: the server imports this module.
    """

    def track(self, old: socket.socket | None, new: socket.socket | None) -> None: ...

    def record(self, side: str, line: str) -> None: ...

    @property
    def stopping(self) -> threading.Event: ...


class Connection:
    """One accepted socket, tracked by the server so that ``stop`` can end it."""

    def __init__(self, owner: Owner, conn: socket.socket, *, eol: bytes) -> None:
        self.owner = owner
        self.conn = conn
        self.conn.settimeout(_IDLE_TIMEOUT)
        owner.track(None, conn)
        self.reader: BinaryIO = conn.makefile("rb")
        self.eol = eol
        #: Seconds between the bytes of what is sent now (the "trickle" fault); 0 sends at once.
        self.trickle = 0.0
        #: Collects what is sent instead of sending it (the "repeat" fault).
        self.held: list[bytes] | None = None

    def start_tls(self, context: ssl.SSLContext) -> None:
        """Wrap the connection; bytes the client sent early are dropped with the reader."""
        self.reader.close()
        tls = context.wrap_socket(self.conn, server_side=True)
        self.owner.track(self.conn, tls)
        self.conn = tls
        self.reader = tls.makefile("rb")

    def close(self) -> None:
        self.owner.track(self.conn, None)
        self.reader.close()
        shutdown_quietly(self.conn)

    # -- reading ---------------------------------------------------------------

    def read_command(self) -> str | None:
        """Next command line without CRLF; None at end of stream. Over-long -> -ERR."""
        while True:
            raw = self.reader.readline(_MAX_COMMAND + 1)
            if not raw:
                return None
            if len(raw) > _MAX_COMMAND or not raw.endswith(b"\n"):
                self._discard_rest_of_line(raw)
                self.owner.record("C", raw[:_MAX_COMMAND].decode("latin-1") + "...")
                self.reply("-ERR command line too long (RFC 2449 allows 255 octets)")
                continue
            line = raw.rstrip(b"\r\n").decode("latin-1")
            self.owner.record("C", line)
            return line

    def read_continuation(self) -> str:
        """A SASL client response line (RFC 5034 section 4); hangs up at end of stream."""
        raw = self.reader.readline(_MAX_CONTINUATION)
        if not raw:
            raise Hangup
        line = raw.rstrip(b"\r\n").decode("latin-1")
        self.owner.record("C", line)
        return line

    def _discard_rest_of_line(self, raw: bytes) -> None:
        while raw and not raw.endswith(b"\n"):
            raw = self.reader.readline(BLOCK)

    # -- writing ---------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Every byte the server sends goes through here, so faults can shape it."""
        if self.held is not None:
            self.held.append(data)
            return
        if not self.trickle:
            self.conn.sendall(data)
            return
        for index in range(len(data)):
            if self.owner.stopping.wait(self.trickle):
                raise Hangup
            self.conn.sendall(data[index : index + 1])

    def reply(self, status: str) -> None:
        self.owner.record("S", status)
        self.send(status.encode("latin-1") + self.eol)

    def reply_lines(self, status: str, lines: list[str]) -> None:
        """A short multi-line reply (CAPA, LIST, UIDL), dot-stuffed and terminated."""
        self.owner.record("S", status)
        body = [status, *("." + line if line.startswith(".") else line for line in lines), "."]
        self.send(self.eol.join(part.encode("latin-1") for part in body) + self.eol)

    def send_message(self, content: bytes, *, cut_after: int | None = None) -> None:
        """Stream ``content`` as a multi-line body in blocks; hang up after ``cut_after``."""
        sent = 0
        for block in body_blocks(content, self.eol):
            if cut_after is not None and sent + len(block) >= cut_after:
                self.send(block[: max(cut_after - sent, 1)])
                raise Hangup
            self.send(block)
            sent += len(block)
        self.send(b"." + self.eol)

    def send_endless(self, status: str) -> None:
        """``status`` and then numbered lines without end, until the client hangs up."""
        self.reply(status)
        for start in itertools.count(1, 1000):
            if self.owner.stopping.is_set():
                raise Hangup
            lines = (f"{n} filler-{n}".encode() + self.eol for n in range(start, start + 1000))
            self.send(b"".join(lines))


def shutdown_quietly(conn: socket.socket) -> None:
    """Close ``conn``, waking a thread blocked reading it; errors mean it is gone already."""
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)
    conn.close()
