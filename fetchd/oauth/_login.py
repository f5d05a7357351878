"""``fetchd oauth login``: get a grant with a person's help, and keep it.

Two ways to ask: the device flow (``_device``: a code entered in any
browser, for headless machines; Microsoft allows it for POP) and the
loopback flow (``_loopback``: a browser on this machine; what Google
allows for Gmail). Either way the grant must hold a refresh token, or
fetchd could not renew the access token unattended.
"""

from __future__ import annotations

from collections.abc import Callable

from fetchd.config import OAuth2Config
from fetchd.errors import AuthError
from fetchd.oauth._device import Clock, device_tokens
from fetchd.oauth._grant import Grant, GrantFile, grant_from
from fetchd.oauth._loopback import authorize
from fetchd.oauth._refresh import forget


def login(
    account: str,
    oauth2: OAuth2Config,
    say: Callable[[str], None],
    clock: Clock | None = None,
    *,
    browser: bool = False,
) -> Grant:
    """Run one flow for ``account`` and store the grant; returns it."""
    clock = clock or Clock()
    if oauth2.token_file is None:
        raise AuthError(f"account {account}: no OAuth2 token file is configured")
    if browser:
        answer = authorize(account, oauth2, say)
    else:
        answer = device_tokens(account, oauth2, say, clock)
    grant = grant_from(
        answer,
        now=clock.wall(),
        token_url=oauth2.token_endpoint,
        client_id=oauth2.client,
        previous=None,
    )
    if grant.refresh_token is None:
        raise AuthError(
            f"account {account}: the server issued no refresh token, so fetchd could not "
            "log in unattended (Microsoft needs the offline_access scope)"
        )
    grant_file = GrantFile(account, oauth2.token_file)
    with grant_file.locked():
        grant_file.save(grant)
    forget(grant_file.path)
    return grant
