"""``fetchd oauth login``: the device authorization grant (RFC 8628).

fetchd asks the device endpoint for a code, tells the person where to enter
it (on any device with a browser: fetchd may run on a headless server), and
polls the token endpoint until the person has approved or refused, or the
code has expired.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fetchd.config import OAuth2Config
from fetchd.errors import AuthError, NetworkError, ProtocolError, UsageError
from fetchd.oauth._grant import login_hint
from fetchd.oauth._http import describe_error, post_form

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
#: Seconds between polls when the server names none (RFC 8628 section 3.2).
DEFAULT_INTERVAL = 5.0
#: What ``slow_down`` adds to the interval (RFC 8628 section 3.5).
SLOW_DOWN_STEP = 5.0
#: The longest wait between polls after network errors.
MAX_INTERVAL = 60.0


@dataclass(frozen=True)
class DeviceCode:
    """The device endpoint's answer (RFC 8628 section 3.2)."""

    device_code: str = field(repr=False)
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float


def device_code(answer: dict[str, Any], url: str) -> DeviceCode:
    """Read the device endpoint's answer; Google names the URI ``verification_url``."""
    uri = answer.get("verification_uri", answer.get("verification_url"))
    code, user_code = answer.get("device_code"), answer.get("user_code")
    if not (isinstance(code, str) and isinstance(user_code, str) and isinstance(uri, str)):
        raise ProtocolError(f"{url} answered without device_code, user_code or verification_uri")
    complete = answer.get("verification_uri_complete")
    try:
        expires_in = float(answer.get("expires_in", 600))
        interval = float(answer.get("interval", DEFAULT_INTERVAL))
    except (TypeError, ValueError):
        raise ProtocolError(f"{url} answered an expires_in or interval that is no number") from None
    return DeviceCode(
        code,
        user_code,
        uri,
        complete if isinstance(complete, str) else None,
        expires_in,
        max(0.0, interval),
    )


@dataclass
class Clock:
    """Time for the polling loop; tests pass one that does not really sleep."""

    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time


def device_tokens(
    account: str, oauth2: OAuth2Config, say: Callable[[str], None], clock: Clock
) -> dict[str, Any]:
    """Run the device flow for ``account``; the token endpoint's answer granting it."""
    client = oauth2.client_fields(account)
    url = oauth2.device_endpoint
    if url is None:
        raise UsageError(f"account {account}: the device flow needs device_url (or a provider)")
    answer = post_form(url, {**client, "scope": " ".join(oauth2.scope_list)})
    if "error" in answer:
        raise AuthError(
            f"account {account}: the OAuth2 device endpoint refused ({describe_error(answer)}); "
            "check client_id, the client secret and the scopes"
        )
    code = device_code(answer, url)
    say(f"open {code.verification_uri} and enter {code.user_code}")
    if code.verification_uri_complete:
        say(f"(or open {code.verification_uri_complete}, which holds the code)")
    return _poll(account, oauth2, client, code, clock)


def _poll(
    account: str, oauth2: OAuth2Config, client: dict[str, str], code: DeviceCode, clock: Clock
) -> dict[str, Any]:
    """Ask the token endpoint until it grants or refuses (RFC 8628 section 3.4)."""
    deadline = clock.monotonic() + code.expires_in
    interval = code.interval
    fields = {**client, "grant_type": GRANT_TYPE, "device_code": code.device_code}
    while True:
        clock.sleep(interval)
        if clock.monotonic() > deadline:
            break
        try:
            answer = post_form(oauth2.token_endpoint, fields)
        except NetworkError:
            # Unreachable or overloaded for now: ask less often (RFC 8628 section 3.5)
            # until the code expires, rather than give up a login the person may
            # be approving at this moment.
            interval = min(2 * max(interval, 1.0), MAX_INTERVAL)
            continue
        error = answer.get("error")
        if error is None:
            return answer
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval += SLOW_DOWN_STEP
            continue
        if error == "expired_token":
            break
        if error == "access_denied":
            raise AuthError(f"account {account}: access was denied in the browser")
        raise AuthError(
            f"account {account}: the OAuth2 token endpoint refused ({describe_error(answer)})"
        )
    raise AuthError(
        f"account {account}: the code expired before it was entered; {login_hint(account)} again"
    )
