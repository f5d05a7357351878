"""fetchd's command line: parse arguments, run one command, map errors to exit codes.

This is the only place that exits. Each command lives in ``fetchd.commands``
and is imported only when used, so ``fetchd fetch`` does not pay for the
scheduler and ``fetchd shell`` does not pay for attachment parsing.

Exit codes: 0 success; 1 an account failed (the others were still polled);
2 wrong usage; 70 a bug in fetchd; 74 local storage failed; 78 the config is
invalid (the last three as in sysexits.h).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from fetchd import __version__, errors

EXIT_OK = 0
EXIT_ACCOUNT_FAILED = 1
EXIT_USAGE = 2
EXIT_SOFTWARE = 70
EXIT_STORAGE = 74
EXIT_CONFIG = 78

#: command name -> "module:function" in fetchd.commands; imported on use.
_HANDLERS = {
    "fetch": "fetch:run",
    "list": "listing:run",
    "shell": "shell:run",
    "demo": "demo:run",
    "run": "daemon:run",
    "status": "status:run",
    "check": "check:run",
    "init": "init:run",
    "account": "account:run",
    "state": "state:run",
    "service": "service:run",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fetchd",
        description="Fetch new POP3 mail, exactly once, into Maildir with browsable attachments.",
    )
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        help="config file (default: $FETCHD_CONFIG, "
        "/etc/fetchd/config.toml as root, else ~/.config/fetchd/config.toml)",
    )
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    parser.add_argument("--log-format", choices=("auto", "json", "console"))
    parser.add_argument("--version", action="version", version=f"fetchd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_mail_commands(commands)
    _add_service_commands(commands)
    return parser


def _add_mail_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fetch = commands.add_parser("fetch", help="one pass over all (or the named) accounts")
    fetch.add_argument("accounts", nargs="*", metavar="ACCOUNT")
    fetch.add_argument(
        "--mark-seen",
        action="store_true",
        help="record everything now on the server as fetched, without downloading",
    )
    listing = commands.add_parser("list", help="what was fetched: date, sender, subject, files")
    listing.add_argument("account", nargs="?", metavar="ACCOUNT")
    listing.add_argument(
        "--since", metavar="DATE", help="only messages dated on or after DATE (YYYY-MM-DD)"
    )
    listing.add_argument(
        "--from", dest="sender", metavar="TEXT", help="only messages whose sender contains TEXT"
    )
    listing.add_argument("--with-attachments", action="store_true")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    shell = commands.add_parser("shell", help="an interactive POP3 session with one account")
    shell.add_argument("account", metavar="ACCOUNT")
    demo = commands.add_parser(
        "demo", help="fetch from an embedded sample server, no config needed"
    )
    demo.add_argument("directory", nargs="?", type=Path, metavar="DIR")


def _add_service_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    commands.add_parser("run", help="run the daemon: poll every account on its schedule")
    status = commands.add_parser("status", help="per-account state of polling")
    status.add_argument("--json", action="store_true")
    check = commands.add_parser("check", help="validate the config")
    check.add_argument("--connect", action="store_true", help="also log in to every account")
    init = commands.add_parser("init", help="write a commented starter config")
    init.add_argument("path", nargs="?", type=Path, metavar="PATH")
    init.add_argument(
        "--example",
        action="store_true",
        help="print the example config that describes every key, and write nothing",
    )
    account = commands.add_parser("account", help="add or remove an account")
    actions = account.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add an account (written to accounts.d/NAME.toml)")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--host", required=True)
    add.add_argument("--user", required=True)
    add.add_argument("--port", type=int)
    add.add_argument("--security", choices=("tls", "starttls", "plain"))
    source = add.add_mutually_exclusive_group()
    source.add_argument("--password-command")
    source.add_argument("--password-file")
    source.add_argument("--password-env")
    source.add_argument("--password-credential")
    add.add_argument("--delete-after-fetch", action="store_true")
    remove = actions.add_parser("remove", help="remove an account added with 'account add'")
    remove.add_argument("name", metavar="NAME")
    _add_state_command(commands)
    _add_unit_command(commands)


def _add_unit_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    service = commands.add_parser("service", help="install fetchd as a systemd service")
    actions = service.add_subparsers(dest="action", required=True)
    install = actions.add_parser(
        "install",
        help="write a systemd unit that runs this fetchd with the config "
        "(-c, default /etc/fetchd/config.toml; for --user %%E/fetchd/config.toml)",
    )
    install.add_argument(
        "--user",
        dest="user_unit",
        action="store_true",
        help="a user unit, in $XDG_CONFIG_HOME/systemd/user (default ~/.config/systemd/user)",
    )
    install.add_argument(
        "--group",
        metavar="GROUP",
        help="run as the static user fetchd with group GROUP, whose members may read the mail",
    )
    install.add_argument("--print", action="store_true", help="write the unit to stdout only")
    install.add_argument(
        "--unit-dir",
        type=Path,
        metavar="DIR",
        help="write the unit into DIR (default /etc/systemd/system, or the user unit folder)",
    )
    install.add_argument(
        "--force", action="store_true", help="replace a unit that differs from this one"
    )


def _add_state_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    state = commands.add_parser("state", help="check the state database, or rebuild it")
    actions = state.add_subparsers(dest="action", required=True)
    actions.add_parser("check", help="SQLite's integrity check of the state database")
    rebuild = actions.add_parser(
        "rebuild",
        help="keep a damaged state database aside and rebuild it from the Maildir and the "
        "server's listing (never deletes anything on the server)",
    )
    rebuild.add_argument("accounts", nargs="*", metavar="ACCOUNT")
    rebuild.add_argument(
        "--force", action="store_true", help="rebuild even if the database is sound"
    )


def _handler(command: str) -> Callable[[argparse.Namespace], int]:
    module_name, function = _HANDLERS[command].split(":")
    # Importing a command (pydantic, structlog, the POP3 client) makes some
    # hundred thousand objects and hardly any garbage: collecting during it
    # costs a twentieth of a short command's run and frees nothing.
    gc.disable()
    try:
        module = importlib.import_module(f"fetchd.commands.{module_name}")
    finally:
        gc.enable()
    handler: Callable[[argparse.Namespace], int] = getattr(module, function)
    return handler


#: Error class -> exit code and how the message is introduced; first match wins.
_EXITS: tuple[tuple[type[errors.FetchdError], int, str], ...] = (
    (errors.ConfigError, EXIT_CONFIG, "configuration error:\n"),
    (errors.UsageError, EXIT_USAGE, ""),
    (errors.StorageError, EXIT_STORAGE, "storage error: "),
    (errors.FetchdError, EXIT_ACCOUNT_FAILED, ""),
)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # The daemon catches its stop signals before the heavy imports and the config,
    # so that a SIGTERM during start-up ends it cleanly instead of killing it.
    # Imported here: only the daemon needs it, and ``--version`` pays for no socket.
    signals: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    if args.command == "run":
        from fetchd.signals import SignalInbox  # noqa: PLC0415

        signals = SignalInbox()
    try:
        with signals:
            return _handler(args.command)(args)
    except BrokenPipeError:
        # The reader went away (``fetchd list | head``); say nothing more.
        sys.stderr.close()
        return EXIT_OK
    except KeyboardInterrupt:
        print("fetchd: interrupted", file=sys.stderr)
        return 130
    except errors.FetchdError as exc:
        code, intro = next((code, intro) for kind, code, intro in _EXITS if isinstance(exc, kind))
        print(f"fetchd: {intro}{exc}", file=sys.stderr)
        return code
    except Exception:
        import traceback  # noqa: PLC0415  # only for a bug: not on every start

        traceback.print_exc()
        print("fetchd: internal error (a bug in fetchd): please report it", file=sys.stderr)
        return EXIT_SOFTWARE
