"""An account's access token at login: the cached one, or a refreshed one.

Each login asks ``access_token``. A token with more than ``REFRESH_MARGIN``
seconds to live is reused (from memory, else from the grant file); otherwise
the refresh token buys a new one (RFC 6749 section 6), and the grant file is
rewritten, with the new refresh token if the server rotated it. No person is
needed, so the daemon does this on every poll that needs it.

Failures: ``invalid_grant`` (revoked, expired, or the password changed) and
any other refusal are an ``AuthError`` that says to log in again; the other
accounts are polled as usual. An unreachable token endpoint is a
``NetworkError``: the next poll tries again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from fetchd.config import OAuth2Config
from fetchd.errors import AuthError, NetworkError
from fetchd.oauth._grant import Grant, GrantFile, grant_from, login_hint
from fetchd.oauth._http import describe_error, post_form

#: OAuth2 error codes that mean "later", not "never" (RFC 6749 section 4.1.2.1).
_TRANSIENT = frozenset({"temporarily_unavailable", "server_error"})

_cache: dict[Path, Grant] = {}
_guards: dict[Path, threading.Lock] = {}
_guards_lock = threading.Lock()


def _guard(path: Path) -> threading.Lock:
    """One lock per grant: two threads of one daemon never refresh the same grant at once."""
    with _guards_lock:
        return _guards.setdefault(path, threading.Lock())


def access_token(
    account: str, oauth2: OAuth2Config, *, clock: Callable[[], float] = time.time
) -> str:
    """A Bearer token for ``account`` that is good for at least ``REFRESH_MARGIN`` seconds."""
    if oauth2.token_file is None:
        raise AuthError(f"account {account}: no OAuth2 token file is configured")
    grant_file = GrantFile(account, oauth2.token_file)
    with _guard(grant_file.path):
        cached = _cache.get(grant_file.path)
        if cached is not None and _usable(cached, oauth2, clock()):
            return cached.access_token
        if cached is None and not grant_file.path.exists():
            raise _no_grant(account)
        with grant_file.locked():
            grant = _newest(cached, grant_file.load())
            if grant is None or not grant.for_client(oauth2.token_endpoint, oauth2.client):
                _cache.pop(grant_file.path, None)
                raise _no_grant(account)
            if not grant.fresh(clock()):
                grant = refresh(account, oauth2, grant, clock())
                _cache[grant_file.path] = grant  # kept even if the file cannot be written
                grant_file.save(grant)
        _cache[grant_file.path] = grant
        return grant.access_token


def _no_grant(account: str) -> AuthError:
    return AuthError(
        f"account {account}: no OAuth2 grant for this client and token endpoint "
        f"yet; {login_hint(account)}"
    )


def _usable(grant: Grant, oauth2: OAuth2Config, now: float) -> bool:
    return grant.fresh(now) and grant.for_client(oauth2.token_endpoint, oauth2.client)


def _newest(cached: Grant | None, stored: Grant | None) -> Grant | None:
    """The later of two grants: another process may have refreshed, or a write failed here."""
    if cached is None or stored is None:
        return stored or cached
    return cached if cached.obtained_at > stored.obtained_at else stored


def refresh(account: str, oauth2: OAuth2Config, grant: Grant, now: float) -> Grant:
    """A new access token for ``grant`` from the token endpoint (RFC 6749 section 6)."""
    if grant.refresh_token is None:
        raise AuthError(
            f"account {account}: the OAuth2 access token expired and there is no refresh "
            f"token; {login_hint(account)}"
        )
    fields = {
        "grant_type": "refresh_token",
        "refresh_token": grant.refresh_token,
        "scope": " ".join(oauth2.scope_list),
        **oauth2.client_fields(account),
    }
    answer = post_form(oauth2.token_endpoint, fields)
    if "error" in answer:
        raise _refused(account, answer)
    return grant_from(
        answer,
        now=now,
        token_url=oauth2.token_endpoint,
        client_id=oauth2.client,
        previous=grant,
    )


def _refused(account: str, answer: dict[str, object]) -> AuthError | NetworkError:
    why = describe_error(answer)
    if answer.get("error") in _TRANSIENT:
        return NetworkError(f"account {account}: the OAuth2 token endpoint said {why}")
    if answer.get("error") == "invalid_grant":
        return AuthError(
            f"account {account}: the OAuth2 grant was revoked or has expired ({why}); "
            f"{login_hint(account)}"
        )
    return AuthError(
        f"account {account}: the OAuth2 token endpoint refused to refresh the token ({why}); "
        f"check client_id and the client secret, then {login_hint(account)}"
    )


def forget(path: Path) -> None:
    """Drop the cached grant kept at ``path`` (after a new login wrote it)."""
    with _guard(path):
        _cache.pop(path, None)
