"""The blocking byte pipe under a POP3 session: TCP, TLS, timeouts.

Every ``OSError`` and ``ssl.SSLError`` is mapped here into ``NetworkError``,
``NetworkTimeout`` or ``TLSError``, so nothing above this module sees them.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from fetchd.errors import NetworkError, NetworkTimeout, TLSError

#: Bytes asked of the kernel per read: large reads keep Python's per-call cost low.
READ_SIZE = 256 * 1024


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait for a connection and for each read or write."""

    connect: float = 30.0
    read: float = 60.0


class Transport(Protocol):
    """What a POP3 session needs from the connection under it."""

    @property
    def tls_active(self) -> bool: ...

    def read(self) -> bytes:
        """Some bytes, or ``b""`` when the server closed the connection."""
        ...

    def write(self, data: bytes) -> None: ...

    def start_tls(self) -> None:
        """Wrap the connection in TLS after an accepted STLS (RFC 2595)."""
        ...

    def close(self) -> None: ...


def tls_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """A verifying client context: system CAs plus ``ca_file``, TLS 1.2 or later (RFC 8314).

    Built once per version of ``ca_file`` and shared (an SSLContext is safe to
    share between threads): loading the system store costs tens of
    milliseconds, at every login otherwise.
    """
    try:
        stamp = ca_file.stat().st_mtime_ns if ca_file is not None else None
    except OSError as exc:
        raise TLSError(f"cannot load the CA file {ca_file}: {exc.strerror}") from exc
    return _context(ca_file, stamp)


@functools.lru_cache(maxsize=16)
def _context(ca_file: Path | None, stamp: int | None) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context()
        if ca_file is not None:
            context.load_verify_locations(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise TLSError(f"cannot load the CA file {ca_file}: {exc}") from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class SocketTransport:
    """A TCP connection, optionally TLS from the start (port 995) or after STLS."""

    def __init__(self, sock: socket.socket, host: str, context: ssl.SSLContext | None) -> None:
        self._sock: socket.socket = sock
        self._host = host
        self._context = context

    @classmethod
    def open(
        cls,
        host: str,
        port: int,
        *,
        timeouts: Timeouts,
        context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
    ) -> SocketTransport:
        try:
            sock = socket.create_connection((host, port), timeout=timeouts.connect)
        except TimeoutError as exc:
            raise NetworkTimeout(f"connecting to {host}:{port} timed out") from exc
        except OSError as exc:
            raise NetworkError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from exc
        sock.settimeout(timeouts.read)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = cls(sock, host, context)
        if implicit_tls:
            transport.start_tls()
        return transport

    @property
    def tls_active(self) -> bool:
        return isinstance(self._sock, ssl.SSLSocket)

    def start_tls(self) -> None:
        context = self._context or tls_context()
        try:
            self._sock = context.wrap_socket(self._sock, server_hostname=self._host)
        except ssl.SSLCertVerificationError as exc:
            self.close()
            raise TLSError(
                f"the certificate of {self._host} does not verify ({exc.verify_message}); "
                "if the server uses a private CA, set ca_file for this account"
            ) from exc
        except (ssl.SSLError, OSError) as exc:
            self.close()
            raise TLSError(f"TLS handshake with {self._host} failed: {exc}") from exc

    def read(self) -> bytes:
        with self._mapped_errors("reading from", "sent nothing within the read timeout"):
            return self._sock.recv(READ_SIZE)

    def write(self, data: bytes) -> None:
        with self._mapped_errors("writing to", "stopped accepting data"):
            self._sock.sendall(data)

    @contextlib.contextmanager
    def _mapped_errors(self, doing: str, when_silent: str) -> Iterator[None]:
        """The one place where socket and TLS errors become fetchd's own."""
        try:
            yield
        except TimeoutError as exc:
            raise NetworkTimeout(f"{self._host} {when_silent}") from exc
        except ssl.SSLError as exc:
            raise TLSError(f"TLS error {doing} {self._host}: {exc}") from exc
        except OSError as exc:
            raise NetworkError(f"{doing} {self._host} failed: {exc.strerror or exc}") from exc

    def close(self) -> None:
        # Closing is best effort: the session is over either way.
        with contextlib.suppress(OSError):
            self._sock.close()
