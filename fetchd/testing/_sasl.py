"""SASL mechanisms of the test server (RFC 5034 AUTH; RFC 4616 PLAIN; RFC 7628).

XOAUTH2 and OAUTHBEARER accept the configured password as the bearer token.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Protocol


class SASLOptions(Protocol):
    """The server settings a mechanism reads (``server.ServerOptions`` has them)."""

    user: str
    password: str
    auth_fail_code: str | None


class SASLSession(Protocol):
    """What a mechanism needs from the session it authenticates."""

    @property
    def options(self) -> SASLOptions: ...

    def reply(self, status: str) -> None: ...

    def read_continuation(self) -> str: ...

    def login(self, user: str, password: str | None) -> None: ...


Mechanism = Callable[[SASLSession, "str | None"], None]


def _step(session: SASLSession, initial: str | None, challenge: str = "") -> bytes | None:
    """The client's next response, decoded; None (after -ERR) if cancelled or malformed.

    RFC 5034 section 4: a challenge is "+ " and base64, "*" cancels, and "="
    stands for an empty initial response.
    """
    if initial is None:
        session.reply(f"+ {base64.b64encode(challenge.encode()).decode()}")
        initial = session.read_continuation()
    if initial == "*":
        session.reply("-ERR authentication cancelled")
        return None
    if initial == "=":
        return b""
    try:
        return base64.b64decode(initial, validate=True)
    except ValueError:
        session.reply("-ERR invalid base64 in SASL response")
        return None


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _plain(session: SASLSession, initial: str | None) -> None:
    response = _step(session, initial)
    if response is None:
        return
    parts = response.split(b"\x00")  # authzid NUL authcid NUL passwd (RFC 4616 section 2)
    if len(parts) != 3:
        session.reply("-ERR malformed PLAIN response")
        return
    session.login(_text(parts[1]), _text(parts[2]))


def _login(session: SASLSession, initial: str | None) -> None:
    user = _step(session, initial, "Username:")
    if user is None:
        return
    password = _step(session, None, "Password:")
    if password is None:
        return
    session.login(_text(user), _text(password))


def _bearer(session: SASLSession, initial: str | None) -> None:
    """XOAUTH2 ("user=U^Aauth=Bearer T^A^A") and OAUTHBEARER ("n,a=U,^Aauth=...")."""
    response = _step(session, initial)
    if response is None:
        return
    parts = _text(response).split("\x01")
    fields = dict(part.partition("=")[::2] for part in parts)
    user = fields.get("user") or next(
        (item[2:] for item in parts[0].split(",") if item.startswith("a=")), ""
    )
    token = fields.get("auth", "").removeprefix("Bearer ")
    if user == session.options.user and token == session.options.password:
        session.login(user, token)
        return
    # RFC 7628 section 3.2.2: the error comes as a challenge; fail after the client answers.
    error = json.dumps({"status": "invalid_token", "schemes": "Bearer", "scope": "mail"})
    if _step(session, None, error) is not None:
        code = session.options.auth_fail_code
        session.reply(f"-ERR {'[' + code + '] ' if code else ''}invalid token")


MECHANISMS: dict[str, Mechanism] = {
    "PLAIN": _plain,
    "LOGIN": _login,
    "XOAUTH2": _bearer,
    "OAUTHBEARER": _bearer,
}
