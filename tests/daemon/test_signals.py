"""fetchd.signals: the inbox ``fetchd run`` opens at start-up and the daemon shares."""

from __future__ import annotations

import os
import signal

from fetchd.signals import SignalInbox


def test_a_signal_before_the_daemons_inbox_opens_is_kept_for_it() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with SignalInbox():
        os.kill(os.getpid(), signal.SIGHUP)  # between the start-up inbox and the daemon's
        with SignalInbox() as daemons:
            assert daemons.next(timeout=5) == signal.SIGHUP
            assert daemons.next(timeout=0) is None
        os.kill(os.getpid(), signal.SIGTERM)  # the inner exit left the handlers in place
    assert signal.getsignal(signal.SIGTERM) == before


def test_stop_waiting_looks_without_taking() -> None:
    with SignalInbox() as inbox:
        os.kill(os.getpid(), signal.SIGHUP)
        assert inbox.next(timeout=5) == signal.SIGHUP
        assert not inbox.stop_waiting()
        os.kill(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGTERM)
        assert inbox.stop_waiting()
        assert [inbox.next(timeout=5), inbox.next(timeout=5)] == [signal.SIGHUP, signal.SIGTERM]
        assert not inbox.stop_waiting()
