"""Authenticators: which login method to use and what each one sends.

Pure functions and small values; the session drives them. The secret is a
password or, for XOAUTH2/OAUTHBEARER, an access token; nothing here logs it or
puts it in a ``repr``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from fetchd.errors import UsageError
from fetchd.pop3.replies import Capabilities

#: Methods ``auth = "auto"`` may choose, best first, for a password secret.
#: Over TLS every method is as safe as the channel; without TLS APOP at least
#: keeps the password itself off the wire (RFC 1939 section 7), so it leads then.
_AUTO_ORDER_TLS = ("plain", "user", "login", "apop")
_AUTO_ORDER_CLEAR = ("apop", "plain", "user", "login")
SASL_METHODS = frozenset({"plain", "login", "xoauth2", "oauthbearer"})


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def apop_digest(timestamp: str, secret: str) -> str:
    """RFC 1939 section 7: hex MD5 of the banner timestamp and the shared secret."""
    return hashlib.md5((timestamp + secret).encode("utf-8")).hexdigest()


def offered_methods(capabilities: Capabilities, apop_timestamp: str | None) -> set[str]:
    """The methods this server says it accepts."""
    offered = {mech.lower() for mech in capabilities.sasl} & SASL_METHODS
    # A server without CAPA may still take USER (RFC 1939); assume it does.
    if "USER" in capabilities or not capabilities.known:
        offered.add("user")
    if apop_timestamp:
        offered.add("apop")
    return offered


def choose_method(capabilities: Capabilities, apop_timestamp: str | None, *, tls: bool) -> str:
    """The strongest password method the server offers.

    Only one is tried: falling back after a refusal would spend login attempts
    (and risk lockouts or LOGIN-DELAY) on a password that is simply wrong.
    """
    offered = offered_methods(capabilities, apop_timestamp)
    order = _AUTO_ORDER_TLS if tls else _AUTO_ORDER_CLEAR
    return next((method for method in order if method in offered), "user")


@dataclass(frozen=True)
class SaslExchange:
    """One SASL mechanism's messages (RFC 5034), already base64-encoded."""

    mechanism: str
    initial: str | None = field(repr=False)
    #: Responses to successive server challenges.
    responses: Sequence[str] = field(default=(), repr=False)


def sasl_exchange(method: str, username: str, secret: str, host: str, port: int) -> SaslExchange:
    if method == "plain":
        # RFC 4616: authzid NUL authcid NUL passwd; an empty authzid.
        return SaslExchange("PLAIN", b64(f"\0{username}\0{secret}"))
    if method == "login":
        return SaslExchange("LOGIN", None, (b64(username), b64(secret)))
    if method == "xoauth2":
        # Google's and Microsoft's XOAUTH2. On failure the server sends a JSON
        # challenge that the client must answer with an empty line.
        return SaslExchange("XOAUTH2", b64(f"user={username}\1auth=Bearer {secret}\1\1"), ("",))
    if method == "oauthbearer":
        payload = f"n,a={username},\1host={host}\1port={port}\1auth=Bearer {secret}\1\1"
        return SaslExchange("OAUTHBEARER", b64(payload), ("AQ==",))
    raise UsageError(f"unknown SASL method {method!r}")
