"""fetchmail: ``~/.fetchmailrc`` to fetchd accounts, ``~/.fetchids`` to seen UIDs.

An rc file is a list of statements: ``set ...`` (global), ``defaults ...``
(options for every later entry), and ``poll HOST`` or ``skip HOST`` entries
holding server options, then users (``user NAME there ...``), each with its
options. One fetchd account is made per POP3 user entry; ``skip`` entries
become disabled accounts. Tokens come from ``_fetchmail_lexer``, which follows
fetchmail's own lexer.

``.fetchids`` holds one ``REMOTEUSER@HOST UID`` line per message fetchmail has
seen and left on the server, as fetchmail's uid.c writes it; the user name may
itself hold ``@``, so the line is split at the first space after the first
``@`` and the user at the last ``@`` before it, as fetchmail reads it back.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fetchd.config.migrate import (
    Found,
    Migration,
    Note,
    account_name,
    connection,
    distinct,
    read_state_file,
    shown,
)
from fetchd.config.migrate._fetchmail_lexer import PROTOCOLS, Token, tokens

_DELIVERY = "fetchd delivers by its own keys (maildir, mda, lmtp): set them by hand"
_MULTIDROP = "fetchd stores a mailbox as one account's mail (no multidrop)"
_AS_SENT = "fetchd stores messages as the server sent them"
_BATCHES = "fetchd sizes its own batches and sessions"
_NO_COMMANDS = "fetchd connects to the server itself and runs no command around a poll"
_LOGGING = "fetchd logs to stdout and stderr (the journal under systemd)"

#: Why a construct has no fetchd equivalent, by keyword.
_REASONS: dict[str, str] = {
    **dict.fromkeys(
        [
            "mda",
            "bsmtp",
            "lmtp",
            "smtphost",
            "smtpaddress",
            "smtpname",
            "is",
            "to",
            "antispam",
            "esmtpname",
            "esmtppassword",
            "warnings",
            "postmaster",
            "bouncemail",
            "spambounce",
            "softbounce",
        ],
        _DELIVERY,
    ),
    **dict.fromkeys(
        ["fetchdomains", "envelope", "qvirtual", "aka", "localdomains", "checkalias", "dns"],
        _MULTIDROP,
    ),
    **dict.fromkeys(
        [
            "rewrite",
            "forcecr",
            "stripcr",
            "pass8bits",
            "mimedecode",
            "dropstatus",
            "dropdelivered",
            "bad-header",
            "tracepolls",
        ],
        _AS_SENT,
    ),
    **dict.fromkeys(
        ["fetchlimit", "batchlimit", "fetchsizelimit", "fastuidl", "expunge"], _BATCHES
    ),
    **dict.fromkeys(
        ["preconnect", "postconnect", "plugin", "plugout", "interface", "monitor"], _NO_COMMANDS
    ),
    **dict.fromkeys(["logfile", "syslog", "invisible", "showdots"], _LOGGING),
    "fetchall": "fetchd fetches only the messages it has not fetched before",
    "flush": "fetchd deletes only messages it stored (delete_after_fetch, delete_after_days)",
    "limitflush": "fetchd never deletes messages it did not store",
    "idle": "fetchd polls on a schedule; it does not IDLE",
    "forceidle": "fetchd polls on a schedule; it does not IDLE",
    "idletimeout": "fetchd polls on a schedule; it does not IDLE",
    "folder": "a POP3 server has one mailbox",
    "sslkey": "fetchd sends no client certificate",
    "sslcert": "fetchd sends no client certificate",
    "sslfingerprint": "fetchd checks the certificate against its CAs (ca_file), not a fingerprint",
    "sslcommonname": "fetchd checks the certificate against the host name",
    "sslcertpath": "fetchd takes one ca_file, or else the system's CAs",
    "sslcertck": "fetchd always checks the server's certificate",
    "principal": "fetchd does not use Kerberos",
    "properties": "only fetchmail's extensions read it",
    "pidfile": "systemd keeps track of fetchd's process",
    "uidl": "fetchd always uses UIDL when the server offers it",
    "interval": "fetchd polls each account on its own interval; set interval or schedule",
}

_SERVER_ONE = set(
    [
        "via",
        "protocol",
        "service",
        "port",
        "interval",
        "auth",
        "timeout",
        "principal",
        "esmtpname",
        "esmtppassword",
        "qvirtual",
        "interface",
        "monitor",
        "plugin",
        "plugout",
        "bad-header",
    ]
)
_SERVER_MANY = {"aka", "localdomains"}
_SERVER_FLAGS = {"uidl", "checkalias", "dns", "tracepolls"}
_USER_ONE = set(
    [
        "password",
        "smtpaddress",
        "smtpname",
        "mda",
        "bsmtp",
        "preconnect",
        "postconnect",
        "sslkey",
        "sslcert",
        "sslproto",
        "sslcertfile",
        "sslcertpath",
        "sslcommonname",
        "sslfingerprint",
        "limit",
        "warnings",
        "fetchlimit",
        "fetchsizelimit",
        "fastuidl",
        "batchlimit",
        "expunge",
        "properties",
        "idletimeout",
    ]
)
_USER_MANY = {"folder", "smtphost", "fetchdomains", "antispam", "is", "to"}
_USER_FLAGS = set(
    [
        "keep",
        "flush",
        "limitflush",
        "fetchall",
        "rewrite",
        "forcecr",
        "stripcr",
        "pass8bits",
        "dropstatus",
        "dropdelivered",
        "mimedecode",
        "idle",
        "forceidle",
        "ssl",
        "sslcertck",
        "lmtp",
    ]
)
_STARTS = {"poll", "skip", "defaults", "set"}
_AUTHS = {"any": None, "password": "user"}
_POP3 = {None, "pop3", "apop", "auto"}


@dataclass(frozen=True)
class Option:
    """One keyword with its arguments, as written on ``line``."""

    keyword: str
    args: tuple[Token, ...]
    line: int
    negated: bool = False
    #: The keyword as written (``proto``, ``nokeep``), for the notes.
    written: str = ""

    @property
    def value(self) -> str:
        return self.args[0].value if self.args else ""

    def text(self) -> str:
        words = [self.written or self.keyword, *(t.raw for t in self.args)]
        return ("no " if self.negated else "") + " ".join(words)


@dataclass
class Entry:
    """A ``poll``, ``skip`` or ``defaults`` statement."""

    kind: str
    name: str
    line: int
    server: list[Option] = field(default_factory=list)
    #: User options given before any ``user``: they apply to every user of the entry.
    common: list[Option] = field(default_factory=list)
    users: list[list[Option]] = field(default_factory=list)


@dataclass
class RcFile:
    entries: list[Entry] = field(default_factory=list)
    settings: list[Option] = field(default_factory=list)
    #: Tokens the parser did not understand.
    stray: list[Token] = field(default_factory=list)


class _Stream:
    def __init__(self, found: list[Token]) -> None:
        self.tokens, self.at = found, 0

    def peek(self) -> Token | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def next_is(self, *kinds: str, keywords: tuple[str, ...] = ()) -> bool:
        token = self.peek()
        if token is None:
            return False
        return token.kind in kinds or (token.kind == "keyword" and token.value in keywords)


def parse(text: str) -> RcFile:
    """The statements of an rc file; what is not understood lands in ``stray``."""
    stream, rc = _Stream(tokens(text)), RcFile()
    while (token := stream.peek()) is not None:
        if token.kind == "keyword" and token.value == "set":
            stream.take()
            rc.settings.append(_setting(stream, token.line))
        elif token.kind == "keyword" and token.value in ("poll", "skip", "defaults"):
            stream.take()
            name = stream.take().value if token.value != "defaults" and stream.peek() else ""
            entry = Entry(token.value, name, token.line)
            _entry_options(stream, entry, rc)
            rc.entries.append(entry)
        else:
            rc.stray.append(stream.take())
    return rc


def _setting(stream: _Stream, line: int) -> Option:
    negated = stream.next_is(keywords=("no",))
    if negated:
        stream.take()
    word = stream.take() if stream.peek() else Token("keyword", "", line, "")
    if stream.next_is("map"):
        stream.take()
    args = (stream.take(),) if stream.next_is("string", "number") else ()
    return Option(word.value, args, line, negated, word.raw)


def _entry_options(stream: _Stream, entry: Entry, rc: RcFile) -> None:
    while (token := stream.peek()) is not None:
        if token.kind == "keyword" and token.value in _STARTS:
            return
        stream.take()
        if token.kind != "keyword":
            rc.stray.append(token)
            continue
        negated = token.value == "no" and stream.next_is(keywords=tuple(_negatable()))
        word = stream.take() if negated else token
        option = _option(stream, word, negated, token.line)
        if option.keyword == "user":
            entry.users.append([option])
        elif option.keyword in _SERVER_ONE | _SERVER_MANY | _SERVER_FLAGS | {"envelope"}:
            entry.server.append(option)
        elif entry.users:
            entry.users[-1].append(option)
        else:
            entry.common.append(option)


def _negatable() -> set[str]:
    return _SERVER_FLAGS | _USER_FLAGS | {"envelope"}


def _option(stream: _Stream, word: Token, negated: bool, line: int) -> Option:
    keyword, args = word.value, []
    if negated or keyword in _SERVER_FLAGS | _USER_FLAGS:
        pass
    elif keyword == "protocol":
        if stream.next_is("string", keywords=PROTOCOLS):
            args.append(stream.take())
    elif keyword in _SERVER_ONE | _USER_ONE:
        if stream.next_is("string", "number"):
            args.append(stream.take())
    elif keyword == "envelope":
        while stream.next_is("string", "number") and len(args) < 2:
            args.append(stream.take())
    elif keyword in _SERVER_MANY | _USER_MANY | {"user"}:
        while stream.next_is("string", "number", "map"):
            args.append(stream.take())
        if stream.next_is(keywords=("here", "there")):
            args.append(stream.take())
    elif keyword == "bad-header" and stream.next_is(keywords=("accept", "reject")):
        args.append(stream.take())
    return Option(keyword, tuple(args), line, negated, word.raw)


# ---------------------------------------------------------------------------
# Translation


def read(path: Path, state: Path | None = None) -> Migration:
    """The accounts of the rc file at ``path``, with the UIDs of its id file."""
    text = path.read_text(encoding="utf-8", errors="surrogateescape")
    rc = parse(text)
    where = shown(path)
    migration = Migration("fetchmail")
    for token in rc.stray:
        migration.notes.append(Note(f"{where}:{token.line}", f"{token.raw} not understood"))
    settings = {o.keyword: o for o in rc.settings}
    for option in rc.settings:
        if option.keyword in _REASONS and not option.negated:
            migration.notes.append(_not_translated(where, option, "set "))
    defaults: Entry | None = None
    for entry in rc.entries:
        if entry.kind == "defaults":
            defaults = entry
            continue
        for options in _users(entry, defaults):
            found = _account(entry, options, settings, path, migration.notes)
            if found is not None:
                migration.accounts.append(found)
    _read_ids(migration, state or _id_file(path, settings))
    migration.notes = list(dict.fromkeys(migration.notes))  # defaults repeat in every account
    distinct(migration.accounts)
    return migration


def _users(entry: Entry, defaults: Entry | None) -> Iterator[list[Option]]:
    """Each user's options in the order fetchmail applies them: later ones win."""
    inherited = [*defaults.server, *defaults.common] if defaults else []
    for user in entry.users or [[]]:
        yield [*inherited, *entry.server, *entry.common, *user]


def _not_translated(where: str, option: Option, prefix: str = "") -> Note:
    reason = _REASONS.get(option.keyword, "fetchd has no such setting")
    return Note(f"{where}:{option.line}", f"{prefix}{option.text()} not translated: {reason}")


def _account(
    entry: Entry, options: list[Option], settings: dict[str, Option], rc: Path, notes: list[Note]
) -> Found | None:
    where = shown(rc)
    last = {o.keyword: o for o in options}
    here = f"{where}:{entry.line}"
    protocol = last["protocol"].value.lower() if "protocol" in last else None
    if protocol not in _POP3:
        notes.append(
            Note(
                here,
                f"poll {entry.name}: protocol {protocol} not imported: fetchd speaks POP3 only",
            )
        )
        return None
    user = _remote_user(last.get("user"), last.get("is"))
    if user is None:
        user = getpass.getuser()
        notes.append(
            Note(
                here,
                f"poll {entry.name}: no user given; fetchmail logs in as "
                f"{user}, and so will fetchd",
            )
        )
    host = last["via"].value if "via" in last else entry.name
    table: dict[str, Any] = {"host": host, "username": user}
    translated = _translate(table, last, settings, rc.parent, notes=notes, here=here)
    if protocol == "apop":
        table["auth"] = "apop"
    elif protocol == "auto":
        notes.append(
            Note(
                here,
                f"poll {entry.name}: protocol auto: imported as POP3, "
                "the only protocol fetchd speaks",
            )
        )
    if entry.kind == "skip":
        table["enabled"] = False
    for option in options:
        if _noted(option, translated):
            notes.append(_not_translated(where, option))
    password = last.get("password")
    return Found(
        account_name(host),
        table,
        here,
        secret=password.value if password else None,
        seen_key=(user, entry.name, host),
    )


def _noted(option: Option, translated: set[str]) -> bool:
    """Whether an option of an account has no fetchd equivalent worth a note."""
    if option.keyword in translated or option.keyword in ("user", "protocol"):
        return False
    if option.keyword in ("sslcertck", "uidl"):  # fetchd always does these
        return option.negated
    if option.negated:  # turns off what fetchd does not do either: no rewrite, no mimedecode
        return False
    return not (option.keyword == "is" and option.args and option.args[-1].raw == "there")


def _remote_user(user: Option | None, is_option: Option | None) -> str | None:
    """The name to log in with: ``user NAME [there]``, ``is NAME there``, else a local name."""
    for option in (is_option, user):
        if option and option.args and option.args[-1].raw == "there":
            return option.args[0].value
    if user and user.args:
        return user.args[0].value
    return None


def _translate(
    table: dict[str, Any],
    last: dict[str, Option],
    settings: dict[str, Option],
    base: Path,
    *,
    notes: list[Note],
    here: str,
) -> set[str]:
    """Fill ``table`` from the options fetchd has an equivalent for; returns their keywords.

    File names are relative to ``base``, the rc file's directory, as fetchmail takes them.
    """
    done = {"via", "password", "ssl", "sslproto", "sslcertfile", "keep", "limit", "timeout"}
    ssl = "ssl" in last and not last["ssl"].negated
    clear = not ssl and "sslproto" in last and last["sslproto"].value == ""
    security, more = connection(
        table["host"],
        "tls" if ssl else None if clear else "starttls",
        here,
        f'poll {table["host"]}: sslproto ""',
    )
    table["security"] = security
    notes.extend(more)
    port = _port(last.get("port") or last.get("service"))
    if port is not None:
        table["port"], done = port, done | {"port", "service"}
    if "sslcertfile" in last:
        ca_file = base / Path(last["sslcertfile"].value).expanduser()
        if ca_file.is_file():
            table["ca_file"] = str(ca_file.absolute())
        else:
            done.discard("sslcertfile")
    keep = "keep" in last and not last["keep"].negated
    table["delete_after_fetch"] = not keep  # fetchmail deletes what it fetched unless keep
    limit = _number(last.get("limit"))
    if limit:
        table["max_message_size"] = limit
    timeout = _number(last.get("timeout"))
    if timeout:
        table["timeout"] = f"{timeout}s"
    auth = last.get("auth")
    if auth and auth.value in _AUTHS:
        done.add("auth")
        if _AUTHS[auth.value]:
            table["auth"] = _AUTHS[auth.value]
    daemon = _number(settings.get("daemon"))
    if daemon:
        table["interval"] = f"{daemon * (_number(last.get('interval')) or 1)}s"
        done.add("interval")
    return done


def _port(option: Option | None) -> int | None:
    if option is None:
        return None
    value = option.value
    if value.isdigit() and 0 < int(value) < 65536:
        return int(value)
    return {"pop3": 110, "pop3s": 995}.get(value)


def _number(option: Option | None) -> int:
    if option is None or option.negated:
        return 0
    try:
        return max(0, int(option.value))
    except ValueError:
        return 0


# ---------------------------------------------------------------------------
# The id file


def _id_file(rc_path: Path, settings: dict[str, Option]) -> Path:
    """Where fetchmail keeps its UIDs: ``set idfile``, else in $FETCHMAILHOME or home."""
    if "idfile" in settings and settings["idfile"].args:
        return rc_path.parent / Path(settings["idfile"].value).expanduser()
    home = os.environ.get("FETCHMAILHOME")
    return Path(home) / ".fetchids" if home else Path.home() / ".fetchids"


def parse_ids(data: bytes) -> dict[tuple[str, str], set[str]]:
    """``.fetchids`` lines by (user, host), both lower case as fetchmail compares them."""
    seen: dict[tuple[str, str], set[str]] = {}
    for raw in data.decode("utf-8", "surrogateescape").split("\n"):
        line = raw.lstrip(" \t")
        at = line.find("@")
        space = line.find(" ", at) if at >= 0 else -1
        if space < 0:
            continue
        user_host = line[:space].rstrip(" \t")
        uid = line[space:].lstrip(" ").split(None, 1)
        if not uid:
            continue
        user, _, host = user_host.rpartition("@")
        seen.setdefault((user.lower(), host.lower()), set()).add(uid[0])
    return seen


def _read_ids(migration: Migration, path: Path) -> None:
    data = read_state_file(path, migration.notes)
    if data is None:
        return
    seen = parse_ids(data)
    for found in migration.accounts:
        user, poll, host = found.seen_key
        for name in dict.fromkeys((poll, host)):
            uids = seen.get((user.lower(), name.lower()))
            if uids:
                found.seen |= uids
                found.state_file = path
