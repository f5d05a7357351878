"""Delivery by a command (``mda``): the message on stdin, the answer in the exit status.

The command runs without a shell, in a session of its own so that a timeout
kills everything it started. Exit 0 is delivered; 75 (EX_TEMPFAIL, as
sendmail and Dovecot's LDA use it) is "try later"; any other exit, a signal
or a timeout is a failure reported with the command's stderr. After a
timeout fetchd cannot know whether the command delivered, and says so.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from fetchd.store.handoff import MAX_ERROR_TEXT, Outcome, Sender, bounded, no_session

#: sysexits.h: a temporary failure; the message is handed over again later.
EX_TEMPFAIL = 75


class Mda:
    """An MDA command line, its ``{account}`` and ``{user}`` filled in."""

    def __init__(self, argv: Sequence[str], account: str, user: str, timeout: float) -> None:
        self.argv = [word.replace("{account}", account).replace("{user}", user) for word in argv]
        self.timeout = timeout
        self.recipients: tuple[str, ...] = (self.argv[0],)

    def session(self) -> contextlib.AbstractContextManager[Sender]:
        return no_session(self.send)

    def send(self, path: Path, recipients: Sequence[str]) -> Outcome:
        """Run the command with the file at ``path`` as its stdin."""
        if not recipients:
            return Outcome(self.recipients)
        try:
            stdin = path.open("rb")
        except OSError as exc:
            return Outcome((), f"cannot read the message {path}: {exc.strerror}")
        with stdin, tempfile.TemporaryFile() as stderr:
            try:
                process = subprocess.Popen(
                    self.argv,
                    stdin=stdin,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    start_new_session=True,
                )
            except OSError as exc:
                return Outcome((), f"cannot run {self.argv[0]}: {exc.strerror}")
            return self._outcome(process, stderr)

    def _outcome(self, process: subprocess.Popen[bytes], stderr: IO[bytes]) -> Outcome:
        """Wait for the command, at most ``timeout``; its exit status is the answer."""
        program = self.argv[0]
        try:
            status = process.wait(self.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            return Outcome(
                (),
                f"{program} did not finish within {self.timeout:g} s and was killed; "
                f"it may have delivered the message{_said(stderr)}",
                sure=False,
            )
        if status == 0:
            return Outcome(self.recipients)
        if status == EX_TEMPFAIL:
            return Outcome((), f"{program} exited 75 (try later){_said(stderr)}", True)
        how = f"was killed by signal {-status}" if status < 0 else f"exited {status}"
        return Outcome((), f"{program} {how}{_said(stderr)}")


def _said(stderr: IO[bytes]) -> str:
    """The start of what the command wrote to stderr, for the failure's message."""
    stderr.seek(0)
    text = stderr.read(MAX_ERROR_TEXT + 1).decode("utf-8", "replace")
    return f": {bounded(text)}" if text.strip() else " (nothing on stderr)"


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
