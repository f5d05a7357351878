"""Open a ready session for one server: connect, TLS, capabilities.

The caller (the poll, the shell) turns its account config into an
``Endpoint``, so the protocol package never imports the config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fetchd.errors import TLSError
from fetchd.pop3.client import DEFAULT_WINDOW, Session, Transcript
from fetchd.pop3.transport import SocketTransport, Timeouts, tls_context

Security = Literal["tls", "starttls", "plain"]


@dataclass(frozen=True)
class Endpoint:
    """Where a POP3 server is and how to talk to it."""

    host: str
    port: int
    security: Security = "tls"
    ca_file: Path | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    pipelining: bool = True
    window: int = DEFAULT_WINDOW


def open_session(endpoint: Endpoint, *, transcript: Transcript | None = None) -> Session:
    """A session in AUTHORIZATION state, over TLS unless security is "plain"."""
    context = None if endpoint.security == "plain" else tls_context(endpoint.ca_file)
    transport = SocketTransport.open(
        endpoint.host,
        endpoint.port,
        timeouts=endpoint.timeouts,
        context=context,
        implicit_tls=endpoint.security == "tls",
    )
    try:
        session = Session(
            transport,
            transcript=transcript,
            window=endpoint.window,
            timeout=endpoint.timeouts.read,
        )
        session.pipelining_allowed = endpoint.pipelining
        session.capa()
        if endpoint.security == "starttls":
            _upgrade(session, endpoint.host)
    except BaseException:
        transport.close()
        raise
    return session


def _upgrade(session: Session, host: str) -> None:
    # RFC 2595 section 4 and RFC 8314: never fall back to cleartext. A server
    # that hides STLS may be behind an attacker stripping it from CAPA.
    if "STLS" not in session.capabilities:
        raise TLSError(
            f"{host} does not offer STLS, so fetchd will not send credentials in clear; "
            'use security = "tls" (port 995) if the server supports it'
        )
    session.stls()
