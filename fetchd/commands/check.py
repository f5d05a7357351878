"""``fetchd check [--connect]``: is the config valid, and can every account log in?

Validation itself is ``load_config``'s (every problem at once, with its key
path). Here each account gets a verdict: its password source is read where
that has no side effects, and with ``--connect`` fetchd logs in, reports what
the server offers and how many messages wait, and QUITs without marking
anything for deletion. The state database gets SQLite's integrity check
(the one ``fetchd state check`` runs). Exit 1 if it is damaged or any
account fails. A hook or MDA program that cannot be found, the daemon's
``on_poll`` included, gets a warning: it fails only when it runs.
"""

from __future__ import annotations

import argparse
import os
import shutil

from fetchd import access
from fetchd.commands import load, say
from fetchd.commands.state import verdict as state_verdict
from fetchd.config import PASSWORD_SOURCES, AccountConfig, OAuth2Config
from fetchd.errors import AuthError, FetchdError
from fetchd.pop3.replies import Capabilities
from fetchd.rules import expire_warnings
from fetchd.session import login


def run(args: argparse.Namespace) -> int:
    config = load(args)
    count = len(config.accounts)
    say(f"{config.path}: valid, {count} account{'' if count == 1 else 's'}")
    sound, line = state_verdict(config)
    say(line)
    for warning in _programs({"on_poll": config.daemon.on_poll}):
        say(f"daemon: {warning}")
    failed = 0 if sound else 1
    for account in config.accounts.values():
        try:
            interval = account.interval or config.daemon.interval
            lines = _verdict(account, interval, connect=args.connect)
        except FetchdError as exc:
            failed += 1
            say(f"{account.name}: FAILED: {exc}")
            continue
        say(f"{account.name}: ok: {lines[0]}")
        for line in lines[1:]:
            say(f"  {line}")
    return 1 if failed else 0


def _verdict(account: AccountConfig, interval: float, *, connect: bool) -> list[str]:
    """What is known about ``account``; raises the ``FetchdError`` that makes it fail."""
    if not account.enabled:
        return ["disabled (not polled)"]
    where = f"{account.host}:{account.port} ({account.security}), user {account.username}"
    if connect:
        return [where, *_connect(account, interval), *_sharing(account), *_hooks(account)]
    return [f"{where}, {_secret_check(account)}", *_sharing(account), *_hooks(account)]


def _hooks(account: AccountConfig) -> list[str]:
    """A warning per hook or MDA of ``account`` whose program cannot be found."""
    commands = {key: getattr(account, key) for key in ("on_message", "on_attachment", "on_error")}
    commands["mda"] = account.mda
    return _programs(commands)


def _programs(commands: dict[str, tuple[str, ...] | None]) -> list[str]:
    """A warning per command (by its key) whose program cannot be found: it would fail at
    every run, and only the log would tell."""
    return [
        f"warning: {key}: no program {argv[0]!r} on PATH"
        if "/" not in argv[0]
        else f"warning: {key}: {argv[0]} is not an executable file"
        for key, argv in commands.items()
        if argv and shutil.which(argv[0]) is None  # a path is checked as it is, a name on PATH
    ]


def _sharing(account: AccountConfig) -> list[str]:
    """Who may read the account's mail, and whether this user can give it to that group."""
    group = account.share_group
    if not group:
        return []
    line = f"mail and attachments shared with the group {group} (files 0640, folders 2750)"
    gid = access.group_id(group)
    if os.geteuid() != 0 and gid not in {os.getegid(), *os.getgroups()}:
        line += (
            f"; warning: this user is not a member of {group}, so a poll run as this user "
            "fails (the service's user must be one)"
        )
    return [line]


def _source(account: AccountConfig) -> str:
    for key in PASSWORD_SOURCES[1:]:
        if getattr(account, key) is not None:
            return key
    return "password"


def _secret_check(account: AccountConfig) -> str:
    """Read the password where that is harmless; a command is run only with --connect."""
    if account.oauth2 is not None:
        return _grant_check(account.name, account.oauth2)
    source = _source(account)
    if source == "password_command":
        return "password_command not run (it runs with --connect)"
    if source == "password_keyring":  # unlocking it may ask the person at the desktop
        return "password_keyring not read (it is read with --connect)"
    if source == "password_credential" and not os.environ.get("CREDENTIALS_DIRECTORY"):
        return "password_credential is read from $CREDENTIALS_DIRECTORY under systemd"
    account.resolve_secret()
    return f"password from {source} readable"


def _connect(account: AccountConfig, interval: float) -> list[str]:
    """Log in, count messages, QUIT; nothing was marked, so nothing is deleted."""
    session = login(account)
    try:
        method = session.auth_method or account.auth
        messages, octets = session.stat()
        tls = session.transport.tls_active
        capabilities = session.capabilities
        session.quit()
    except BaseException:
        session.close()
        raise
    lines = [
        f"logged in with {method.upper()} {'over TLS' if tls else 'WITHOUT TLS'}; "
        f"{messages} message{'' if messages == 1 else 's'} ({octets / 1e6:.1f} MB) waiting",
        f"capabilities: {_describe(capabilities)}",
    ]
    return lines + _warnings(account, interval, capabilities)


def _describe(capabilities: Capabilities) -> str:
    if not capabilities.known:
        return "none announced (the server does not know CAPA)"
    return ", ".join(" ".join((name, *args)) for name, args in capabilities.items.items())


def _warnings(account: AccountConfig, interval: float, capabilities: Capabilities) -> list[str]:
    """What the server announces that conflicts with the account's settings."""
    found = [f"warning: {text}" for text in expire_warnings(account, capabilities)]
    delay = capabilities.login_delay
    if delay and account.schedule is None and interval < delay:
        found.append(
            f"note: the server allows a login every {delay} s (LOGIN-DELAY); "
            "fetchd polls no more often than that"
        )
    return found


def _grant_check(name: str, oauth2: OAuth2Config) -> str:
    """Whether ``fetchd oauth login`` has stored a grant; the token endpoint is not asked."""
    if oauth2.token_file is None or not oauth2.token_file.exists():
        raise AuthError(f"account {name}: no OAuth2 grant yet; run `fetchd oauth login {name}`")
    return f"OAuth2 grant in {oauth2.token_file} (refreshed at login)"
