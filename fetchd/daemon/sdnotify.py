"""A small sd_notify client: tell systemd that fetchd is ready, busy or alive.

systemd passes ``$NOTIFY_SOCKET`` to a ``Type=notify`` service: a Unix datagram
socket, either a path or, when it starts with ``@``, a name in the abstract
namespace. Each datagram holds newline-separated ``KEY=VALUE`` assignments
(sd_notify(3)). Outside systemd the variable is unset and every call is a no-op,
so the daemon runs the same way from a terminal.

A failed send never stops fetchd: losing a status line is better than losing
a poll, so sending reports ``False`` instead of raising.
"""

from __future__ import annotations

import os
import socket
import time

__all__ = ["Notifier", "monotonic_usec"]


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, as ``MONOTONIC_USEC=`` wants it (systemd >= 253)."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """Sends notifications to one socket; ``address`` None means "not under systemd"."""

    def __init__(self, address: str | None = None, watchdog_usec: int | None = None) -> None:
        self.address = address
        #: The watchdog timeout systemd enforces, in microseconds (None: no watchdog).
        self.watchdog_usec = watchdog_usec

    @classmethod
    def from_environment(cls) -> Notifier:
        """Take the socket and watchdog settings out of the environment.

        They are removed, as sd_notify(unset_environment=1) does, so that a
        ``password_command`` fetchd runs cannot talk to systemd in its name.
        """
        address = os.environ.pop("NOTIFY_SOCKET", None) or None
        usec = os.environ.pop("WATCHDOG_USEC", None)
        pid = os.environ.pop("WATCHDOG_PID", None)
        watchdog = int(usec) if usec and usec.isdigit() and int(usec) > 0 else None
        # WATCHDOG_PID names the process the watchdog is meant for (sd_watchdog_enabled(3)).
        if pid is not None and pid != str(os.getpid()):
            watchdog = None
        return cls(address, watchdog)

    @property
    def watchdog_period(self) -> float | None:
        """Seconds between pings: half the timeout, as sd_watchdog_enabled(3) advises."""
        return self.watchdog_usec / 2_000_000 if self.watchdog_usec else None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` lines in one datagram; True if systemd got it."""
        if not self.address or not assignments:
            return False
        target = self.address
        if target.startswith("@"):
            target = "\0" + target[1:]  # the abstract namespace (unix(7))
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(target)
                sock.sendall("\n".join(assignments).encode())
        except OSError:
            return False
        return True
