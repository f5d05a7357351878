"""Lines for journald: the syslog priority that systemd reads at the start of each line.

A service's stderr under systemd is a stream to journald, which takes a leading
``<N>`` on each line as that line's syslog priority (``SyslogLevelPrefix=``,
on by default) and strips it; without one a line is logged at "info". With the
prefix, ``journalctl -u fetchd -p err`` shows exactly what failed.

systemd tells a service where that stream is: ``$JOURNAL_STREAM`` holds the
device and inode of the stream it connected (stderr when both stdout and
stderr go to the journal). The variable alone proves nothing: it is inherited
by children and survives a redirection (``fetchd fetch 2>log`` inside a
service's script), so fetchd prefixes only when its own stderr still is that
stream, as systemd.exec(5) advises.

This module imports only the standard library: the command line uses it for
its own error messages even when a command fails before logging is set up.
"""

from __future__ import annotations

import io
import os
import sys
from typing import TextIO

__all__ = ["PRIORITIES", "connected", "prefixed", "write"]

#: fetchd's level names -> syslog priorities (syslog(3): LOG_ERR 3, LOG_WARNING 4,
#: LOG_INFO 6, LOG_DEBUG 7). Critical is logged as an error: fetchd has nothing
#: that concerns the whole system, and ``-p err`` shows both.
PRIORITIES = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 3}


def connected(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (stderr by default) is the journal stream systemd set up."""
    dev, colon, ino = os.environ.get("JOURNAL_STREAM", "").partition(":")
    if not colon:
        return False
    try:
        stat = os.fstat((sys.stderr if stream is None else stream).fileno())
        return (stat.st_dev, stat.st_ino) == (int(dev), int(ino))
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        # No file behind the stream (a StringIO), a closed one, or a garbled variable.
        return False


def prefixed(text: str, level: str) -> str:
    """``text`` with ``level``'s priority before each of its lines.

    Every line, not just the first: journald takes each line as an entry of its
    own, and a traceback's last line must not drop to "info".
    """
    prefix = f"<{PRIORITIES.get(level, PRIORITIES['info'])}>"
    return "\n".join(prefix + line for line in text.split("\n"))


def write(text: str, level: str = "error", stream: TextIO | None = None) -> None:
    """Write one of fetchd's own messages (not a log event) to ``stream``, stderr by default.

    Under journald every line gets ``level``'s priority; elsewhere the text is
    written as it is.
    """
    out = sys.stderr if stream is None else stream
    out.write((prefixed(text, level) if connected(out) else text) + "\n")
    out.flush()
