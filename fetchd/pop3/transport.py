"""The blocking byte pipe under a POP3 session: TCP, TLS, timeouts.

Every ``OSError`` and ``ssl.SSLError`` is mapped here into ``NetworkError``,
``NetworkTimeout`` or ``TLSError``, so nothing above this module sees them.
"""

from __future__ import annotations

import contextlib
import functools
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from fetchd.errors import NetworkError, NetworkTimeout, TLSError

#: One ``getaddrinfo`` answer: family, type, protocol, canonical name, address.
_Address = tuple[socket.AddressFamily, socket.SocketKind, int, str, Any]

#: Bytes asked of the kernel per read: large reads keep Python's per-call cost low.
READ_SIZE = 256 * 1024


@dataclass(frozen=True)
class Timeouts:
    """Seconds for connecting (TCP, then the TLS handshake: each in total) and for each read.

    The session turns ``read`` into a deadline per reply as well (see client.MIN_RATE).
    """

    connect: float = 30.0
    read: float = 60.0


class Transport(Protocol):
    """What a POP3 session needs from the connection under it."""

    @property
    def tls_active(self) -> bool: ...

    def read(self, timeout: float | None = None) -> bytes:
        """Some bytes, or ``b""`` when the server closed the connection.

        Waits at most ``timeout`` seconds (and never longer than the read
        timeout), then raises NetworkTimeout.
        """
        ...

    def read_nowait(self) -> bytes | None:
        """Bytes that arrived already, without waiting; None if there are none."""
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


def _resolve(host: str, port: int, seconds: float) -> list[_Address]:
    """``getaddrinfo`` within ``seconds``, which the C resolver knows nothing of.

    A DNS server that does not answer would otherwise hold the poll, and its
    account's lock, for as long as the resolver retries. The lookup runs in a
    thread of its own; one that outlives the deadline is left to finish alone.
    """
    found: list[_Address] = []
    failed: list[OSError] = []

    def lookup() -> None:
        try:
            found.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            failed.append(exc)

    thread = threading.Thread(target=lookup, name=f"resolve {host}", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise NetworkTimeout(f"resolving {host} took longer than {seconds:g} s")
    if failed:
        raise NetworkError(f"cannot resolve {host}: {failed[0].strerror or failed[0]}")
    return found


def _connect(host: str, port: int, seconds: float) -> socket.socket:
    """A TCP connection within ``seconds`` in total, trying each address in turn.

    ``socket.create_connection`` gives each address the whole timeout, so a
    name with many dead addresses could take many times longer.
    """
    deadline = time.monotonic() + seconds
    addresses = _resolve(host, port, seconds)
    error: OSError = OSError(f"no address for {host}")
    for family, kind, proto, _, address in addresses:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock = socket.socket(family, kind, proto)
        sock.settimeout(left)
        try:
            sock.connect(address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return sock
    if isinstance(error, TimeoutError) or time.monotonic() >= deadline:
        raise NetworkTimeout(f"connecting to {host}:{port} timed out after {seconds:g} s")
    raise NetworkError(f"cannot connect to {host}:{port}: {error.strerror or error}") from error


class SocketTransport:
    """A TCP connection, optionally TLS from the start (port 995) or after STLS."""

    def __init__(
        self,
        sock: socket.socket,
        host: str,
        context: ssl.SSLContext | None,
        timeouts: Timeouts | None = None,
    ) -> None:
        self._sock: socket.socket = sock
        self._host = host
        self._context = context
        self._timeouts = timeouts or Timeouts()
        self._timeout = self._timeouts.read
        sock.settimeout(self._timeout)

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
        sock = _connect(host, port, timeouts.connect)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = cls(sock, host, context, timeouts)
        if implicit_tls:
            transport.start_tls()
        return transport

    @property
    def tls_active(self) -> bool:
        return isinstance(self._sock, ssl.SSLSocket)

    def start_tls(self) -> None:
        context = self._context or tls_context()
        # CPython bounds the whole handshake by the socket timeout, not each
        # read in it: a server trickling handshake bytes is cut off in time.
        self._set_timeout(self._timeouts.connect)
        try:
            self._sock = context.wrap_socket(self._sock, server_hostname=self._host)
        except TimeoutError as exc:
            self.close()
            raise NetworkTimeout(
                f"the TLS handshake with {self._host} took longer than {self._timeouts.connect:g} s"
            ) from exc
        except ssl.SSLCertVerificationError as exc:
            self.close()
            raise TLSError(
                f"the certificate of {self._host} does not verify ({exc.verify_message}); "
                "if the server uses a private CA, set ca_file for this account"
            ) from exc
        except (ssl.SSLError, OSError) as exc:
            self.close()
            raise TLSError(f"TLS handshake with {self._host} failed: {exc}") from exc

    def read(self, timeout: float | None = None) -> bytes:
        wait = self._timeouts.read if timeout is None else min(timeout, self._timeouts.read)
        self._set_timeout(wait)
        with self._mapped_errors("reading from", f"sent nothing within {wait:.3g} s"):
            return self._sock.recv(READ_SIZE)

    def read_nowait(self) -> bytes | None:
        sock = self._sock
        pending = isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
        if not pending and not select.select([sock], [], [], 0)[0]:
            return None
        # Readable may be a TLS record without application data (a session
        # ticket): read without blocking and take "would block" as nothing.
        self._set_timeout(0.0)
        with self._mapped_errors("reading from", "sent nothing"):
            try:
                return sock.recv(READ_SIZE)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                return None

    def _set_timeout(self, seconds: float) -> None:
        # settimeout costs a system call; most reads keep the same value.
        if seconds != self._timeout:
            self._sock.settimeout(seconds)
            self._timeout = seconds

    def write(self, data: bytes) -> None:
        self._set_timeout(self._timeouts.read)
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
