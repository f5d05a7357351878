"""Delivery over LMTP (RFC 2033), with the standard library's ``smtplib.LMTP``.

One connection serves a batch. LMTP answers the end of DATA once per
accepted recipient (RFC 2033 section 4.2), where SMTP answers once; smtplib
reads only the first of those replies, so the others are read here, or the
next command would take them for its own. Per recipient: 2xx delivered, 4xx
try later, 5xx refused.

A failure before the message is sent (no connection, MAIL or RCPT refused)
is sure: nothing was delivered. Once DATA went out, a lost connection or a
timeout leaves it unknown, and the outcome says so.
"""

from __future__ import annotations

import contextlib
import smtplib
from collections.abc import Iterator, Sequence
from email.parser import BytesHeaderParser
from email.utils import parseaddr
from pathlib import Path

from fetchd.config import parse_lmtp_address
from fetchd.store.handoff import Outcome, Sender, bounded

_Errors = (smtplib.SMTPException, OSError)


class Lmtp:
    """An LMTP server (a unix socket or host:port) and the recipients to deliver to."""

    def __init__(self, address: str, recipients: Sequence[str], timeout: float) -> None:
        self.address = address
        self.recipients = tuple(recipients)
        self.timeout = timeout

    @contextlib.contextmanager
    def session(self) -> Iterator[Sender]:
        """One connection for a batch, opened on first use and again after a failure."""
        connection: smtplib.LMTP | None = None

        def send(path: Path, recipients: Sequence[str]) -> Outcome:
            nonlocal connection
            if not recipients:
                return Outcome(self.recipients)
            try:
                message = path.read_bytes()
            except OSError as exc:
                return Outcome((), f"cannot read the message {path}: {exc.strerror}")
            if connection is None:
                try:
                    connection = self._connect()
                except _Errors as exc:
                    return Outcome((), f"cannot reach the LMTP server {self.address}: {exc}", True)
            outcome, usable = _transaction(connection, message, recipients)
            if not usable:
                _close(connection)
                connection = None
            return outcome

        try:
            yield send
        finally:
            if connection is not None:
                _close(connection)

    def _connect(self) -> smtplib.LMTP:
        host, port = parse_lmtp_address(self.address)
        if port is None:  # smtplib.LMTP takes a path starting with "/" for a unix socket
            connection = smtplib.LMTP(host, timeout=self.timeout)
        else:
            connection = smtplib.LMTP(host, port, timeout=self.timeout)
        connection.ehlo_or_helo_if_needed()
        return connection


def _transaction(
    connection: smtplib.LMTP, message: bytes, recipients: Sequence[str]
) -> tuple[Outcome, bool]:
    """MAIL, RCPT for each recipient, DATA; returns the outcome and whether the
    connection can serve the next message."""
    sent = False
    try:
        options = ["BODY=8BITMIME"] if connection.has_extn("8bitmime") else []
        code, text = connection.mail(_sender(message), options)
        if code != 250:
            connection.rset()
            return Outcome((), f"MAIL FROM refused: {_reply(code, text)}", code < 500), True
        accepted, refused = [], {}
        for recipient in recipients:
            code, text = connection.rcpt(recipient)
            if code in (250, 251):
                accepted.append(recipient)
            else:
                refused[recipient] = (code, text)
        if not accepted:
            connection.rset()
            return _outcome((), refused), True
        sent = True
        # smtplib.data returns the first accepted recipient's reply (it raises
        # SMTPDataError if DATA itself is refused); one more per other recipient.
        replies = [connection.data(message)]
        replies += [connection.getreply() for _ in accepted[1:]]
    except _Errors as exc:
        if sent:
            error = f"the LMTP server may have delivered it: the session failed after DATA ({exc})"
            return Outcome((), error, True, sure=False), False
        return Outcome((), f"LMTP session failed: {exc}", True), False
    delivered = tuple(r for r, (code, _) in zip(accepted, replies, strict=True) if code // 100 == 2)
    refused |= {r: reply for r, reply in zip(accepted, replies, strict=True) if r not in delivered}
    return _outcome(delivered, refused), True


def _outcome(delivered: tuple[str, ...], refused: dict[str, tuple[int, bytes]]) -> Outcome:
    if not refused:
        return Outcome(delivered)
    text = "; ".join(f"{r}: {_reply(code, reply)}" for r, (code, reply) in refused.items())
    temporary = any(code // 100 != 5 for code, _ in refused.values())
    return Outcome(delivered, bounded(text), temporary)


def _reply(code: int, text: bytes) -> str:
    return f"{code} {text.decode('utf-8', 'replace')}"


def _sender(message: bytes) -> str:
    """The envelope sender: the message's Return-Path, else the null sender.

    The null sender (``<>``) means no bounce and no vacation reply goes back
    for mail that was delivered once already, to the POP3 server.
    """
    headers = BytesHeaderParser().parsebytes(message, headersonly=True)
    _, address = parseaddr(str(headers.get("Return-Path", "")))
    return address if address and " " not in address else ""


def _close(connection: smtplib.LMTP) -> None:
    try:
        connection.quit()
    except _Errors:
        with contextlib.suppress(OSError):
            connection.close()


__all__ = ["Lmtp"]
