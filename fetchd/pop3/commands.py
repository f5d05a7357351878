"""POP3 command lines: building them safely and showing them without secrets."""

from __future__ import annotations

from dataclasses import dataclass

from fetchd.errors import UsageError
from fetchd.pop3 import states

#: RFC 2449 section 4: a command line is at most 255 octets including CRLF.
MAX_COMMAND_LINE = 255

_FORBIDDEN_IN_ARGS = frozenset("\r\n\x00")


@dataclass(frozen=True, slots=True)
class Command:
    """One POP3 command; validates itself so that no caller can inject a line."""

    name: str
    args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.name not in states.COMMANDS:
            raise UsageError(f"unknown POP3 command {self.name!r}")
        for arg in self.args:
            spaced = " " in arg and self.name != "PASS"  # RFC 1939: a password may hold spaces
            if not arg or spaced or _FORBIDDEN_IN_ARGS & set(arg):
                raise UsageError(f"{self.name}: argument must be one word without CR, LF or NUL")
        if len(self.to_bytes()) > MAX_COMMAND_LINE:
            raise UsageError(f"{self.name}: command line longer than {MAX_COMMAND_LINE} octets")

    @classmethod
    def fits(cls, name: str, *args: str) -> Command | None:
        """The command if its line fits in 255 octets, else None."""
        line = " ".join((name, *args)).encode("utf-8") + b"\r\n"
        return cls(name, args) if len(line) <= MAX_COMMAND_LINE else None

    # -- the commands production code sends, by name -------------------------

    @classmethod
    def stat(cls) -> Command:
        return cls("STAT")

    @classmethod
    def list(cls, number: int | None = None) -> Command:
        return cls("LIST", _number_args(number))

    @classmethod
    def uidl(cls, number: int | None = None) -> Command:
        return cls("UIDL", _number_args(number))

    @classmethod
    def retr(cls, number: int) -> Command:
        return cls("RETR", _number_args(number))

    @classmethod
    def top(cls, number: int, lines: int) -> Command:
        return cls("TOP", (*_number_args(number), str(lines)))

    @classmethod
    def dele(cls, number: int) -> Command:
        return cls("DELE", _number_args(number))

    @classmethod
    def last(cls) -> Command:
        return cls("LAST")

    @property
    def multiline(self) -> bool:
        """Whether a +OK reply carries a dot-terminated body (RFC 1939 section 3)."""
        return states.is_multiline(self.name, len(self.args))

    def to_bytes(self) -> bytes:
        return " ".join((self.name, *self.args)).encode("utf-8") + b"\r\n"

    def redacted(self) -> str:
        """The line as it may be logged: no password, digest or SASL payload."""
        if self.name == "PASS":
            return "PASS ***"
        if self.name == "APOP":
            return f"APOP {self.args[0]} ***"
        if self.name == "AUTH" and len(self.args) > 1:
            return f"AUTH {self.args[0]} ***"
        return " ".join((self.name, *self.args))


def _number_args(number: int | None) -> tuple[str, ...]:
    """A message number as an argument; RFC 1939 numbers start at 1."""
    if number is None:
        return ()
    if number < 1:
        raise UsageError(f"message numbers start at 1, not {number}")
    return (str(number),)


def sasl_line(payload: str) -> bytes:
    """A SASL client response line (RFC 5034 section 4); not bound by 255 octets."""
    if _FORBIDDEN_IN_ARGS & set(payload):
        raise UsageError("SASL response must not contain CR, LF or NUL")
    return payload.encode("ascii") + b"\r\n"
