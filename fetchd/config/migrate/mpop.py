"""mpop: ``~/.mpoprc`` to fetchd accounts, its UIDL files to seen UIDs.

The rc file has one command per line, with an optional argument: the rest of
the line without trailing blanks, its enclosing double quotes removed (mpop
1.4 takes no escapes inside them). A first non-blank ``#`` makes a comment.
``defaults`` starts settings copied into every later account; ``account NAME
[: OTHER[,...]]`` starts an account, filled with the defaults and then with
the named accounts' settings. ``account default : work`` makes a second name
for the same mailbox, imported once.

A UIDL file (``uidls_file``, default ``~/.mpop_uidls/%U_at_%H``, or the file
``~/.mpop_uidls`` of older versions) holds lists: a line `` COUNT HOST USER``
(starting with a space), then COUNT UIDs, one a line. ``#`` lines are comments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fetchd.config._values import parse_size
from fetchd.config.migrate import (
    Found,
    Migration,
    Note,
    account_name,
    connection,
    expand_home,
    read_state_file,
    shell_command,
    shown,
)

_DELIVERY = "fetchd delivers into a Maildir (maildir) or through an MDA (mda) only"
_REASONS = {
    "delivery": _DELIVERY,
    "received_header": "fetchd stores messages as the server sent them",
    "filter": "fetchd fetches every new message; it runs no filter",
    "killsize": "fetchd never deletes a message it did not store",
    "only_new": "fetchd fetches only the messages it has not fetched before",
    "eval": "fetchd runs no command while importing; write the setting by hand",
    "source_ip": "fetchd lets the system choose the source address",
    "proxy_host": "fetchd connects to the server directly",
    "proxy_port": "fetchd connects to the server directly",
    "socket": "fetchd connects to the server over TCP",
    "ntlmdomain": "fetchd does not log in with NTLM",
    "tls_certcheck": "fetchd always checks the server's certificate",
    "tls_fingerprint": "fetchd checks the certificate against its CAs (ca_file), not a fingerprint",
    "tls_key_file": "fetchd sends no client certificate",
    "tls_cert_file": "fetchd sends no client certificate",
    "tls_crl_file": "fetchd checks no CRL file",
    "tls_priorities": "fetchd uses Python's TLS defaults",
    "tls_min_dh_prime_bits": "fetchd uses Python's TLS defaults",
    "tls_host_override": "fetchd checks the certificate against the host name",
    "tls_trust_file": "fetchd checks certificates against one ca_file, or else the system's CAs",
}
#: Commands that translate, or only tell where mpop keeps its state.
_TRANSLATED = set(
    [
        "host",
        "port",
        "user",
        "password",
        "passwordeval",
        "tls",
        "tls_starttls",
        "tls_trust_file",
        "keep",
        "skipsize",
        "timeout",
        "pipelining",
        "auth",
        "uidls_file",
    ]
)
_AUTHS = {"": None, "on": None, "user": "user", "plain": "plain", "login": "login"}
_AUTHS |= {"xoauth2": "xoauth2", "oauthbearer": "oauthbearer"}
DEFAULT_UIDLS = "~/.mpop_uidls/%U_at_%H"


@dataclass
class Block:
    """One ``account`` (or ``defaults``): its commands by name, with the line each is on."""

    name: str
    line: int
    settings: dict[str, tuple[str, int]] = field(default_factory=dict)


def argument(text: str) -> str:
    """A command's argument as mpop reads it: trailing blanks go, then enclosing quotes."""
    text = text.rstrip(" \t\r")
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return text[1:-1]
    return text


def parse(text: str) -> tuple[list[Block], list[tuple[int, str]]]:
    """The accounts of an rc file, inheritance done; and lines outside any account."""
    defaults = Block("defaults", 0)
    current: Block | None = None
    accounts: dict[str, Block] = {}
    stray: list[tuple[int, str]] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip(" \t\r")
        if not line or line.startswith("#"):
            continue
        command, _, rest = line.partition(" ") if " " in line else line.partition("\t")
        value = argument(rest.lstrip(" \t"))
        if command == "defaults":
            current = defaults
        elif command == "account":
            current = _account(value, number, defaults, accounts)
            accounts[current.name] = current
        elif current is None:
            stray.append((number, line))
        else:
            current.settings[command] = (value, number)
    return list(accounts.values()), stray


def _account(value: str, line: int, defaults: Block, accounts: dict[str, Block]) -> Block:
    name, _, parents = value.partition(":")
    block = Block(name.strip(), line, dict(defaults.settings))
    for parent in filter(None, (p.strip() for p in parents.split(","))):
        if parent in accounts:
            block.settings.update(accounts[parent].settings)
    return block


def read(path: Path, state: Path | None = None) -> Migration:
    """The accounts of the rc file at ``path``, with the UIDs of their UIDL files."""
    blocks, stray = parse(path.read_text(encoding="utf-8", errors="surrogateescape"))
    where = shown(path)
    migration = Migration("mpop")
    for number, line in stray:
        migration.notes.append(Note(f"{where}:{number}", f"{line} not understood"))
    for block in blocks:
        found = _found(block, where, migration.notes)
        if found is None:
            continue
        if any(found.server == other.server for other in migration.accounts):
            migration.notes.append(
                Note(
                    found.where,
                    f"account {block.name}: the same mailbox as an account above; imported once",
                )
            )
            continue
        _read_uidls(found, block, state, migration.notes)
        migration.accounts.append(found)
    migration.notes = list(dict.fromkeys(migration.notes))
    return migration


def _found(block: Block, where: str, notes: list[Note]) -> Found | None:
    settings = {key: value for key, (value, _) in block.settings.items()}
    here = f"{where}:{block.line}"
    if not settings.get("host") or not settings.get("user"):
        notes.append(Note(here, f"account {block.name} not imported: it names no host or user"))
        return None
    table: dict[str, Any] = {"host": settings["host"], "username": settings["user"]}
    table.update(_security(block, here, notes))
    if settings.get("port", "").isdigit():
        table["port"] = int(settings["port"])
    if settings.get("passwordeval"):
        table["password_command"] = shell_command(settings["passwordeval"])
    table["delete_after_fetch"] = settings.get("keep", "off") == "off"
    size = _size(settings.get("skipsize", "off"))
    if size:
        table["max_message_size"] = size
    if settings.get("timeout", "off").isdigit() and int(settings["timeout"]) > 0:
        table["timeout"] = f"{settings['timeout']}s"
    if settings.get("pipelining") == "off":
        table["pipelining"] = "off"
    auth = settings.get("auth", "")
    if _AUTHS.get(auth):
        table["auth"] = _AUTHS[auth]
    table.update(_delivery(settings.get("delivery", "")))
    for command, (value, line) in block.settings.items():
        if _noted(command, value, table, auth):
            reason = _REASONS.get(command, "fetchd has no such setting")
            notes.append(Note(f"{where}:{line}", f"{command} {value} not translated: {reason}"))
    return Found(account_name(block.name), table, here, secret=settings.get("password") or None)


def _delivery(value: str) -> dict[str, Any]:
    """``delivery maildir DIR`` and ``delivery mda CMD`` (without mpop's %F) as fetchd keys."""
    method, _, where = value.strip().partition(" ")
    where = where.strip()
    if method == "maildir" and where:
        return {"maildir": str(expand_home(where).absolute())}
    if method == "mda" and where and "%F" not in where:
        return {"mda": ["sh", "-c", where]}  # mpop runs it through the shell as well
    return {}


def _noted(command: str, value: str, table: dict[str, Any], auth: str) -> bool:
    """Whether a command of an account has no fetchd equivalent worth a note."""
    if command == "delivery":
        return "maildir" not in table and "mda" not in table
    if command == "tls_trust_file":
        return "ca_file" not in table and value not in ("system", "")
    if command == "auth":
        return auth not in _AUTHS
    if command in _TRANSLATED:
        return False
    if command in ("only_new", "tls_certcheck", "received_header"):  # on is fetchd's way
        return value == "off"
    return not (command in ("filter", "killsize") and value in ("", "off"))


def _security(block: Block, here: str, notes: list[Note]) -> dict[str, Any]:
    settings = {key: value for key, (value, _) in block.settings.items()}
    tls = settings.get("tls", "off") in ("on", "")
    implicit = settings.get("tls_starttls", "on") == "off"
    encrypted = ("tls" if implicit else "starttls") if tls else None
    security, more = connection(settings["host"], encrypted, here, f"account {block.name}: tls off")
    notes.extend(more)
    table: dict[str, Any] = {"security": security}
    trust = settings.get("tls_trust_file", "system")
    if tls and trust not in ("system", "") and expand_home(trust).is_file():
        table["ca_file"] = str(expand_home(trust).absolute())
    return table


def _size(text: str) -> int:
    """``skipsize`` in bytes; 0 for off, and for what mpop itself would refuse.

    mpop takes a whole number with k or m at most. ``parse_size`` reads those
    as mpop does (1024 and 1024 * 1024 bytes), and more forms besides, which no
    config that mpop runs holds: only mpop's own are taken.
    """
    if not re.fullmatch(r"[0-9]+[kKmM]?", text.strip()):
        return 0
    return parse_size(text.strip())


# ---------------------------------------------------------------------------
# UIDL files


def uidls_path(block: Block, state: Path | None) -> Path:
    """The UIDL file of an account: ``state`` if given, else its ``uidls_file``, else mpop's."""
    settings = {key: value for key, (value, _) in block.settings.items()}
    pattern = str(state) if state else settings.get("uidls_file") or DEFAULT_UIDLS
    if state is None and "uidls_file" not in settings:
        old = Path.home() / ".mpop_uidls"
        if old.is_file():  # before mpop 1.2 every account shared this one file
            return old
    text = pattern.replace("%U", settings.get("user", "")).replace("%H", settings.get("host", ""))
    return expand_home(text)


def parse_uidls(data: bytes) -> dict[tuple[str, str], set[str]]:
    """A UIDL file's lists by (host, user)."""
    lists: dict[tuple[str, str], set[str]] = {}
    current: set[str] | None = None
    for line in data.decode("utf-8", "surrogateescape").split("\n"):
        if line.startswith("#") or not line.strip():
            continue
        if line.startswith(" "):
            _, host, user = ([*line.strip().split(" ", 2), "", ""])[:3]
            current = lists.setdefault((host, user), set())
        elif current is not None:
            current.add(line.rstrip("\r"))
    return lists


def _read_uidls(found: Found, block: Block, state: Path | None, notes: list[Note]) -> None:
    path = uidls_path(block, state)
    data = read_state_file(path, notes)
    if data is None:
        return
    uids = parse_uidls(data).get((found.table["host"], found.table["username"]))
    if uids:
        found.seen, found.state_file = uids, path
