"""The few HTTP requests of OAuth2: a form POSTed, a JSON object back.

The standard library's ``urllib`` does it: fetchd makes two or three such
requests per login flow and one per token refresh, so a client library would
only add start-up time and a dependency. Foreign errors are mapped here, once:
no connection, a timeout or a 5xx is a ``NetworkError`` (retry later); an
answer that is not a JSON object is a ``ProtocolError``. An OAuth2 error
answer (RFC 6749 section 5.2: HTTP 400 with ``{"error": ...}``) is returned,
not raised, because what it means depends on the request.

Nothing here puts a request's fields (tokens, codes, the client secret) into
a message; the server's own ``error_description`` is shown cut short and made
printable.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from fetchd import __version__
from fetchd.errors import NetworkError, ProtocolError

#: Seconds for connecting to and hearing from the authorization server.
TIMEOUT = 30.0
#: An OAuth2 endpoint's answer is a few hundred octets; more is not one.
MAX_BODY = 256 * 1024


def post_form(url: str, fields: dict[str, str], timeout: float = TIMEOUT) -> dict[str, Any]:
    """POST ``fields`` form-encoded to ``url``; the JSON object answered, errors included."""
    # The config allows https:// only (and http:// to loopback), never file: or others.
    request = urllib.request.Request(  # noqa: S310
        url,
        data=urllib.parse.urlencode(fields).encode("ascii"),
        headers={
            "Accept": "application/json",
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": f"fetchd/{__version__}",
        },
        method="POST",
    )
    status, body = _send(request, timeout)
    answer = _json_object(url, status, body)
    if status >= 500 or (status >= 400 and "error" not in answer):
        raise NetworkError(f"{url} answered HTTP {status}; trying again later")
    return answer


def _send(request: urllib.request.Request, timeout: float) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.read(MAX_BODY + 1)
    except urllib.error.HTTPError as exc:  # 4xx and 5xx: the body says why
        with exc:
            return exc.code, exc.read(MAX_BODY + 1)
    except urllib.error.URLError as exc:
        raise NetworkError(f"cannot reach {request.full_url}: {exc.reason}") from exc
    except (OSError, http.client.HTTPException) as exc:  # timeouts, resets, bad status lines
        raise NetworkError(f"cannot reach {request.full_url}: {exc}") from exc


def _json_object(url: str, status: int, body: bytes) -> dict[str, Any]:
    if len(body) > MAX_BODY:
        raise ProtocolError(f"{url} answered more than {MAX_BODY} octets")
    try:
        answer = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        if status >= 500:
            raise NetworkError(f"{url} answered HTTP {status}; trying again later") from None
        raise ProtocolError(f"{url} answered HTTP {status} without a JSON object") from None
    if not isinstance(answer, dict):
        raise ProtocolError(f"{url} answered HTTP {status} without a JSON object")
    return answer


def describe_error(answer: dict[str, Any]) -> str:
    """An OAuth2 error answer as one short, printable line."""
    code = _printable(str(answer.get("error", "unknown error")), 60)
    description = answer.get("error_description")
    if isinstance(description, str) and description:
        return f"{code}: {_printable(description, 200)}"
    return code


def _printable(text: str, limit: int) -> str:
    clean = "".join(c if c.isprintable() else " " for c in text)
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."
