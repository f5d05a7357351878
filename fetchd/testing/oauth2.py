"""A small OAuth2 authorization server on loopback, for tests of fetchd's OAuth2.

It plays Google's or Microsoft's part: a device endpoint (RFC 8628), an
authorization endpoint that approves at once and redirects with a code (RFC
6749 section 4.1, PKCE as RFC 7636), a token endpoint for the device_code,
authorization_code and refresh_token grants, and an introspection endpoint
(RFC 7662) that a private Dovecot asks whether a token is good, so fetchd
logs in to a real POP3 server with the tokens it got here.

What a test may script: how many polls stay ``authorization_pending`` before
the "person" approves, which polls get ``slow_down``, a refusal
(``access_denied``), how long tokens live, rotation of refresh tokens,
revocation, and long access tokens (over 255 octets, so that AUTH needs its
continuation line). Every request is recorded.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fetchd.testing._running import Running

__all__ = ["AuthServerOptions", "OAuth2TestServer"]


@dataclass
class AuthServerOptions:
    """How the test authorization server behaves; tests may change it while it runs."""

    client_id: str = "fetchd-test-client"
    client_secret: str | None = None
    #: The mailbox user a grant belongs to (Dovecot's ``username_attribute``).
    user: str = "alice"
    #: Device-code polls answered ``authorization_pending`` before approval.
    approve_after: int = 2
    #: Poll numbers (1-based) answered ``slow_down`` instead.
    slow_down_at: frozenset[int] = frozenset()
    #: Poll numbers (1-based) answered HTTP 503, as an overloaded endpoint does.
    unavailable_at: frozenset[int] = frozenset()
    #: The person refuses: in the device flow, and at the authorization endpoint.
    deny: bool = False
    #: The person took too long: the poll after ``approve_after`` gets ``expired_token``.
    expired: bool = False
    interval: int = 0
    device_expires_in: int = 600
    #: Lifetime of access tokens, in seconds.
    expires_in: int = 3600
    rotate: bool = False
    #: Characters of each access token; over 255 forces the AUTH continuation line.
    token_length: int = 320


@dataclass
class _Device:
    user_code: str
    expires_at: float
    polls: int = 0


@dataclass
class _State:
    devices: dict[str, _Device] = field(default_factory=dict)
    refresh_tokens: set[str] = field(default_factory=set)
    #: authorization code -> (PKCE challenge, redirect_uri)
    codes: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: access token -> expiry (Unix time)
    access_tokens: dict[str, float] = field(default_factory=dict)


class OAuth2TestServer(Running):
    """A threaded OAuth2 server on 127.0.0.1; a context manager."""

    def __init__(self, options: AuthServerOptions | None = None) -> None:
        self.options = options or AuthServerOptions()
        self.host = "127.0.0.1"
        self.port = 0
        #: (path, form fields) of every request, in order.
        self.requests: list[tuple[str, dict[str, str]]] = []
        #: Every access and refresh token and device code handed out: secrets to look for.
        self.issued: list[str] = []
        self.lock = threading.Lock()
        self._state = _State()
        self._http: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def start(self) -> None:
        handler = type("Handler", (_Handler,), {"server_state": self})
        self._http = ThreadingHTTPServer((self.host, 0), handler)
        self._http.daemon_threads = True
        self.port = self._http.server_address[1]
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    # -- what tests look at and change ------------------------------------------------

    def count(self, grant_type: str) -> int:
        """Token requests of ``grant_type`` ("refresh_token", or the device grant's URN)."""
        with self.lock:
            return sum(
                1 for path, form in self.requests
                if path == "/token" and form.get("grant_type") == grant_type
            )  # fmt: skip

    def revoke_all(self) -> None:
        """Revoke every grant: refresh tokens and access tokens stop working."""
        with self.lock:
            self._state.refresh_tokens.clear()
            self._state.access_tokens.clear()

    def refresh_tokens(self) -> set[str]:
        with self.lock:
            return set(self._state.refresh_tokens)

    def access_tokens(self) -> set[str]:
        with self.lock:
            return set(self._state.access_tokens)

    # -- the endpoints ----------------------------------------------------------------

    def handle(self, path: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.requests.append((path, form))
            if path == "/introspect":
                return 200, self._introspect(form.get("token", ""))
            if form.get("client_id") != self.options.client_id or (
                self.options.client_secret is not None
                and form.get("client_secret") != self.options.client_secret
            ):
                return 401, {"error": "invalid_client"}
            if path == "/device":
                return 200, self._device()
            if path == "/token":
                return self._token(form)
            return 404, {"error": "not_found"}

    def _device(self) -> dict[str, Any]:
        code = secrets.token_urlsafe(24)
        self.issued.append(code)
        user_code = f"{secrets.randbelow(10**4):04d}-{secrets.randbelow(10**4):04d}"
        self._state.devices[code] = _Device(user_code, time.time() + self.options.device_expires_in)
        return {
            "device_code": code,
            "user_code": user_code,
            "verification_uri": self.url("/activate"),
            "verification_uri_complete": self.url(f"/activate?user_code={user_code}"),
            "expires_in": self.options.device_expires_in,
            "interval": self.options.interval,
        }

    def _token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        grant_type = form.get("grant_type")
        if grant_type == "urn:ietf:params:oauth:grant-type:device_code":
            return self._device_grant(form.get("device_code", ""))
        if grant_type == "authorization_code":
            return self._code_grant(form)
        if grant_type == "refresh_token":
            token = form.get("refresh_token", "")
            if token not in self._state.refresh_tokens:
                return 400, {"error": "invalid_grant", "error_description": "Token revoked"}
            if self.options.rotate:
                self._state.refresh_tokens.discard(token)
                return 200, self._issue(refresh=True)
            return 200, self._issue(refresh=False)
        return 400, {"error": "unsupported_grant_type"}

    def authorize(self, query: dict[str, str]) -> str:
        """The redirect the browser follows: approved at once, or refused (``deny``)."""
        redirect = query.get("redirect_uri", "")
        with self.lock:
            self.requests.append(("/authorize", query))
            back = {"state": query.get("state", "")}
            if query.get("client_id") != self.options.client_id:
                back["error"] = "invalid_client"
            elif query.get("code_challenge_method") != "S256":
                back["error"] = "invalid_request"
            elif self.options.deny:
                back["error"] = "access_denied"
            else:
                code = secrets.token_urlsafe(24)
                self.issued.append(code)
                self._state.codes[code] = (query.get("code_challenge", ""), redirect)
                back["code"] = code
        return f"{redirect}?{urllib.parse.urlencode(back)}"

    def _code_grant(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """RFC 6749 section 4.1.3, with the PKCE check of RFC 7636 section 4.6."""
        challenge, redirect = self._state.codes.pop(form.get("code", ""), ("", ""))
        digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
        expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        if not challenge or challenge != expected or form.get("redirect_uri") != redirect:
            return 400, {"error": "invalid_grant"}
        return 200, self._issue(refresh=True)

    def _device_grant(self, code: str) -> tuple[int, dict[str, Any]]:
        device = self._state.devices.get(code)
        if device is None:
            return 400, {"error": "invalid_grant"}
        if time.time() > device.expires_at:
            return 400, {"error": "expired_token"}
        device.polls += 1
        waiting = self._waiting_answer(device.polls)
        if waiting is not None:
            return waiting
        del self._state.devices[code]
        if self.options.expired or self.options.deny:
            return 400, {"error": "expired_token" if self.options.expired else "access_denied"}
        return 200, self._issue(refresh=True)

    def _waiting_answer(self, poll: int) -> tuple[int, dict[str, Any]] | None:
        """What a device-code poll gets before the person's turn is over, if anything."""
        if poll in self.options.unavailable_at:
            return 503, {"error": "temporarily_unavailable"}
        if poll in self.options.slow_down_at:
            return 400, {"error": "slow_down"}
        if poll <= self.options.approve_after:
            return 400, {"error": "authorization_pending"}
        return None

    def _issue(self, *, refresh: bool) -> dict[str, Any]:
        length = self.options.token_length
        access = ("at." + secrets.token_urlsafe(length))[:length]
        self._state.access_tokens[access] = time.time() + self.options.expires_in
        self.issued.append(access)
        answer: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.options.expires_in,
            "scope": "mail",
        }
        if refresh:
            token = "rt." + secrets.token_urlsafe(32)
            self._state.refresh_tokens.add(token)
            self.issued.append(token)
            answer["refresh_token"] = token
        return answer

    def _introspect(self, token: str) -> dict[str, Any]:
        """RFC 7662: is the token active, and whose is it."""
        expires = self._state.access_tokens.get(token)
        if expires is None or time.time() > expires:
            return {"active": False}
        return {"active": True, "username": self.options.user}


class _Handler(BaseHTTPRequestHandler):
    server_state: OAuth2TestServer

    def do_GET(self) -> None:  # the name http.server calls
        path, _, query = self.path.partition("?")
        if path != "/authorize":
            self.send_error(404)
            return
        location = self.server_state.authorize(dict(urllib.parse.parse_qsl(query)))
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:  # the name http.server calls
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode("utf-8", "replace")
        form = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))
        status, answer = self.server_state.handle(self.path.split("?")[0], form)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a test reads ``requests`` instead."""
