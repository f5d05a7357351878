"""An authenticated POP3 session for a configured account.

The poll, the shell and ``fetchd check`` all log in the same way; this is
where an ``AccountConfig`` becomes an ``Endpoint`` and a secret: a password
from its source, or for an account with an ``oauth2`` table an access token
that ``fetchd.oauth`` keeps fresh.
"""

from __future__ import annotations

from fetchd.config import AccountConfig
from fetchd.pop3.client import Session, Transcript
from fetchd.pop3.connect import Endpoint, open_session
from fetchd.pop3.transport import Timeouts


def endpoint_for(account: AccountConfig) -> Endpoint:
    return Endpoint(
        host=account.host,
        port=account.port,
        security=account.security,
        ca_file=account.ca_file,
        timeouts=Timeouts(connect=account.timeout, read=account.timeout),
        pipelining=account.pipelining == "auto",
    )


def secret_for(account: AccountConfig) -> str:
    """The password, or the OAuth2 access token, to log in with now."""
    if account.oauth2 is None:
        return account.resolve_secret()
    # Imported here: urllib's HTTP stack is for OAuth2 accounts only.
    from fetchd import oauth  # noqa: PLC0415

    return oauth.access_token(account.name, account.oauth2)


def login(account: AccountConfig, transcript: Transcript | None = None) -> Session:
    """Connect and authenticate; the caller QUITs or closes."""
    secret = secret_for(account)
    session = open_session(endpoint_for(account), transcript=transcript)
    try:
        session.login(account.auth, account.username, secret, account.host, account.port)
    except BaseException:
        session.close()
        raise
    return session
