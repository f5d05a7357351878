"""Stop and reload signals as plain numbers on a socket, caught from the first moment.

``fetchd run`` opens the inbox before it imports the scheduler or reads the
config, so that a SIGTERM during start-up is not fatal: it waits in the inbox,
and the daemon exits cleanly before its first poll. The daemon's own inbox,
opened later, shares the one already open instead of replacing it, so that
no signal received in between is lost.

Standard library only: importing this must cost nothing.
"""

from __future__ import annotations

import select
import signal
import socket
from types import FrameType, TracebackType

__all__ = ["STOP_SIGNALS", "SignalInbox"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _ignore_signal(signum: int, frame: FrameType | None) -> None:
    """The handler that lets a signal reach the wakeup socket and nothing else."""


class SignalInbox:
    """Delivers SIGTERM, SIGINT and SIGHUP to the main thread as plain numbers.

    Python's handlers run between bytecodes of the main thread, where acting
    on locks is unsafe; ``signal.set_wakeup_fd`` instead writes each signal's
    number to a socket, and the main thread reads them at its leisure.
    Entered while another inbox is open, it reads from that one's socket.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    _open: SignalInbox | None = None
    _reader: socket.socket
    _writer: socket.socket

    def __enter__(self) -> SignalInbox:
        outer = SignalInbox._open
        self._shared = outer is not None
        if outer is not None:
            self._reader, self._writer = outer._reader, outer._writer
            return self
        self._reader, self._writer = socket.socketpair()
        self._writer.setblocking(False)
        self._old_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._old = {signum: signal.signal(signum, _ignore_signal) for signum in self.SIGNALS}
        SignalInbox._open = self
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._shared:
            return
        SignalInbox._open = None
        for signum, handler in self._old.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._old_fd)
        self._reader.close()
        self._writer.close()

    def next(self, timeout: float | None = None) -> int | None:
        """The next signal received, or None once ``timeout`` seconds pass without one."""
        while True:
            readable, _, _ = select.select([self._reader], [], [], timeout)
            if not readable:
                return None
            signum: int = self._reader.recv(1)[0]
            if signum in self.SIGNALS:
                return signum

    def stop_waiting(self) -> bool:
        """Whether a SIGTERM or SIGINT arrived and is still unread; reads nothing."""
        try:
            waiting = self._reader.recv(65536, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        return any(signum in STOP_SIGNALS for signum in waiting)
