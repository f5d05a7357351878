"""A tiny line-based POP3 speaker for testing the test servers themselves.

Deliberately independent of fetchd's own client: the servers are what the
client is tested against, so they are checked with nothing but sockets.
"""

from __future__ import annotations

import socket
import ssl


class RawPOP3:
    """One connection; every method reads exactly the reply it asks for."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None = None,
        server_hostname: str = "localhost",
        timeout: float = 10.0,
    ) -> None:
        sock = socket.create_connection((host, port), timeout=timeout)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=server_hostname)
        self.sock = sock
        self.reader = sock.makefile("rb")

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def __enter__(self) -> RawPOP3:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def line(self) -> bytes:
        """The next line including its line ending; b"" at end of stream."""
        return self.reader.readline(1 << 20)

    def status(self) -> str:
        return self.line().rstrip(b"\r\n").decode("latin-1")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def cmd(self, command: str) -> str:
        """Send one command and return its status line."""
        self.send(command.encode("latin-1") + b"\r\n")
        return self.status()

    def body(self) -> bytes:
        """The rest of a multi-line reply, dot-stuffing undone, terminator removed."""
        out = bytearray()
        while True:
            raw = self.line()
            if raw in (b"", b".\r\n"):
                if raw == b"":
                    raise EOFError("connection closed inside a multi-line reply")
                return bytes(out)
            out += raw[1:] if raw.startswith(b".") else raw

    def multi(self, command: str) -> tuple[str, list[str]]:
        """Status line and, if +OK, the lines of a multi-line reply."""
        status = self.cmd(command)
        if not status.startswith("+OK"):
            return status, []
        return status, self.body().decode("latin-1").splitlines()

    def login(self, user: str = "alice", password: str = "secret") -> str:
        assert self.cmd(f"USER {user}").startswith("+OK")
        return self.cmd(f"PASS {password}")

    def starttls(self, context: ssl.SSLContext, server_hostname: str = "localhost") -> None:
        self.reader.close()
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)
        self.reader = self.sock.makefile("rb")


def client_context(ca_file: str | None) -> ssl.SSLContext:
    """A verifying client context trusting only ``ca_file``."""
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
