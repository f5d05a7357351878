"""A POP3 server fast enough to list a mailbox of a million messages in a blink.

Dovecot needs minutes (and gigabytes of index) to hold a million messages;
what the big-mailbox benchmark measures is the client's cost of reading and
comparing a long listing, so this server keeps the listing as two
precomputed byte strings and makes each message up when it is retrieved.
It speaks just enough POP3 for fetchd and mpop: CAPA, USER/PASS, STAT, LIST,
UIDL (whole and single), RETR, TOP, NOOP, RSET, QUIT, with pipelining.

Message ``n`` (1-based) has the UID ``uid-<n>`` and a fixed small size; the
mailbox may grow between sessions (``resize``) to offer new mail.

Run as a script it serves until killed, for another process (the daemon
benchmark, ``bench/daemon.py``: any user, any password, one port for all its
accounts); ``--delay`` holds each greeting back, for a server slower than the
daemon's schedule:

    python3 bench/bigbox_server.py [--messages N] [--delay SECONDS]   # prints the port
"""

from __future__ import annotations

import argparse
import socket
import socketserver
import threading
import time
from typing import ClassVar

__all__ = ["BigMailbox", "serve"]

_MESSAGE_BODY = b"This message exists to be listed, rarely to be fetched.\r\n" * 8


def message(number: int) -> bytes:
    """The bytes of message ``number`` (1-based), CRLF line ends, no dot-stuffing needed."""
    return (
        f"From: sender{number % 97}@example.org\r\n"
        f"To: bench@example.org\r\n"
        f"Subject: message {number}\r\n"
        f"Message-ID: <{number}@bigbox.example>\r\n"
        f"Date: Tue, 01 Dec 2026 12:00:00 +0000\r\n\r\n"
    ).encode() + _MESSAGE_BODY


class BigMailbox:
    """A mailbox of ``count`` messages, whose LIST and UIDL answers are made once per size."""

    def __init__(self, count: int) -> None:
        self._lock = threading.Lock()
        self._list: list[bytes] = []
        self._uidl: list[bytes] = []
        self._sizes: list[int] = []
        self._cached: tuple[int, int, bytes, bytes] | None = None
        self.count = 0
        self.resize(count)

    def resize(self, count: int) -> None:
        """Offer the first ``count`` messages from the next session on."""
        with self._lock:
            for n in range(len(self._sizes) + 1, count + 1):
                size = len(message(n))
                self._sizes.append(size)
                self._list.append(b"%d %d\r\n" % (n, size))
                self._uidl.append(b"%d uid-%d\r\n" % (n, n))
            self.count = count
            self._cached = None

    def listing(self) -> tuple[int, int, bytes, bytes]:
        """The message count, their octets, and the bodies of the LIST and UIDL answers."""
        with self._lock:
            if self._cached is None:
                count = self.count
                self._cached = (
                    count,
                    sum(self._sizes[:count]),
                    b"".join(self._list[:count]),
                    b"".join(self._uidl[:count]),
                )
            return self._cached


class _Session(socketserver.StreamRequestHandler):
    mailbox: ClassVar[BigMailbox]
    #: Seconds each greeting is held back.
    delay: ClassVar[float] = 0.0
    wbufsize = 0  # every answer goes out whole with sendall: pipelined clients wait for none

    def handle(self) -> None:
        if self.delay:
            time.sleep(self.delay)
        count, octets, listed, uidls = self.mailbox.listing()
        self.wfile.write(b"+OK bigbox ready\r\n")
        while line := self.rfile.readline(1024):
            verb, _, argument = line.strip().partition(b" ")
            verb = verb.upper()
            if verb == b"QUIT":
                self.wfile.write(b"+OK bye\r\n")
                break
            self.wfile.write(_answer(verb, argument, (count, octets, listed, uidls)))


def _answer(verb: bytes, argument: bytes, listing: tuple[int, int, bytes, bytes]) -> bytes:  # noqa: PLR0911
    count, octets, listed, uidls = listing
    number = int(argument.split()[0]) if argument[:1].isdigit() else 0
    if verb == b"CAPA":
        return b"+OK\r\nUSER\r\nUIDL\r\nTOP\r\nPIPELINING\r\n.\r\n"
    if verb in (b"USER", b"PASS", b"NOOP", b"RSET"):
        return b"+OK\r\n"
    if verb == b"STAT":
        return b"+OK %d %d\r\n" % (count, octets)
    if verb in (b"LIST", b"UIDL") and not argument:
        return b"+OK\r\n" + (listed if verb == b"LIST" else uidls) + b".\r\n"
    if not 1 <= number <= count:
        return b"-ERR no such message\r\n"
    if verb == b"LIST":
        return b"+OK %d %d\r\n" % (number, len(message(number)))
    if verb == b"UIDL":
        return b"+OK %d uid-%d\r\n" % (number, number)
    if verb in (b"RETR", b"TOP"):
        text = message(number)
        if verb == b"TOP":
            text = text.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
        return b"+OK\r\n" + text + b".\r\n"
    return b"-ERR unknown command\r\n"


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    address_family = socket.AF_INET
    request_queue_size = 1024  # a daemon with many accounts may connect in bursts


def serve(mailbox: BigMailbox, delay: float = 0.0) -> tuple[_Server, int]:
    """Start serving ``mailbox`` on a free loopback port, in a background thread."""
    handler = type("Session", (_Session,), {"mailbox": mailbox, "delay": delay})
    server = _Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    _server, port = serve(BigMailbox(args.messages), args.delay)
    print(port, flush=True)
    threading.Event().wait()  # until killed


if __name__ == "__main__":
    main()
