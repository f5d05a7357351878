"""The wire limit: the least work a POP3 client can do to fetch a whole mailbox.

A pipelined raw-socket client (PIPELINING, RFC 2449 section 6.6): log in, ask
STAT, keep a bounded window of RETR commands in flight, read every reply, QUIT.
The window is bounded so that neither side blocks on a full socket buffer
while the other is still writing. Modes:

- ``discard``: replies are parsed and thrown away (the network and server limit);
- ``files``: each message is written to its own file in ``OUT/new``, dot-stuffing
  undone and CRLF turned into LF, with no fsync (the limit with a file system);
- ``uidl``: only the UIDL listing, what a pass that finds nothing new must read.

Run as a separate process, like the clients, so its CPU time and peak memory
are measured the same way. The password comes from ``BENCH_POP3_PASSWORD``.
Prints one JSON line: ``{"messages": N, "octets": N}``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import sys
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

_RECV = 1 << 20
_MAX_STATUS = 512  # RFC 1939 section 3: a status line is at most 512 octets


class Reader:
    """Buffered replies from one socket; the buffer only grows to one recv past a line."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def _fill(self) -> None:
        data = self.sock.recv(_RECV)
        if not data:
            raise EOFError("the server closed the connection")
        self.buf += data

    def status(self) -> bytes:
        """The next status line, which must be +OK."""
        while (end := self.buf.find(b"\r\n")) < 0:
            if len(self.buf) > _MAX_STATUS:
                raise ValueError("status line longer than 512 octets")
            self._fill()
        line = bytes(self.buf[:end])
        del self.buf[: end + 2]
        if not line.startswith(b"+OK"):
            raise RuntimeError(f"server said {line[:80]!r}")
        return line

    def body(self, sink: Callable[[bytes], None] | None) -> int:
        """Stream one multi-line body (still dot-stuffed) to ``sink``; return its octets.

        The buffer is cut only after a CRLF, so it always starts at a line start,
        where a lone "." line ends the reply (RFC 1939 section 3).
        """
        octets = 0
        while True:
            if self.buf.startswith(b".\r\n"):
                del self.buf[:3]
                return octets
            end = self.buf.find(b"\r\n.\r\n")
            cut = end + 2 if end >= 0 else self.buf.rfind(b"\r\n") + 2
            if cut >= 2:
                if sink is not None:
                    sink(bytes(self.buf[:cut]))
                octets += cut
                del self.buf[: end + 5 if end >= 0 else cut]
                if end >= 0:
                    return octets
            self._fill()


class FileSink:
    """Writes one message per file, unstuffing dots and turning CRLF into LF."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.stream: BinaryIO | None = None
        self.number = 0

    def start(self) -> None:
        self.number += 1
        self.stream = (self.directory / f"{self.number:07d}.eml").open("wb")

    def __call__(self, chunk: bytes) -> None:
        assert self.stream is not None
        # Each chunk starts at a line start: prefix CRLF so the first line unstuffs too.
        data = (b"\r\n" + chunk).replace(b"\r\n..", b"\r\n.")[2:]
        self.stream.write(data.replace(b"\r\n", b"\n"))

    def finish(self) -> None:
        assert self.stream is not None
        self.stream.close()
        self.stream = None


def connect(host: str, port: int, ca_file: str | None) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=120)
    if ca_file is None:
        return sock
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context.wrap_socket(sock, server_hostname=host)


def login(sock: socket.socket, reader: Reader, user: str, password: str) -> int:
    """Authenticate with USER/PASS (not pipelined: RFC 2449 section 6.6); return STAT's count."""
    reader.status()
    for command in (f"USER {user}", f"PASS {password}"):
        sock.sendall(command.encode() + b"\r\n")
        reader.status()
    sock.sendall(b"STAT\r\n")
    return int(reader.status().split()[1])


def retrieve_all(
    sock: socket.socket, reader: Reader, count: int, window: int, sink: FileSink | None
) -> int:
    """RETR 1..count with at most ``window`` commands in flight; return the octets read."""
    sent = octets = 0
    for number in range(1, count + 1):
        if sent < number + window // 2 and sent < count:
            upto = min(count, number + window - 1)
            sock.sendall(b"".join(b"RETR %d\r\n" % n for n in range(sent + 1, upto + 1)))
            sent = upto
        reader.status()
        if sink is None:
            octets += reader.body(None)
        else:
            sink.start()
            octets += reader.body(sink)
            sink.finish()
    return octets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--ca-file", help="use implicit TLS, trusting this CA")
    parser.add_argument("--mode", choices=("discard", "files", "uidl"), required=True)
    parser.add_argument("--out", type=Path, help="directory for --mode files")
    parser.add_argument("--window", type=int, default=100)
    args = parser.parse_args(argv)
    sock = connect(args.host, args.port, args.ca_file)
    reader = Reader(sock)
    count = login(sock, reader, args.user, os.environ["BENCH_POP3_PASSWORD"])
    if args.mode == "uidl":
        sock.sendall(b"UIDL\r\n")
        reader.status()
        lines: list[bytes] = []
        octets = reader.body(lines.append)
        count = b"".join(lines).count(b"\r\n")
    else:
        sink = FileSink(args.out / "new") if args.mode == "files" else None
        octets = retrieve_all(sock, reader, count, max(2, args.window), sink)
    sock.sendall(b"QUIT\r\n")
    reader.status()
    sock.close()
    print(json.dumps({"messages": count, "octets": octets}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
