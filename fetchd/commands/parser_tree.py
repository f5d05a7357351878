"""fetchd's argument parser read as a tree, for ``fetchd completion`` and ``fetchd man``.

Both describe the same commands and options as ``--help``, from the parser
itself, so that a new option needs no second copy anywhere. argparse keeps
its structure in private attributes (``_actions``, ``_choices_actions``);
they have been stable since Python 3.2, and reading them here keeps every
such use in one place.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]
    help: str
    #: What the option's value is called, or None for a flag without one.
    metavar: str | None = None
    choices: tuple[str, ...] = ()
    #: Its value names a file or directory.
    path: bool = False
    required: bool = False


@dataclass(frozen=True)
class Positional:
    metavar: str
    help: str
    optional: bool
    repeated: bool
    choices: tuple[str, ...] = ()
    path: bool = False


@dataclass(frozen=True)
class Command:
    #: The words after ``fetchd`` that name it; () for fetchd itself.
    path: tuple[str, ...]
    help: str
    description: str
    options: list[Option] = field(default_factory=list)
    positionals: list[Positional] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    epilog: str = ""

    def walk(self) -> list[Command]:
        """This command and every one below it, depth first."""
        return [self, *(each for sub in self.commands for each in sub.walk())]

    @property
    def name(self) -> str:
        return " ".join(("fetchd", *self.path))


def read(parser: argparse.ArgumentParser, path: tuple[str, ...] = (), help: str = "") -> Command:
    """The command tree of ``parser``; hidden (SUPPRESS-ed) options and commands left out."""
    command = Command(path, help, parser.description or "", epilog=parser.epilog or "")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                if name in helps:  # aliases have no entry of their own
                    command.commands.append(read(sub, (*path, name), helps[name]))
        elif action.help != argparse.SUPPRESS:
            _add(command, action)
    return command


def global_flags(top: Command) -> set[str]:
    """The flags fetchd takes before a command name (and after it, see ``fetchd.cli``)."""
    return {flag for option in top.options for flag in option.flags}


def _add(command: Command, action: argparse.Action) -> None:
    choices = tuple(str(choice) for choice in action.choices or ())
    is_path = action.type is Path
    # fetchd names no tuple metavars; a value from a few choices is shown as them.
    name = str(action.metavar or ("|".join(choices) if choices else action.dest.upper()))
    if action.option_strings:
        metavar = name if action.nargs != 0 else None
        command.options.append(
            Option(
                tuple(action.option_strings),
                action.help or "",
                metavar,
                choices,
                is_path,
                action.required,
            )
        )
    else:
        command.positionals.append(
            Positional(
                name,
                action.help or "",
                optional=action.nargs in ("?", "*"),
                repeated=action.nargs in ("*", "+"),
                choices=choices,
                path=is_path,
            )
        )
