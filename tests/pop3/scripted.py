"""A transport that plays a scripted server: the client without sockets or clocks.

Each command line the client writes releases the next scripted reply, as a
real server answers only what it was asked; reads hand out what was released
whole or ``chunk`` octets at a time, and ``read_nowait`` finds what is left unread.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from fetchd.errors import NetworkTimeout
from fetchd.pop3.client import Session

GREETING = b"+OK ready\r\n"
LOGIN = [b"+OK\r\n", b"+OK logged in\r\n"]


class ScriptedTransport:
    tls_active = False

    def __init__(self, replies: Iterable[bytes], chunk: int | None = None) -> None:
        self.readable = bytearray(GREETING)
        self.replies = deque(replies)
        self.chunk = chunk
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)
        for _ in range(data.count(b"\n")):
            if self.replies:
                self.readable += self.replies.popleft()

    def read(self, timeout: float | None = None) -> bytes:
        if not self.readable:
            raise NetworkTimeout("the scripted server has nothing more to say")
        size = len(self.readable) if self.chunk is None else self.chunk
        data = bytes(self.readable[:size])
        del self.readable[:size]
        return data

    def read_nowait(self) -> bytes | None:
        return self.read() if self.readable else None

    def start_tls(self) -> None:
        raise AssertionError("no TLS in scripts")

    def close(self) -> None:
        self.closed = True


def session_after_login(replies: Iterable[bytes], chunk: int | None = None) -> Session:
    """A session in TRANSACTION (USER/PASS accepted) whose server then answers ``replies``."""
    transport = ScriptedTransport([*LOGIN, *replies], chunk)
    session = Session(transport, timeout=5.0)
    session._login_user("alice", "secret")
    return session


def sent(session: Session) -> bytes:
    transport = session.transport
    assert isinstance(transport, ScriptedTransport)
    return b"".join(transport.written)


def unread(session: Session) -> bytes:
    transport = session.transport
    assert isinstance(transport, ScriptedTransport)
    return bytes(transport.readable)
