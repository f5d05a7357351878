"""The hand-off to an MDA command and to an LMTP server, message by message.

The LMTP server here is a small scripted one, so that each recipient's answer
to DATA can be chosen (RFC 2033 section 4.2: one reply per recipient); the
real Dovecot LMTP is in tests/test_delivery.py.
"""

from __future__ import annotations

import socket
import socketserver
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fetchd.store.lmtp import Lmtp
from fetchd.store.mda import Mda


@pytest.fixture
def message(tmp_path: Path) -> Path:
    path = tmp_path / "message"
    path.write_bytes(b"Return-Path: <sender@example.org>\nSubject: hi\n\n.dot line\nbody\n")
    return path


def test_mda_fills_in_account_and_user(tmp_path: Path, message: Path) -> None:
    out = tmp_path / "argv"
    script = f"import sys; open({str(out)!r}, 'w').write(repr(sys.argv[1:]) + sys.stdin.read())"
    mda = Mda([sys.executable, "-c", script, "{account}", "-d", "{user}@x"], "work", "alice", 5)
    outcome = mda.send(message, mda.recipients)
    assert (outcome.error, outcome.delivered) == (None, (sys.executable,))
    assert out.read_text().startswith("['work', '-d', 'alice@x']Return-Path:")


def test_mda_killed_by_a_signal_is_reported(message: Path) -> None:
    mda = Mda([sys.executable, "-c", "import os; os.kill(os.getpid(), 9)"], "w", "u", 5)
    outcome = mda.send(message, mda.recipients)
    assert outcome.error is not None
    assert "killed by signal 9" in outcome.error
    assert (outcome.retry_later, outcome.sure) == (False, True)


class ScriptedLmtp(socketserver.StreamRequestHandler):
    """Answers RCPT for every recipient, then DATA per recipient from ``server.replies``."""

    def handle(self) -> None:
        self.say("220 test LMTP")
        recipients: list[str] = []
        while line := self.rfile.readline():
            command = line.decode().strip()
            verb = command.split(" ", 1)[0].upper()
            if verb == "LHLO":
                self.say("250-test\r\n250 8BITMIME")
            elif verb == "MAIL":
                recipients = []
                self.server.log.append(command)  # type: ignore[attr-defined]
                self.say("250 ok")
            elif verb == "RCPT":
                recipients.append(command.split("<", 1)[1].rstrip(">"))
                self.say("250 ok")
            elif verb == "DATA":
                self.say("354 go on")
                while self.rfile.readline() not in (b".\r\n", b""):
                    pass
                for recipient in recipients:
                    self.say(self.server.replies[recipient])  # type: ignore[attr-defined]
            elif verb == "QUIT":
                self.say("221 bye")
                return
            else:
                self.say("250 ok")

    def say(self, text: str) -> None:
        self.wfile.write(text.encode() + b"\r\n")


@pytest.fixture
def lmtp_server() -> Iterator[socketserver.ThreadingTCPServer]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), ScriptedLmtp)
    server.daemon_threads = True
    server.replies = {}  # type: ignore[attr-defined]
    server.log = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_each_recipient_answers_for_itself_and_the_session_stays_in_step(
    lmtp_server: socketserver.ThreadingTCPServer, message: Path
) -> None:
    host, port = lmtp_server.server_address[:2]
    lmtp_server.replies = {  # type: ignore[attr-defined]
        "a": "250 2.0.0 saved",
        "b": "452 4.2.2 mailbox full",
        "c": "550 5.1.1 no such user",
    }
    lmtp = Lmtp(f"{host}:{port}", ["a", "b", "c"], 5)
    with lmtp.session() as send:
        first = send(message, ["a", "b", "c"])
        # The replies of b and c were read: the next message's MAIL gets its own reply.
        second = send(message, ["a"])
    assert first.delivered == ("a",)
    assert first.error is not None
    assert "b: 452 4.2.2 mailbox full" in first.error
    assert "c: 550" in first.error
    assert first.retry_later, "a 4xx among the answers: try later"
    assert (second.delivered, second.error) == (("a",), None)
    sent = lmtp_server.log  # type: ignore[attr-defined]
    assert sent == ["mail FROM:<sender@example.org> BODY=8BITMIME"] * 2


def test_only_refusals_are_not_retried_as_temporary(
    lmtp_server: socketserver.ThreadingTCPServer, message: Path
) -> None:
    host, port = lmtp_server.server_address[:2]
    lmtp_server.replies = {"c": "550 5.1.1 no such user"}  # type: ignore[attr-defined]
    with Lmtp(f"{host}:{port}", ["c"], 5).session() as send:
        outcome = send(message, ["c"])
    assert (outcome.delivered, outcome.retry_later, outcome.sure) == ((), False, True)


def test_a_server_that_goes_silent_after_data_leaves_the_outcome_unknown(
    message: Path,
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                reader = conn.makefile("rb")
                conn.sendall(b"220 hi\r\n")
                for reply in (b"250 hi\r\n", b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n"):
                    reader.readline()
                    conn.sendall(reply)
                while reader.readline() not in (b".\r\n", b""):
                    pass
                threading.Event().wait(3)  # delivered, perhaps; never says so

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        with Lmtp(f"127.0.0.1:{port}", ["a"], 1).session() as send:
            outcome = send(message, ["a"])
    assert (outcome.delivered, outcome.retry_later, outcome.sure) == ((), True, False)
    assert outcome.error is not None
    assert "may have delivered" in outcome.error
