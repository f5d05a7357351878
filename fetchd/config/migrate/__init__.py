"""Reading other POP3 tools' configs and state, for ``fetchd import``.

Each tool has a module that turns its config file into ``Migration``: one
``Found`` account per server and user, as the keys of an ``accounts.d`` drop-in,
plus a ``Note`` for every construct that has no fetchd equivalent, with the
file and line it came from. The same module reads the tool's record of the
messages it already fetched (``Found.seen``), so that fetchd's first pass
downloads only what the old tool had not.

Nothing here writes a file, runs a command or opens a connection:
``fetchd.commands.migrate`` does the writing, through the drop-in machinery.

- ``fetchmail``: ``~/.fetchmailrc`` (its own grammar) and ``~/.fetchids``.
- ``getmail``: ``getmailrc*`` files (INI) and their ``oldmail-*`` files.
- ``mpop``: ``~/.mpoprc`` (one command per line) and its UIDL files.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fetchd.config._models import default_port
from fetchd.config._values import ACCOUNT_NAME, is_loopback

__all__ = [
    "Found",
    "Migration",
    "Note",
    "account_name",
    "connection",
    "distinct",
    "shell_command",
    "shown",
]


@dataclass(frozen=True)
class Note:
    """A construct that was not translated: where it is, what it is, and why."""

    where: str
    text: str

    def __str__(self) -> str:
        return f"{self.where}: {self.text}"


@dataclass
class Found:
    """One account found in an old tool's config, ready to become a drop-in."""

    #: The fetchd account name proposed for it.
    name: str
    #: The drop-in's keys, without any password (that is ``secret``).
    table: dict[str, Any]
    #: Where the account is defined: ``~/.mpoprc:4``.
    where: str
    #: An inline password from the old config; it goes into a 0600 file, never the TOML.
    secret: str | None = None
    #: UIDs the old tool recorded as fetched, exactly as its server sent them.
    seen: set[str] = field(default_factory=set)
    #: The file ``seen`` was read from, if any.
    state_file: Path | None = None
    #: What the tool's state file names this account by (user, host, ...).
    seen_key: tuple[str, ...] = ()

    @property
    def server(self) -> tuple[str, int, str]:
        """Host, port and user: two accounts with the same are one mailbox."""
        port = self.table.get("port") or default_port(self.table.get("security", "tls"))
        return (str(self.table["host"]).lower(), int(port), self.table["username"])


@dataclass
class Migration:
    """What one old tool's config and state translate to."""

    tool: str
    accounts: list[Found] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)


def shown(path: Path) -> str:
    """A path as people write it: under the home directory as ``~/...``."""
    home = Path.home()
    try:
        return f"~/{path.relative_to(home)}"
    except ValueError:
        return str(path)


def account_name(*parts: str) -> str:
    """A valid fetchd account name made of ``parts`` (joined by ``-``).

    Characters an account name may not hold become ``-``; the name is a
    directory name, so it may not start with a dot and is cut at 64.
    """
    text = "-".join(p for p in parts if p)
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", text).lstrip(".-")[:64].rstrip("-")
    name = text or "imported"
    assert ACCOUNT_NAME.fullmatch(name), name
    return name


def distinct(accounts: list[Found]) -> None:
    """Give accounts that were proposed the same name distinct ones.

    Names made from a host repeat when one server has several users: those
    get the user's name in front, and a number if that is not enough.
    """
    names = [found.name for found in accounts]
    for found in accounts:
        if names.count(found.name) > 1:
            found.name = account_name(found.table["username"].split("@")[0], found.name)
    taken: set[str] = set()
    for found in accounts:
        name, number = found.name, 1
        while name in taken:
            number += 1
            name = account_name(found.name[:60], str(number))
        found.name = name
        taken.add(name)


def connection(host: str, encrypted: str | None, where: str, why: str) -> tuple[str, list[Note]]:
    """fetchd's ``security`` for a connection the old tool made ``encrypted`` (None: in clear).

    A clear-text connection stays clear only on loopback: elsewhere fetchd
    would refuse it without ``allow_plaintext``, and sending a password in
    clear across a network is not something to carry over silently. It
    becomes STARTTLS, and a note says so.
    """
    if encrypted is not None:
        return encrypted, []
    if is_loopback(host):
        return "plain", []
    return "starttls", [
        Note(
            where,
            f"{why}: the password went across the network in clear text; imported with "
            'security = "starttls" (if the server has no STLS, set security = "plain" '
            "and allow_plaintext = true)",
        )
    ]


#: Words a password command may hold and still need no shell to run.
_PLAIN_WORDS = re.compile(r"[A-Za-z0-9_@%+=:,./ -]*")


def shell_command(command: str) -> str:
    """A shell command line as a ``password_command``, which fetchd runs without a shell.

    A command made of plain words runs as it is; anything else (``~``, ``$``,
    pipes, quotes) runs through ``sh -c``, as the old tool ran it.
    """
    if _PLAIN_WORDS.fullmatch(command) and command.strip():
        return command.strip()
    return shlex.join(["sh", "-c", command])


def read_state_file(path: Path, notes: list[Note]) -> bytes | None:
    """The old tool's record of what it fetched; None if it has none, or (noted) if unreadable."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        notes.append(Note(shown(path), f"cannot read: {exc.strerror}"))
        return None


def expand_home(text: str) -> Path:
    """A file name from an old config: a leading ``~`` is the home directory."""
    return Path(os.path.expanduser(text))
