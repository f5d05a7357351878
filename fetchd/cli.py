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

from fetchd import __version__, errors, journal
from fetchd.paths import DEFAULT_CONFIG_WORDS

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
    "oauth": "oauth:run",
    "import": "migrate:run",
    "state": "state:run",
    "service": "service:run",
    "completion": "completion:run",
    "man": "manual:run",
}

#: Net verbosity (each -v adds one, each -q takes one) -> the log level it picks.
_VERBOSITY_LEVELS = {1: "debug", -1: "warning", -2: "error"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fetchd",
        description="Fetch new POP3 mail, exactly once, into Maildir with browsable attachments.",
        epilog=f"exit status: {EXIT_OK} success; {EXIT_ACCOUNT_FAILED} an account failed "
        f"(the others were still polled); {EXIT_USAGE} wrong usage; {EXIT_SOFTWARE} a bug in "
        f"fetchd; {EXIT_STORAGE} local storage failed; {EXIT_CONFIG} the config is invalid.",
    )
    _add_global_options(parser)
    parser.add_argument(
        "--version", action="version", version=f"fetchd {__version__}", help="print the version"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_mail_commands(commands)
    _add_service_commands(commands)
    _add_help_commands(commands, parser)
    for sub in _subparsers(parser):
        _add_global_options(sub, default=argparse.SUPPRESS)
    return parser


def _add_global_options(parser: argparse.ArgumentParser, default: object = None) -> None:
    """The options every command takes, before or after its name.

    After it (``fetchd list -c a.toml``) they default to SUPPRESS, so that a
    value given before the command is not overwritten by the subparser's default.
    """
    group = parser.add_argument_group("global options")
    group.add_argument(
        "-c",
        "--config",
        type=Path,
        default=default,
        help=f"config file (default: {DEFAULT_CONFIG_WORDS})",
    )
    group.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default=default,
        help="log events at this level and above (default: the config's, else info); "
        "wins over -v and -q",
    )
    group.add_argument(
        "--log-format",
        choices=("auto", "json", "console"),
        default=default,
        help="console for people, json for machines, auto: console on a terminal or "
        "the journal (default: the config's, else auto)",
    )
    # The command's parser hands back only what it counted itself: counted apart,
    # ``fetchd -q fetch -q`` adds up to -qq (see ``parse_args``).
    after = "_after" if default is argparse.SUPPRESS else ""
    count = 0 if default is None else default
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        dest=f"verbose{after}",
        default=count,
        help="more output: log at debug level",
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="count",
        dest=f"quiet{after}",
        default=count,
        help="less output: log warnings and errors only, no progress bar or summary; "
        "-qq: errors only",
    )


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every parser below ``parser``, nested ones (``account add``) included."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases share a parser
                found += [sub, *_subparsers(sub)]
    return found


def _add_mail_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fetch = commands.add_parser("fetch", help="one pass over all (or the named) accounts")
    fetch.add_argument(
        "accounts", nargs="*", metavar="ACCOUNT", help="accounts to poll (default: every enabled)"
    )
    mode = fetch.add_mutually_exclusive_group()
    mode.add_argument(
        "--mark-seen",
        action="store_true",
        help="record everything now on the server as fetched, without downloading",
    )
    mode.add_argument(
        "--dry-run",
        action="store_true",
        help="log in and say what would be fetched, skipped and deleted; "
        "change nothing on the server or on disk",
    )
    listing = commands.add_parser("list", help="what was fetched: date, sender, subject, files")
    listing.add_argument(
        "account", nargs="?", metavar="ACCOUNT", help="only this account's messages"
    )
    listing.add_argument(
        "--since", metavar="DATE", help="only messages dated on or after DATE (YYYY-MM-DD)"
    )
    listing.add_argument(
        "--from", dest="sender", metavar="TEXT", help="only messages whose sender contains TEXT"
    )
    listing.add_argument(
        "--with-attachments", action="store_true", help="only messages with attachments"
    )
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    shell = commands.add_parser(
        "shell",
        help="an interactive POP3 session with one account",
        description="Log in to ACCOUNT (fetchd sends USER and PASS, or the configured "
        "authentication) and type POP3 commands at the prompt, or pipe them in.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
    )
    shell.add_argument("-h", "--help", action=_ShellHelp, help="show this help and exit")
    shell.add_argument("account", metavar="ACCOUNT", help="the account to log in to")
    demo = commands.add_parser(
        "demo", help="fetch from an embedded sample server, no config needed"
    )
    demo.add_argument(
        "directory",
        nargs="?",
        type=Path,
        metavar="DIR",
        help="where the sample mail goes (default: a new temporary directory)",
    )


def _add_service_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    commands.add_parser("run", help="run the daemon: poll every account on its schedule")
    status = commands.add_parser(
        "status",
        help="per-account state of polling",
        description="With --json: one object, whose accounts lists one object per account "
        "and whose load is the running daemon's (overloaded_since, achieved, configured, "
        "max_wait, updated), or null when no daemon runs.",
    )
    status.add_argument(
        "--json", action="store_true", help="the same as one JSON object, with the daemon's load"
    )
    check = commands.add_parser("check", help="validate the config")
    check.add_argument("--connect", action="store_true", help="also log in to every account")
    init = commands.add_parser("init", help="write a commented starter config")
    init.add_argument(
        "path", nargs="?", type=Path, metavar="PATH", help="where to write it (default: as -c)"
    )
    init.add_argument(
        "--example",
        action="store_true",
        help="print the example config that describes every key, and write nothing",
    )
    account = commands.add_parser("account", help="add or remove an account")
    actions = account.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add an account (written to accounts.d/NAME.toml)")
    add.add_argument("name", metavar="NAME", help="the account's name in fetchd")
    add.add_argument("--host", required=True, help="the POP3 server")
    add.add_argument("--user", required=True, help="the user name to log in with")
    add.add_argument("--port", type=int, help="default: 995 for tls, 110 otherwise")
    add.add_argument(
        "--security", choices=("tls", "starttls", "plain"), help="how to connect (default: tls)"
    )
    source = add.add_mutually_exclusive_group()
    source.add_argument("--password-command", metavar="CMD", help="a command printing the password")
    source.add_argument("--password-file", metavar="FILE", help="a file holding the password")
    source.add_argument(
        "--password-env", metavar="VAR", help="an environment variable holding the password"
    )
    source.add_argument(
        "--password-credential", metavar="NAME", help="a systemd credential holding the password"
    )
    source.add_argument(
        "--password-keyring",
        metavar="SERVICE/USER",
        help="an entry of the desktop keyring holding the password",
    )
    source.add_argument(
        "--keyring",
        action="store_true",
        help="ask for the password and keep it in the desktop keyring (as fetchd/NAME)",
    )
    add.add_argument(
        "--delete-after-fetch",
        action="store_true",
        help="delete messages on the server once they are stored",
    )
    remove = actions.add_parser("remove", help="remove an account added with 'account add'")
    remove.add_argument("name", metavar="NAME", help="the account to remove")
    oauth = commands.add_parser(
        "oauth", help="log an account in with OAuth2 (Gmail, Microsoft 365)"
    )
    steps = oauth.add_subparsers(dest="action", required=True, metavar="ACTION")
    login = steps.add_parser(
        "login",
        help="get and store an OAuth2 grant: open the address shown, enter the code; "
        "fetchd then renews the token by itself",
    )
    login.add_argument("account", metavar="ACCOUNT", help="an account with an oauth2 table")
    flow = login.add_mutually_exclusive_group()
    flow.add_argument(
        "--browser",
        action="store_const",
        const="browser",
        dest="flow",
        help="open the address in a browser on this machine, which comes back to fetchd "
        "on a loopback port (default for Google, whose device flow has no mail scope)",
    )
    flow.add_argument(
        "--device",
        action="store_const",
        const="device",
        dest="flow",
        help="enter a code in a browser on any device (default for other providers)",
    )
    _add_state_command(commands)
    _add_import_command(commands)
    _add_unit_command(commands)


#: Each tool ``fetchd import`` reads, and what its PATH argument names.
_IMPORT_TOOLS = {
    "fetchmail": ("PATH", "the rc file (default: $FETCHMAILHOME/fetchmailrc, else ~/.fetchmailrc)"),
    "getmail": (
        "DIR",
        "the getmail directory with getmailrc* and oldmail-* files, or one rc file "
        "(default: ~/.config/getmail, else ~/.getmail)",
    ),
    "mpop": ("PATH", "the rc file (default: ~/.mpoprc, else ~/.config/mpop/config)"),
}


def _add_import_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    importer = commands.add_parser(
        "import",
        help="add the accounts of fetchmail, getmail or mpop, and what they already fetched",
    )
    tools = importer.add_subparsers(dest="tool", required=True, metavar="TOOL")
    for tool, (metavar, where) in _IMPORT_TOOLS.items():
        sub = tools.add_parser(
            tool,
            help=f"import {tool}'s accounts into accounts.d/, and mark what it fetched as seen",
        )
        sub.add_argument("path", nargs="?", type=Path, metavar=metavar, help=where)
        sub.add_argument(
            "--dry-run", action="store_true", help="print the files it would write; write nothing"
        )
        sub.add_argument(
            "--state",
            type=Path,
            metavar="PATH",
            help=f"where {tool} keeps the UIDs it fetched (default: where {tool} looks)",
        )
        sub.add_argument(
            "--rename",
            action="append",
            metavar="OLD=NEW",
            help="import the account proposed as OLD under the name NEW (repeatable)",
        )


def _add_unit_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    service = commands.add_parser("service", help="install fetchd as a systemd service")
    actions = service.add_subparsers(dest="action", required=True, metavar="ACTION")
    install = actions.add_parser(
        "install",
        help="write a systemd unit that runs this fetchd with the config "
        "(-c, else $FETCHD_CONFIG, else /etc/fetchd/config.toml; for --user "
        "$XDG_CONFIG_HOME/fetchd/config.toml, or %%E/fetchd/config.toml when it is unset)",
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
    actions = state.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("check", help="SQLite's integrity check of the state database")
    rebuild = actions.add_parser(
        "rebuild",
        help="keep a damaged state database aside and rebuild it from the Maildir and the "
        "server's listing (never deletes anything on the server)",
    )
    rebuild.add_argument(
        "accounts", nargs="*", metavar="ACCOUNT", help="accounts to rebuild (default: every one)"
    )
    rebuild.add_argument(
        "--force", action="store_true", help="rebuild even if the database is sound"
    )


def _add_help_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], parser: argparse.ArgumentParser
) -> None:
    """Commands that describe this parser; each gets it as ``args.parser``."""
    completion = commands.add_parser("completion", help="print a shell completion script")
    completion.add_argument(
        "shell", choices=("bash", "zsh", "fish"), help="the shell to print it for"
    )
    completion.set_defaults(parser=parser)
    man = commands.add_parser("man", help="print the manual page (try: fetchd man | man -l -)")
    man.set_defaults(parser=parser)


class _ShellHelp(argparse.Action):
    """``fetchd shell --help`` ends with the commands the shell accepts, from the shell itself.

    Imported only when asked: building the parser must stay cheap.
    """

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        from fetchd.commands.shell import HELP  # noqa: PLC0415

        parser.epilog = HELP
        parser.print_help()
        parser.exit()


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


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line parsed, with -v and -q turned into a log level."""
    args = _parser().parse_args(argv)
    args.verbose += vars(args).pop("verbose_after", 0)
    args.quiet += vars(args).pop("quiet_after", 0)
    if args.log_level is None:  # an explicit --log-level wins over -v and -q
        verbosity = max(-2, min(1, args.verbose - args.quiet))
        args.log_level = _VERBOSITY_LEVELS.get(verbosity)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
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
        journal.write("fetchd: interrupted")
        return 130
    except errors.FetchdError as exc:
        code, intro = next((code, intro) for kind, code, intro in _EXITS if isinstance(exc, kind))
        journal.write(f"fetchd: {intro}{exc}")
        return code
    except Exception:
        import traceback  # noqa: PLC0415  # only for a bug: not on every start

        # Through journal.write, so that under journald every line is an error.
        journal.write(traceback.format_exc().rstrip("\n"))
        journal.write("fetchd: internal error (a bug in fetchd): please report it")
        return EXIT_SOFTWARE
