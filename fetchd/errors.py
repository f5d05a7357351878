"""The one exception tree of fetchd.

Every error fetchd raises on purpose is a ``FetchdError``; foreign exceptions
(``OSError``, ``ssl.SSLError``, ``sqlite3.Error``, pydantic's ``ValidationError``)
are mapped into it at the module that meets them, with ``raise ... from exc``::

    FetchdError
    ├── ConfigError               the config file is missing, unreadable or invalid
    ├── StorageError              a message or the state DB could not be written
    ├── UsageError                a command was used wrongly (bad argument, illegal in state)
    └── AccountError              one account's poll failed; carries ``retry_later``
        ├── AuthError             the server refused the credentials ([AUTH], RFC 3206)
        ├── ServerBusyError       retry later: [IN-USE], [LOGIN-DELAY], [SYS/TEMP]
        ├── ServerError           the server refused a command (-ERR), [SYS/PERM]
        ├── AccountLockedError    another fetchd process is polling this account
        ├── ProtocolError         the server said something POP3 does not allow
        │   ├── ReplyTooLongError a reply went past its cap in octets or lines
        │   └── SizeMismatchError a message's size differs from what LIST announced
        └── NetworkError          connect, read or write failed; transient
            ├── NetworkTimeout    the server went silent longer than the timeout, or
            │                     a reply took longer than its deadline
            └── TLSError          handshake or certificate verification failed

Messages say what happened and what to do about it. They never contain a
password, token or APOP digest: callers pass only redacted text in.
"""

from __future__ import annotations

from typing import ClassVar, Literal

#: What kind of failure ended an account's poll; recorded as the poll's outcome.
FailureKind = Literal[
    "error",
    "config",
    "storage",
    "usage",
    "auth",
    "busy",
    "server",
    "locked",
    "protocol",
    "network",
    "tls",
]


class FetchdError(Exception):
    """Base of every error fetchd raises on purpose."""

    #: A short name for the class of failure, recorded as a poll's outcome.
    kind: ClassVar[FailureKind] = "error"
    #: Whether the same action may succeed later without the user changing anything.
    retry_later: bool = False


class ConfigError(FetchdError):
    """The configuration cannot be used; the message names file and key path."""

    kind: ClassVar[FailureKind] = "config"


class StorageError(FetchdError):
    """Writing a message, an attachment or the state database failed."""

    kind: ClassVar[FailureKind] = "storage"


class UsageError(FetchdError):
    """A command was used in a way that cannot work (bad argument, wrong state)."""

    kind: ClassVar[FailureKind] = "usage"


class AccountError(FetchdError):
    """One account's poll failed; other accounts are unaffected."""


class AuthError(AccountError):
    """The server refused the credentials. Retrying with the same ones will not help."""

    kind: ClassVar[FailureKind] = "auth"


class ServerBusyError(AccountError):
    """The server asked us to come back later ([IN-USE], [LOGIN-DELAY], [SYS/TEMP])."""

    kind: ClassVar[FailureKind] = "busy"

    retry_later = True

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class ServerError(AccountError):
    """The server refused a command with -ERR (or [SYS/PERM])."""

    kind: ClassVar[FailureKind] = "server"


class AccountLockedError(AccountError):
    """Another fetchd process holds this account's lock; it is polled again later."""

    kind: ClassVar[FailureKind] = "locked"

    retry_later = True


class ProtocolError(AccountError):
    """The server sent bytes that POP3 does not allow; the session is unusable."""

    kind: ClassVar[FailureKind] = "protocol"


class ReplyTooLongError(ProtocolError):
    """A reply went past its cap (an endless listing, a message larger than allowed).

    Reading stopped there, so the session is unusable; what came before is intact.
    """

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class SizeMismatchError(ProtocolError):
    """A message's body differs in size from what LIST announced, beyond CRLF/LF.

    The reply may belong to another command (a server that sent one reply too
    many), so nothing read in this session after it can be trusted.
    """


class NetworkError(AccountError):
    """Connecting, reading or writing failed; usually transient."""

    kind: ClassVar[FailureKind] = "network"

    retry_later = True


class NetworkTimeout(NetworkError):
    """The server sent nothing for longer than the configured timeout."""


class TLSError(NetworkError):
    """The TLS handshake or the certificate check failed."""

    kind: ClassVar[FailureKind] = "tls"

    # A certificate that does not verify will not verify on the next try either.
    retry_later = False
