"""``fetchd oauth login --browser``: the authorization code grant with PKCE on loopback.

RFC 8252 (OAuth for native apps): fetchd listens on a port of 127.0.0.1 it
picks itself, the person opens the authorization address in a browser on
this machine, and the provider sends the browser back to
``http://127.0.0.1:PORT/`` with a code. PKCE (RFC 7636, S256) binds the code
to this run: only the process that made the challenge can redeem it, so a
code seen by another program on the machine is useless. Google needs this
flow for Gmail: its device flow does not grant the mail scope.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from fetchd.config import OAuth2Config
from fetchd.errors import AuthError, UsageError
from fetchd.oauth._http import describe_error, post_form

#: Seconds to wait for the browser to come back.
WAIT = 300.0
_DONE_PAGE = b"<!doctype html><title>fetchd</title><p>fetchd has the code; close this tab.</p>"


@dataclass
class _Redirect:
    """What the browser brought back; filled in by the listener's one good request."""

    params: dict[str, str] = field(default_factory=dict, repr=False)
    arrived: threading.Event = field(default_factory=threading.Event)


def pkce_pair() -> tuple[str, str]:
    """A code verifier and its S256 challenge (RFC 7636 section 4.1, 4.2)."""
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorize(
    account: str, oauth2: OAuth2Config, say: Callable[[str], None], wait: float = WAIT
) -> dict[str, Any]:
    """Get a code through the browser and redeem it; the token endpoint's answer."""
    if oauth2.authorize_endpoint is None:
        raise UsageError(f"account {account}: --browser needs authorize_url (or a provider)")
    redirect = _Redirect()
    server = HTTPServer(("127.0.0.1", 0), _handler(redirect))
    redirect_uri = f"http://127.0.0.1:{server.server_address[1]}/"
    state = secrets.token_urlsafe(16)
    verifier, challenge = pkce_pair()
    query = {
        "response_type": "code",
        "client_id": oauth2.client,
        "redirect_uri": redirect_uri,
        "scope": " ".join(oauth2.scope_list),
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if oauth2.provider == "google":  # a refresh token only with offline access and consent
        query |= {"access_type": "offline", "prompt": "consent"}
    stop = threading.Event()
    thread = threading.Thread(target=_serve, args=(server, redirect, stop), daemon=True)
    thread.start()
    try:
        say(f"open {oauth2.authorize_endpoint}?{urllib.parse.urlencode(query)}")
        say("in a browser on this machine, and allow access")
        if not redirect.arrived.wait(wait):
            raise AuthError(f"account {account}: no answer from the browser within {wait:g} s")
    finally:
        stop.set()
        thread.join()
        server.server_close()
    return _redeem(
        account,
        oauth2,
        redirect.params,
        state=state,
        redirect_uri=redirect_uri,
        verifier=verifier,
    )


def _serve(server: HTTPServer, redirect: _Redirect, stop: threading.Event) -> None:
    """Answer requests until one carries ``code`` or ``error`` (a favicon request does not)."""
    server.timeout = 0.2  # handle_request returns this often, so ``stop`` is seen
    while not (redirect.arrived.is_set() or stop.is_set()):
        server.handle_request()


def _handler(redirect: _Redirect) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the name http.server calls
            query = urllib.parse.urlsplit(self.path).query
            params = dict(urllib.parse.parse_qsl(query))
            if "code" not in params and "error" not in params:
                self.send_error(404)
                return
            redirect.params = params
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(_DONE_PAGE)))
            self.end_headers()
            self.wfile.write(_DONE_PAGE)
            redirect.arrived.set()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the request line holds the code."""

    return Handler


def _redeem(
    account: str,
    oauth2: OAuth2Config,
    params: dict[str, str],
    *,
    state: str,
    redirect_uri: str,
    verifier: str,
) -> dict[str, Any]:
    """Check the redirect and trade its code for tokens (RFC 6749 section 4.1.3)."""
    if params.get("state") != state:  # RFC 6749 section 10.12: not our request
        raise AuthError(f"account {account}: the browser came back with a wrong state")
    if "error" in params:
        raise AuthError(f"account {account}: access was not granted ({describe_error(params)})")
    fields = {
        "grant_type": "authorization_code",
        "code": params.get("code", ""),
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
        **oauth2.client_fields(account),
    }
    answer = post_form(oauth2.token_endpoint, fields)
    if "error" in answer:
        raise AuthError(
            f"account {account}: the OAuth2 token endpoint refused the code "
            f"({describe_error(answer)})"
        )
    return answer
