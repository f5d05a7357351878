"""``fetchd man``: the manual page fetchd(1), in roff, generated from the parser.

Printed by the installed fetchd itself, so it always matches its options:
``fetchd man | man -l -`` reads it, ``fetchd man > fetchd.1`` installs it.
"""

from __future__ import annotations

import argparse

from fetchd import __version__
from fetchd.commands import say
from fetchd.commands.parser_tree import Command, Option, Positional, global_flags, read
from fetchd.commands.shell import HELP as SHELL_HELP


def run(args: argparse.Namespace) -> int:
    say(page(read(args.parser)))
    return 0


def page(tree: Command) -> str:
    """The whole page; global options once, then every command with its own."""
    shared = global_flags(tree)
    lines = [
        f'.TH FETCHD 1 "" "fetchd {__version__}" "User Commands"',
        ".SH NAME",
        f"fetchd \\- {_roff(_lower_first(tree.description))}",
        ".SH SYNOPSIS",
        ".B fetchd",
        ".RI [ OPTIONS ]",
        ".I COMMAND",
        ".RI [ ARGUMENTS ]",
        ".SH DESCRIPTION",
        _roff(tree.description),
        ".SH OPTIONS",
        "These options may be given before the command or after it.",
        *(line for option in tree.options for line in _option(option)),
        ".SH COMMANDS",
    ]
    for command in tree.walk()[1:]:
        lines += _command(command, shared)
    lines += [
        ".SH EXIT STATUS",
        _roff(tree.epilog),
        ".SH ENVIRONMENT",
        ".TP",
        ".B FETCHD_CONFIG",
        "the config file, unless \\fB\\-c\\fR names one",
    ]
    return "\n".join(lines)


def _command(command: Command, shared: set[str]) -> list[str]:
    own = [o for o in command.options if not shared.intersection(o.flags)]
    synopsis = [".ad l", f".B {_roff(command.name)}"]  # a ragged right margin, as usage is
    # \\% keeps roff from hyphenating an option at the end of a line.
    synopsis += [f"\\%{_usage(o)}" if o.required else f"\\%[{_usage(o)}]" for o in own]
    synopsis += [_positional_usage(positional) for positional in command.positionals]
    if command.commands:
        synopsis.append(".I ACTION")
    synopsis.append(".ad")
    lines = [f'.SS "{_roff(command.name)}"', *synopsis, ".PP", _roff(_sentence(command.help))]
    if command.description:
        lines += [".PP", _roff(command.description)]
    for positional in command.positionals:
        lines += [".TP", f".I {_roff(positional.metavar)}", _roff(positional.help)]
    for option in own:
        lines += _option(option)
    if command.path == ("shell",):
        lines += [".PP", ".nf", *(_roff(line) for line in SHELL_HELP.splitlines()), ".fi"]
    return lines


def _option(option: Option) -> list[str]:
    names = ", ".join(f"\\fB{_roff(flag)}\\fR" for flag in option.flags)
    if option.metavar is not None:
        names += f" \\fI{_roff(option.metavar)}\\fR"
    return [".TP", names, _roff(option.help)]


def _usage(option: Option) -> str:
    flag = f"\\fB{_roff(option.flags[-1])}\\fR"
    return flag if option.metavar is None else f"{flag} \\fI\\%{_roff(option.metavar)}\\fR"


def _positional_usage(positional: Positional) -> str:
    name = f"\\fI{_roff(positional.metavar)}\\fR" + (" ..." if positional.repeated else "")
    return f"[{name}]" if positional.optional else name


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _roff(text: str) -> str:
    """``text`` safe in a roff line: backslashes and hyphens escaped, no leading control,
    and every character past ASCII named (``\\[u00E9]``): roff reads ASCII only."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    text = "".join(c if c.isascii() else f"\\[u{ord(c):04X}]" for c in text)
    return "\\&" + text if text.startswith((".", "'")) else text
