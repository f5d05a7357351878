"""getmail6: ``getmailrc*`` files to fetchd accounts, ``oldmail-*`` files to seen UIDs.

Each rc file is an INI file read as getmail reads it (``RawConfigParser``:
``#`` and ``;`` comment lines, ``key = value`` or ``key: value``, indented
continuation lines) and describes one account: ``[retriever]`` (the server),
``[destination]`` (where mail goes) and ``[options]``. ``password_command``
is a Python tuple of words, run without a shell.

getmail keeps the UIDs a POP3 retriever has seen beside the rc files, in
``oldmail-SERVER-PORT-USER`` (characters ``/\\:;<>|`` in that name replaced by
``-``), one ``UID\\0TIMESTAMP`` line per message. BrokenUIDLPOP3Retriever's
ids are its own, not the server's UIDs: they cannot be carried over.
"""

from __future__ import annotations

import ast
import configparser
import re
import shlex
from pathlib import Path
from typing import Any

from fetchd.config.migrate import (
    Found,
    Migration,
    Note,
    account_name,
    connection,
    distinct,
    expand_home,
    read_state_file,
    shown,
)

#: POP3 retriever types -> the connection they make ("tls", or None: in clear).
_POP3: dict[str, str | None] = {
    "SimplePOP3Retriever": None,
    "BrokenUIDLPOP3Retriever": None,
    "SimplePOP3SSLRetriever": "tls",
    "BrokenUIDLPOP3SSLRetriever": "tls",
}
_MULTIDROP: dict[str, str | None] = {
    "MultidropPOP3Retriever": None,
    "MultidropPOP3SSLRetriever": "tls",
}
_REASONS = {
    "keyfile": "fetchd sends no client certificate",
    "certfile": "fetchd sends no client certificate",
    "ssl_fingerprints": "fetchd checks the certificate against its CAs (ca_file)",
    "ssl_version": "fetchd uses Python's TLS defaults",
    "ssl_ciphers": "fetchd uses Python's TLS defaults",
    "ssl_cert_hostname": "fetchd checks the certificate against the host name",
    "envelope_recipient": "fetchd stores a mailbox as one account's mail (no multidrop)",
    "read_all": "fetchd fetches only the messages it has not fetched before",
    "delete_bigger_than": "fetchd never deletes a message it did not store",
    "max_messages_per_session": "fetchd sizes its own batches and sessions",
    "max_bytes_per_session": "fetchd sizes its own batches and sessions",
    "delivered_to": "fetchd stores messages as the server sent them",
    "received": "fetchd stores messages as the server sent them",
    "message_log": "fetchd logs to stdout and stderr (the journal under systemd)",
    "message_log_syslog": "fetchd logs to stdout and stderr (the journal under systemd)",
    "message_log_verbose": "fetchd logs to stdout and stderr (the journal under systemd)",
    "logfile": "fetchd logs to stdout and stderr (the journal under systemd)",
    "use_netrc": "fetchd reads no .netrc at login; the import looked the password up",
    "netrc_file": "fetchd reads no .netrc at login",
}
#: Settings that translate, or that change nothing fetchd does.
_TRANSLATED = set(
    [
        "type",
        "server",
        "port",
        "username",
        "password",
        "password_command",
        "use_apop",
        "ca_certs",
        "timeout",
        "delete",
        "delete_after",
        "max_message_size",
        "verbose",
    ]
)
_STRIP = re.compile(r"[/\\:;<>|]+")


def rc_files(directory: Path) -> list[Path]:
    """getmail's rc files in a directory: ``getmailrc`` and ``getmailrc-*``, sorted."""
    return sorted(p for p in directory.glob("getmailrc*") if p.is_file())


def read(paths: list[Path], state: Path | None = None) -> Migration:
    """The accounts of the rc files; their oldmail files are in ``state`` or beside them."""
    migration = Migration("getmail")
    for path in paths:
        found = _read_one(path, migration.notes)
        if found is not None:
            _read_oldmail(found, state or path.parent, migration.notes)
            migration.accounts.append(found)
    distinct(migration.accounts)
    return migration


def _lines(text: str) -> dict[tuple[str, str], int]:
    """The line of each key, by (section, key), as ``RawConfigParser`` lowercases keys."""
    lines: dict[tuple[str, str], int] = {}
    section = ""
    for number, line in enumerate(text.split("\n"), start=1):
        if match := re.match(r"\[([^]]+)\]", line):
            section = match.group(1)
        elif match := re.match(r"([^\s=:#;][^=:]*?)\s*[=:]", line):
            lines.setdefault((section, match.group(1).strip().lower()), number)
    return lines


def _read_one(path: Path, notes: list[Note]) -> Found | None:
    text = path.read_text(encoding="utf-8", errors="surrogateescape")
    where = shown(path)
    parser = configparser.RawConfigParser()
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        notes.append(Note(where, f"not imported: {exc.message.splitlines()[0]}"))
        return None
    lines = _lines(text)
    retriever = dict(parser.items("retriever")) if parser.has_section("retriever") else {}
    kind = retriever.get("type", "")
    here = f"{where}:{lines.get(('retriever', 'type'), 1)}"
    if kind not in _POP3 | _MULTIDROP or not retriever.get("server"):
        notes.append(Note(here, f"type = {kind or '(none)'} not imported: fetchd speaks POP3 only"))
        return None
    options = dict(parser.items("options")) if parser.has_section("options") else {}
    table = _table(kind, retriever, options, here, notes)
    command = retriever.get("password_command")
    if command:
        table["password_command"] = _command(command, here, notes)
    found = Found(_name(path, table), table, here, secret=retriever.get("password") or None)
    found.seen_key = (retriever.get("port", ""), kind)
    for section, values in (("retriever", retriever), ("options", options)):
        for key, value in values.items():
            if key not in _TRANSLATED and not _harmless(key, value):
                reason = _REASONS.get(key, "fetchd has no such setting")
                line = f"{where}:{lines.get((section, key), 1)}"
                notes.append(Note(line, f"{key} = {value} not translated: {reason}"))
    if parser.has_section("destination"):
        destination = dict(parser.items("destination"))
        translated = _destination(destination)
        table.update(translated)
        if not translated:
            line = f"{where}:{lines.get(('destination', 'type'), 1)}"
            dest = destination.get("type", "")
            notes.append(
                Note(
                    line,
                    f"[destination] type = {dest} not translated: fetchd delivers into a "
                    "Maildir (maildir) or through an MDA without placeholders (mda) only",
                )
            )
    if kind.startswith("BrokenUIDL"):
        notes.append(
            Note(
                here,
                f"type = {kind}: its message ids are its own, not the server's "
                "UIDs, so fetchd fetches every message once more",
            )
        )
    return found


def _destination(destination: dict[str, str]) -> dict[str, Any]:
    """A ``Maildir`` or ``MDA_external`` destination as fetchd's ``maildir`` or ``mda``."""
    kind, path = destination.get("type", "").strip(), destination.get("path", "").strip()
    if kind == "Maildir" and path:
        return {"maildir": str(expand_home(path).absolute())}
    if kind != "MDA_external" or not path:
        return {}
    try:  # getmail writes the arguments as a Python tuple of strings
        arguments = ast.literal_eval(destination.get("arguments", "()").strip() or "()")
    except (ValueError, SyntaxError):
        return {}
    if isinstance(arguments, str):
        arguments = (arguments,)
    if not isinstance(arguments, tuple) or not all(isinstance(a, str) for a in arguments):
        return {}
    if any("%(" in word for word in (path, *arguments)):
        return {}  # getmail fills in the sender and recipient; fetchd does not
    return {"mda": [path, *arguments]}


def _harmless(key: str, value: str) -> bool:
    """Settings whose value is what fetchd does anyway."""
    off = value.strip().lower() in ("0", "false", "no", "off", "")
    return key in ("read_all", "delete_bigger_than", "message_log_syslog", "use_netrc") and off


def _table(
    kind: str, retriever: dict[str, str], options: dict[str, str], here: str, notes: list[Note]
) -> dict[str, Any]:
    host = retriever["server"]
    encrypted = (_POP3 | _MULTIDROP)[kind]
    security, more = connection(host, encrypted, here, f"type = {kind}")
    notes.extend(more)
    table: dict[str, Any] = {"host": host, "username": retriever.get("username", "")}
    table["security"] = security
    table["port"] = int(retriever.get("port") or (995 if encrypted else 110))
    if _true(retriever.get("use_apop", "")):
        table["auth"] = "apop"
    ca_file = Path(retriever.get("ca_certs", "")).expanduser()
    if retriever.get("ca_certs") and ca_file.is_file():
        table["ca_file"] = str(ca_file.absolute())
    if retriever.get("timeout", "").isdigit() and int(retriever["timeout"]) > 0:
        table["timeout"] = f"{retriever['timeout']}s"
    table["delete_after_fetch"] = _true(options.get("delete", ""))
    days = options.get("delete_after", "0")
    if not table["delete_after_fetch"] and days.isdigit() and int(days) > 0:
        table["delete_after_days"] = int(days)
    size = options.get("max_message_size", "0")
    if size.isdigit() and int(size) > 0:
        table["max_message_size"] = int(size)
    return table


def _true(value: str) -> bool:
    return value.strip().lower() in ("1", "yes", "true", "on")


def _command(text: str, here: str, notes: list[Note]) -> str:
    """``password_command`` (a Python tuple of words, or one word) as one command line."""
    try:
        words = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        words = text
    if isinstance(words, str):
        words = (words,)
    if not isinstance(words, tuple) or not all(isinstance(w, str) for w in words):
        notes.append(Note(here, f"password_command = {text} not understood"))
        return text
    return shlex.join(words)


def _name(path: Path, table: dict[str, Any]) -> str:
    """``getmailrc-work`` is work; a plain ``getmailrc`` is named after its server."""
    suffix = path.name.removeprefix("getmailrc").strip("-_.")
    return account_name(suffix) if suffix else account_name(table["host"])


def oldmail_name(server: str, port: int, username: str) -> str:
    """The name of getmail's oldmail file for a POP3 account."""
    return _STRIP.sub("-", f"oldmail-{server}-{port}-{username}")


def parse_oldmail(data: bytes) -> set[str]:
    """The UIDs of an oldmail file (``UID\\0TIMESTAMP`` lines)."""
    seen = set()
    for line in data.decode("utf-8", "surrogateescape").split("\n"):
        uid, nul, _ = line.strip().partition("\0")
        if nul:
            seen.add(uid)
    return seen


def _read_oldmail(found: Found, directory: Path, notes: list[Note]) -> None:
    if found.seen_key[1].startswith("BrokenUIDL"):
        return
    table = found.table
    path = directory / oldmail_name(table["host"], table["port"], table["username"])
    data = read_state_file(path, notes)
    if data is None:
        return
    found.seen, found.state_file = parse_oldmail(data), path
