"""``fetchd import fetchmail|getmail|mpop [PATH]``: move from another POP3 tool in one command.

1. Read the tool's config (``fetchd.config.migrate``): one account per server
   and user, and a note for each construct fetchd has no equivalent for.
2. Write each account as ``accounts.d/NAME.toml`` through the drop-in
   machinery; an inline password goes into ``accounts.d/NAME.password``
   (0600), never into the TOML. An existing account is never overwritten.
3. Load the whole config as the daemon would; if that fails, remove what
   was written.
4. Record the UIDs the tool had fetched as seen in fetchd's state (the
   ``fetch --mark-seen`` path), so the first pass downloads only what the
   tool had not. Nothing is sent to any server, so nothing is deleted there.

``--dry-run`` prints the files it would write and writes nothing.
"""

from __future__ import annotations

import argparse
import netrc
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fetchd.commands import say
from fetchd.config import Config, default_config_path, drop_ins, load_config
from fetchd.config.migrate import Found, Migration, Note, fetchmail, getmail, mpop, shown
from fetchd.errors import UsageError
from fetchd.paths import config_home
from fetchd.store.account import AccountStore
from fetchd.store.state import State, state_path

#: The order keys appear in a written drop-in, for the person who reads it.
_KEY_ORDER = [
    "host",
    "port",
    "security",
    "ca_file",
    "username",
    "password_file",
    "password_command",
    "auth",
    "enabled",
    "interval",
    "timeout",
    "pipelining",
    "delete_after_fetch",
    "delete_after_days",
    "max_message_size",
]


def run(args: argparse.Namespace) -> int:
    config_path = (args.config or default_config_path()).expanduser().absolute()
    if not config_path.is_file():
        raise UsageError(f"{config_path} does not exist; `fetchd init` writes a starter config")
    migration = read(args.tool, args.path, args.state)
    _rename(migration.accounts, args.rename or [])
    config = load_config(config_path)
    ready, taken = _free(migration.accounts, config, config_path)
    for found in ready:
        _password_source(found, config_path, migration.notes)
    if args.dry_run:
        _show(ready, config_path, migration.tool)
    else:
        _write(ready, config_path, migration.tool)
    for note in migration.notes:
        say(str(note))
    if not migration.accounts:
        say(f"no POP3 account found in the {migration.tool} config: nothing imported")
        return 1
    return 1 if taken else 0


def read(tool: str, path: Path | None, state: Path | None) -> Migration:
    """The tool's config and state, from ``path`` or where the tool looks by default."""
    if tool == "getmail":
        directory = path or _getmail_dir()
        if directory.is_file():
            return getmail.read([directory], state)
        files = getmail.rc_files(directory)
        if not files:
            raise UsageError(f"no getmailrc files in {directory}; give the directory or a file")
        return getmail.read(files, state)
    rc = path or (_fetchmailrc() if tool == "fetchmail" else _mpoprc())
    if not rc.is_file():
        raise UsageError(f"no {tool} config at {rc}; give its path")
    return fetchmail.read(rc, state) if tool == "fetchmail" else mpop.read(rc, state)


def _fetchmailrc() -> Path:
    home = os.environ.get("FETCHMAILHOME")
    return Path(home) / "fetchmailrc" if home else Path.home() / ".fetchmailrc"


def _mpoprc() -> Path:
    classic = Path.home() / ".mpoprc"
    return classic if classic.exists() else config_home() / "mpop" / "config"


def _getmail_dir() -> Path:
    xdg = config_home() / "getmail"
    return xdg if xdg.exists() else Path.home() / ".getmail"


def _rename(accounts: list[Found], renames: Sequence[str]) -> None:
    """Apply ``--rename OLD=NEW`` to the proposed names."""
    wanted = {}
    for rename in renames:
        old, equals, new = rename.partition("=")
        if not equals or not new:
            raise UsageError(f"--rename {rename}: write it as OLD=NEW")
        drop_ins.drop_in_path(Path("."), new)  # checks that NEW is a valid name
        wanted[old] = new
    for found in accounts:
        found.name = wanted.get(found.name, found.name)


def _free(
    accounts: list[Found], config: Config, config_path: Path
) -> tuple[list[Found], list[Found]]:
    """The accounts whose names are free, and those whose names are taken (said why)."""
    ready, taken = [], []
    for found in accounts:
        existing = config.accounts.get(found.name)
        if existing is None and not drop_ins.drop_in_path(config_path, found.name).exists():
            ready.append(found)
            continue
        taken.append(found)
        same = existing is not None and (existing.host.lower(), existing.port, existing.username)
        if same == found.server:
            say(f"account {found.name} already exists with the same server and user: skipped")
        else:
            say(
                f"account {found.name} ({found.where}) not imported: an account of that name "
                f"already exists in {config_path.parent}, and is never overwritten; rerun with "
                f"--rename {found.name}={_suggest(found.name, config)}"
            )
    return ready, taken


def _suggest(name: str, config: Config) -> str:
    number = 2
    while f"{name}-{number}" in config.accounts:
        number += 1
    return drop_ins.drop_in_path(Path("."), f"{name[:60]}-{number}").stem


def _password_source(found: Found, config_path: Path, notes: list[Note]) -> None:
    """Point the account at its password: a file for an inline one, else ~/.netrc's."""
    if "password_command" in found.table:
        return
    found.table["password_file"] = f"{drop_ins.DROP_IN_DIR}/{found.name}.password"
    if found.secret is None:
        found.secret = _netrc_password(found.table["host"], found.table["username"])
    if found.secret is None:
        where = drop_ins.password_path(config_path, found.name)
        notes.append(
            Note(
                found.where,
                f"account {found.name}: no password in the config; write it into "
                f"{where} (mode 0600)",
            )
        )


def _netrc_password(host: str, user: str) -> str | None:
    """The password ``~/.netrc`` holds for ``user`` at ``host``, as fetchmail and mpop use."""
    try:
        entry = netrc.netrc().authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return None
    if entry and entry[2] and entry[0] in (user, None, ""):
        return entry[2]
    return None


def _ordered(table: dict[str, Any]) -> dict[str, Any]:
    rank = {key: number for number, key in enumerate(_KEY_ORDER)}
    return dict(sorted(table.items(), key=lambda item: rank.get(item[0], len(rank))))


def _seen_line(found: Found, tool: str, verb: str) -> str:
    count = len(found.seen)
    source = f" (from {shown(found.state_file)})" if found.state_file else ""
    return f"{count} message{'' if count == 1 else 's'} {tool} had fetched {verb} fetched{source}"


def _show(accounts: list[Found], config_path: Path, tool: str) -> None:
    """``--dry-run``: the files that would be written, and what the state would record."""
    for found in accounts:
        path = drop_ins.drop_in_path(config_path, found.name)
        say(f"# {path} (dry run: not written)")
        say(drop_ins.drop_in_text(found.name, _ordered(found.table), _origin(found)).rstrip())
        if found.secret is not None:
            say(
                f"# the password from {found.where} would go into "
                f"{drop_ins.password_path(config_path, found.name)} (mode 0600)"
            )
        say(f"# {_seen_line(found, tool, 'would be recorded as')}")
        say("")


def _origin(found: Found) -> str:
    return f"`fetchd import` from {found.where}"


def _write(accounts: list[Found], config_path: Path, tool: str) -> None:
    """Write the drop-ins and passwords, check the whole config, then record the seen UIDs."""
    written: list[Path] = []
    try:
        for found in accounts:
            if found.secret is not None:
                written.append(drop_ins.write_password_file(config_path, found.name, found.secret))
            table = _ordered(found.table)
            written.append(drop_ins.write_drop_in(config_path, found.name, table, _origin(found)))
        config = load_config(config_path)
        _mark_seen(config, accounts)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    for found in accounts:
        say(
            f"added account {found.name} from {found.where}: "
            f"{drop_ins.drop_in_path(config_path, found.name)}"
        )
        say(f"  {_seen_line(found, tool, 'are recorded as')}")
    if accounts:
        say("a running daemon picks them up when reloaded: systemctl reload fetchd")


def _mark_seen(config: Config, accounts: list[Found]) -> None:
    """Record the old tool's UIDs as seen, leaving alone any the state already knows."""
    state = State(state_path(config.daemon.data_dir))
    try:
        for found in accounts:
            store = AccountStore(config.accounts[found.name], config.daemon.data_dir, state)
            with store.lock():
                recorded, _ = store.known_uids()
                store.mark_seen(dict.fromkeys(sorted(found.seen - recorded), 0))
    finally:
        state.close()
