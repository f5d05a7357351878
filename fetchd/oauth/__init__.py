"""OAuth2 for the accounts whose server wants a token (Gmail, Microsoft 365).

Flow: ``fetchd oauth login NAME`` (``_login``) runs the device flow
(``_device``, RFC 8628) or the loopback flow with PKCE (``_loopback``, RFC
8252) once, with a person at a browser, and keeps the grant in a private
file (``_grant``). From then on every login asks ``access_token``
(``_refresh``), which reuses the access token while it lasts and refreshes it
unattended before it expires. ``_http`` makes the few HTTP requests with the
standard library and maps their errors into fetchd's.

Tokens, codes and the client secret never reach a log event, an exception
message or a ``repr``.
"""

from fetchd.oauth._device import Clock
from fetchd.oauth._grant import REFRESH_MARGIN, Grant, GrantFile
from fetchd.oauth._login import login
from fetchd.oauth._refresh import access_token

__all__ = ["REFRESH_MARGIN", "Clock", "Grant", "GrantFile", "access_token", "login"]
