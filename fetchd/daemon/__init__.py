"""The daemon behind ``fetchd run``: the scheduler and what keeps it a good service.

- ``service``: ``Daemon``, one scheduler job per account that marks it due;
  poll threads run the same per-account runner as ``fetchd fetch``; reload,
  stop, and the overload warning.
- ``rotation``: due accounts served longest-waiting first by a bounded set of
  poll threads, and the meter that tells whether they keep up.
- ``policy``: when an account is polled next (interval, cron, backoff).
- ``plumbing``: signals, the watchdog, polls in flight.
- ``report``: what the daemon tells the log and ``systemctl status``.
- ``sdnotify``: the systemd notify protocol.
"""

from fetchd.daemon.service import STOP_GRACE, Daemon

__all__ = ["STOP_GRACE", "Daemon"]
