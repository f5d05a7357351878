"""An OAuth2 grant and the private file that keeps it between runs.

The file (``<data_dir>/oauth/NAME.json``, mode 0600 in a 0700 folder) holds
the refresh token and the last access token with its expiry, so that a
``fetchd fetch`` soon after another reuses the token instead of asking for a
new one. It is replaced whole (a temporary file, fsync, rename, fsync of the
folder): a crash leaves the old grant or the new one, never half of either,
and a rotated refresh token, once the server has issued it, is not lost.

Processes that refresh the same grant (the daemon, ``fetchd fetch``,
``fetchd shell``) take turns under an ``flock`` on a lock file beside it,
so a rotating server never sees the old refresh token twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fetchd.access import PRIVATE, SECRET_FILE, replace_file
from fetchd.errors import AuthError, ProtocolError, StorageError

#: Seconds before its expiry at which an access token is replaced.
REFRESH_MARGIN = 60.0
#: Lifetime assumed for an access token whose answer gave none (RFC 6749 5.1 allows that).
DEFAULT_LIFETIME = 3600.0


@dataclass(frozen=True)
class Grant:
    """What the token endpoint granted; the tokens stay out of ``repr``."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    #: Unix time at which the access token stops working.
    expires_at: float
    obtained_at: float
    #: The endpoint and client it was granted to: a config naming others needs a new login.
    token_url: str
    client_id: str
    scope: str = ""
    #: When ``fetchd oauth login`` made it; a refresh keeps it (0: a grant older than
    #: the field). A new login is a change of the account's setup, a refresh is not.
    logged_in_at: float = 0.0

    def fresh(self, now: float, margin: float = REFRESH_MARGIN) -> bool:
        return now + margin < self.expires_at

    def for_client(self, token_url: str, client_id: str) -> bool:
        return self.token_url == token_url and self.client_id == client_id


def grant_from(
    answer: dict[str, Any], *, now: float, token_url: str, client_id: str, previous: Grant | None
) -> Grant:
    """The grant in a successful token answer (RFC 6749 section 5.1).

    A refresh answer without a ``refresh_token`` keeps the previous one; with
    one, the new one replaces it (rotation, section 6).
    """
    token = answer.get("access_token")
    if not isinstance(token, str) or not token:
        raise ProtocolError(f"{token_url} answered without an access_token")
    kind = answer.get("token_type", "Bearer")
    if not isinstance(kind, str) or kind.lower() != "bearer":
        raise ProtocolError(f"{token_url} issued a token of type {str(kind)[:30]!r}, not Bearer")
    lifetime = answer.get("expires_in", DEFAULT_LIFETIME)
    try:
        seconds = float(lifetime)
    except (TypeError, ValueError):
        raise ProtocolError(f"{token_url} answered an expires_in that is no number") from None
    refresh = answer.get("refresh_token")
    if not isinstance(refresh, str) or not refresh:
        refresh = previous.refresh_token if previous is not None else None
    scope = answer.get("scope")
    return Grant(
        access_token=token,
        refresh_token=refresh,
        expires_at=now + seconds,
        obtained_at=now,
        token_url=token_url,
        client_id=client_id,
        scope=scope if isinstance(scope, str) else (previous.scope if previous else ""),
        logged_in_at=previous.logged_in_at if previous is not None else now,
    )


def login_hint(account: str) -> str:
    return f"run `fetchd oauth login {account}`"


class GrantFile:
    """The grant of one account on disk."""

    def __init__(self, account: str, path: Path) -> None:
        self.account = account
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the grant's lock against other fetchd processes."""
        PRIVATE.make_missing(self.path.parent)
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, SECRET_FILE)
        except OSError as exc:
            raise StorageError(f"cannot open {self.lock_path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def load(self) -> Grant | None:
        """The stored grant; None when there is none yet."""
        try:
            data = json.loads(self.path.read_bytes())
            # A field the file lacks takes its default, or makes the grant damaged.
            grant = Grant(**{key: data[key] for key in Grant.__dataclass_fields__ if key in data})
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {self.path}: {exc.strerror}") from exc
        except (ValueError, TypeError, KeyError):
            raise self._damaged() from None
        if not _well_formed(grant):
            raise self._damaged()
        return grant

    def login_stamp(self) -> int | None:
        """What tells one login from the next (a refresh keeps it); None without a grant.

        The daemon re-polls an account at once when this changes across a
        reload. A grant it cannot read is stamped by its file's change time,
        so that replacing it still counts.
        """
        try:
            grant = self.load()
        except (AuthError, StorageError):
            with contextlib.suppress(OSError):
                return self.path.stat().st_ctime_ns
            return None
        return None if grant is None else int(grant.logged_in_at * 1e9)

    def _damaged(self) -> AuthError:
        return AuthError(
            f"account {self.account}: the OAuth2 token file {self.path} is damaged; "
            f"{login_hint(self.account)}"
        )

    def save(self, grant: Grant) -> None:
        """Replace the stored grant whole: a rotated refresh token must not be lost."""
        PRIVATE.make_missing(self.path.parent)
        data = json.dumps(asdict(grant), indent=2).encode("utf-8") + b"\n"
        try:
            replace_file(self.path, data, SECRET_FILE)
        except OSError as exc:
            raise StorageError(f"cannot write {self.path}: {exc.strerror}") from exc


def _well_formed(grant: Grant) -> bool:
    """Whether every field has its type (a hand-edited file may say anything)."""
    texts = (grant.access_token, grant.token_url, grant.client_id, grant.scope)
    times = (grant.expires_at, grant.obtained_at, grant.logged_in_at)
    return (
        all(isinstance(text, str) for text in texts)
        and isinstance(grant.refresh_token, str | None)
        and all(isinstance(t, int | float) and not isinstance(t, bool) for t in times)
    )
