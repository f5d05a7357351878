"""``fetchd shell ACCOUNT``: the POP3 commands of the assignment, by hand.

It prints the server's replies as sent (multi-line bodies end with ".") and
makes the RFC 1939 deletion rules visible: DELE only marks, RSET unmarks,
QUIT expunges. From a pipe it prints no prompt, only replies, so it can be
scripted: ``printf 'stat\\nlist\\nquit\\n' | fetchd shell work``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TextIO

from fetchd.commands import load, select_accounts
from fetchd.errors import UsageError
from fetchd.pop3.client import Reply, Session
from fetchd.pop3.commands import Command
from fetchd.session import login

HELP = """\
commands (numbers are message numbers of this session):
  stat                  message count and total size
  list [n]              sizes of all messages, or of message n
  uidl [n]              unique ids of all messages, or of message n
  top n m               headers and the first m body lines of message n
  retr n [FILE]         message n, printed or written to FILE
  dele n                mark message n for deletion (expunged only at quit)
  rset                  unmark every message marked in this session
  noop                  do nothing; the server answers +OK
  last                  highest message number retrieved (RFC 1460; many servers say -ERR)
  capa                  the server's capabilities
  quit                  end the session; marked messages are deleted now
  help                  this text"""

#: shell word -> (POP3 command, allowed argument counts)
_SIMPLE = {
    "stat": ("STAT", {0}),
    "list": ("LIST", {0, 1}),
    "uidl": ("UIDL", {0, 1}),
    "top": ("TOP", {2}),
    "dele": ("DELE", {1}),
    "rset": ("RSET", {0}),
    "noop": ("NOOP", {0}),
    "last": ("LAST", {0}),
    "capa": ("CAPA", {0}),
}


class Shell:
    """Reads shell lines, sends POP3 commands, prints replies."""

    def __init__(self, session: Session, out: TextIO) -> None:
        self.session = session
        self.out = out
        self.marked: set[int] = set()

    def run(self, lines: Iterable[str]) -> bool:
        """Handle every line; returns True when the session ended with QUIT."""
        for line in lines:
            words = line.split()
            if not words:
                continue
            try:
                if self.handle(words[0].lower(), words[1:]):
                    return True
            except UsageError as exc:
                self.print(f"usage: {exc}")
        return False

    def handle(self, word: str, args: list[str]) -> bool:
        if word == "help":
            self.print(HELP)
        elif word == "quit":
            self.quit()
            return True
        elif word == "retr":
            self.retr(args)
        elif word in _SIMPLE:
            self.simple(word, args)
        else:
            raise UsageError(f"unknown command {word!r}; type help")
        return False

    def simple(self, word: str, args: list[str]) -> None:
        name, counts = _SIMPLE[word]
        if len(args) not in counts or not all(arg.isdigit() for arg in args):
            raise UsageError(_usage(word))
        reply = self.session.exchange(Command(name, tuple(args)))
        self.show(reply, self.write_text)
        if name == "DELE" and reply.ok:
            self.marked.add(int(args[0]))
            self.note(f"marked for deletion: {_numbers(self.marked)} (rset unmarks, quit expunges)")
        elif name == "RSET" and reply.ok and self.marked:
            self.note(f"unmarked: {_numbers(self.marked)}; nothing will be deleted")
            self.marked.clear()

    def retr(self, args: list[str]) -> None:
        if len(args) not in (1, 2) or not args[0].isdigit():
            raise UsageError(_usage("retr"))
        reply = self.session.exchange(Command("RETR", (args[0],)))
        if len(args) == 1:
            self.show(reply, self.write_text)
            return
        self.print(reply.response.line)
        if reply.ok:
            with Path(args[1]).open("wb") as file:
                octets = reply.read_into(file)
            self.note(f"{octets} octets written to {args[1]}")

    def quit(self) -> None:
        response = self.session.quit()
        self.print(response.line)
        if self.marked and response.ok:
            self.note(f"deleted on the server: {_numbers(self.marked)}")

    def show(self, reply: Reply, write: Callable[[bytes], None]) -> None:
        self.print(reply.response.line)
        if reply.ok and reply.command.multiline:
            for chunk in reply.chunks():
                write(chunk)
            self.print(".")

    def write_text(self, chunk: bytes) -> None:
        self.out.write(chunk.decode("utf-8", "replace").replace("\r\n", "\n"))

    def print(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def note(self, text: str) -> None:
        """fetchd's own remarks, set apart from the server's words."""
        self.print(f"# {text}")


def _usage(word: str) -> str:
    line = next(line for line in HELP.splitlines() if line.strip().startswith(word))
    return line.strip()


def _numbers(numbers: set[int]) -> str:
    return ", ".join(str(n) for n in sorted(numbers))


def _prompted_lines(prompt: str) -> Iterable[str]:
    while True:
        try:
            yield input(prompt)
        except EOFError:
            return


def run(args: argparse.Namespace) -> int:
    config = load(args)
    [account] = select_accounts(config, [args.account])
    session = login(account)
    shell = Shell(session, sys.stdout)
    shell.print(session.greeting.line)
    shell.note(f"logged in to {account.host} as {account.username}; type help for commands")
    lines = _prompted_lines(f"{account.name}> ") if sys.stdin.isatty() else sys.stdin
    try:
        ended = shell.run(lines)
    finally:
        session.close()
    if not ended:
        # Like a dropped connection (RFC 1939 section 6): no UPDATE, nothing deleted.
        shell.note("input ended without quit: the server deleted nothing")
    return 0
