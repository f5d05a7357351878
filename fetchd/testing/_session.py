"""One connection to the test server, from greeting to QUIT or hangup.

``Session`` dispatches the command lines its ``Connection`` reads through one
table per POP3 state (RFC 1939 section 3: AUTHORIZATION, TRANSACTION; UPDATE
happens at QUIT), answers, and injects the faults ``ServerOptions`` asks for.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from fetchd.testing._connection import Connection, Hangup, Owner
from fetchd.testing._sasl import MECHANISMS, SASLOptions
from fetchd.testing._wire import served_size, top

_GARBAGE = b"\x00\xff\xfe garbage \x80\x81\x1b[0m\r\n"


# What a session needs of its server, as protocols: ``server`` imports this module,
# so this one names ``POP3TestServer``, ``Mailbox`` and ``ServerOptions`` only here.


class Options(SASLOptions, Protocol):
    """The settings and faults a session reads (``server.ServerOptions``)."""

    capa: bool
    uidl: bool
    last: bool
    top: bool
    pipelining: bool
    apop: bool
    sasl: tuple[str, ...]
    user_command: bool
    stls: ssl.SSLContext | None
    strip_stls: bool
    in_use: bool
    login_delay: int | None
    expire: str | None
    max_messages_per_session: int | None
    drop_during_retr: int | None
    garbage_reply_to: str | None
    stall_on: str | None
    greeting_delay: float
    multiline_lf_only: bool
    listed_sizes_off_by: int
    late_capa: bool
    repeat_reply_to: str | None
    trickle: tuple[str, float] | None
    endless_reply_to: str | None
    endless_sasl: bool
    hooks: dict[str, Callable[[Any, str], bool]]


class Maildrop(Protocol):
    """The mailbox the sessions of one server share (``server.Mailbox``)."""

    last: int
    retrieved: set[str]
    lock: threading.RLock

    def snapshot(self) -> list[tuple[str, bytes]]: ...

    def discard(self, uidl: str, message: bytes) -> None: ...

    def try_lock(self, owner: object) -> bool: ...

    def unlock(self, owner: object) -> None: ...


class Server(Owner, Protocol):
    """The server that accepted the connection (``server.POP3TestServer``)."""

    last_login: float | None

    @property
    def options(self) -> Options: ...

    @property
    def mailbox(self) -> Maildrop: ...

    @property
    def tls_context(self) -> ssl.SSLContext | None: ...

    @property
    def stopping(self) -> threading.Event: ...


@dataclass
class _Message:
    number: int
    uidl: str
    content: bytes
    deleted: bool = False

    @property
    def size(self) -> int:
        return served_size(self.content)


@dataclass
class _Auth:
    """What the AUTHORIZATION state remembers between commands."""

    user: str | None = None
    timestamp: str = ""
    tls: bool = False


@dataclass
class _Transaction:
    messages: list[_Message] = field(default_factory=list)
    last: int = 0


class Session(Connection):
    """One client connection, from greeting to QUIT or hangup."""

    owner: Server

    def __init__(self, owner: Server, conn: socket.socket) -> None:
        self.options = owner.options
        self.mailbox = owner.mailbox
        super().__init__(owner, conn, eol=b"\n" if self.options.multiline_lf_only else b"\r\n")
        self.auth = _Auth()
        self.txn: _Transaction | None = None

    def start_tls(self, context: ssl.SSLContext) -> None:
        """Wrap the connection; from now on STLS is refused and no longer announced."""
        super().start_tls(context)
        self.auth.tls = True

    def close(self) -> None:
        self.mailbox.unlock(self)
        super().close()

    def run(self) -> None:
        if self.owner.tls_context is not None:
            self.start_tls(self.owner.tls_context)
        if self.options.greeting_delay:
            time.sleep(self.options.greeting_delay)
        self.trickle = self.trickle_for("GREETING")
        greeting = "+OK fetchd test server ready"
        if self.options.apop:
            # RFC 1939 section 7: the timestamp must differ for every greeting.
            self.auth.timestamp = f"<{os.getpid()}.{time.time_ns()}@localhost>"
            greeting += " " + self.auth.timestamp
        self.reply(greeting)
        while (line := self.read_command()) is not None:
            self.dispatch(line)

    # -- dispatch --------------------------------------------------------------

    def dispatch(self, line: str) -> None:
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        if self.options.stall_on is not None and verb == self.options.stall_on.upper():
            self.owner.stopping.wait()
            raise Hangup
        if self.options.garbage_reply_to is not None and (
            verb == self.options.garbage_reply_to.upper()
        ):
            self.owner.record("S", repr(_GARBAGE))
            self.conn.sendall(_GARBAGE)
            return
        hook = self.options.hooks.get(verb)
        if hook is not None and hook(self, arg):
            return
        if self.options.endless_reply_to is not None and (
            verb == self.options.endless_reply_to.upper()
        ):
            self.send_endless("+OK here it comes")
        if verb == "AUTH" and self.options.endless_sasl:
            while True:
                self.reply("+ bW9yZQ==")
                self.read_continuation()
        self.trickle = self.trickle_for(verb)
        if (self.options.repeat_reply_to or "").upper() == verb:
            self.held = []
            self.handle(verb, arg)
            held, self.held = b"".join(self.held), None
            self.send(held + held)  # in one write: both arrive together
            return
        self.handle(verb, arg)

    def trickle_for(self, verb: str) -> float:
        trickle = self.options.trickle
        return trickle[1] if trickle is not None and trickle[0].upper() == verb else 0.0

    def handle(self, verb: str, arg: str) -> None:
        table = _AUTHORIZATION if self.txn is None else _TRANSACTION
        handler = table.get(verb)
        if handler is None:
            known = verb in _AUTHORIZATION or verb in _TRANSACTION
            self.reply("-ERR command not valid in this state" if known else "-ERR unknown command")
            return
        handler(self, arg)

    # -- AUTHORIZATION state (RFC 1939 section 4, 7; RFC 2449; RFC 2595; RFC 5034) ----

    def cmd_capa(self, arg: str) -> None:
        if not self.options.capa:
            self.reply("-ERR unknown command")
            return
        self.reply_lines("+OK capability list follows", self.capabilities())

    def capabilities(self) -> list[str]:
        opts, authed = self.options, self.txn is not None
        caps = ["RESP-CODES", "AUTH-RESP-CODE"]
        if authed or not opts.late_capa:
            caps += [name for name, on in (("TOP", opts.top), ("UIDL", opts.uidl)) if on]
            caps += ["PIPELINING"] if opts.pipelining else []
        if not authed:
            caps += ["USER"] if opts.user_command else []
            caps += [f"SASL {' '.join(opts.sasl)}"] if opts.sasl else []
            if opts.stls is not None and not opts.strip_stls and not self.auth.tls:
                caps.append("STLS")
        if opts.login_delay is not None:
            caps.append(f"LOGIN-DELAY {opts.login_delay}")
        if opts.expire is not None:
            caps.append(f"EXPIRE {opts.expire}")
        return [*caps, "IMPLEMENTATION fetchd-test"]

    def cmd_stls(self, arg: str) -> None:
        context = self.options.stls
        if context is None or self.options.strip_stls or self.auth.tls:
            self.reply("-ERR STLS not available")
            return
        self.reply("+OK begin TLS negotiation")
        # RFC 2595 section 4: the client must not pipeline past STLS; whatever it did
        # send early is dropped, and the USER given before TLS is forgotten.
        self.auth.user = None
        self.start_tls(context)

    def cmd_user(self, arg: str) -> None:
        if not self.options.user_command:
            self.reply("-ERR USER/PASS not allowed, use AUTH")
            return
        # Answer +OK for any name so that user names cannot be probed.
        self.auth.user = arg
        self.reply("+OK send PASS")

    def cmd_pass(self, arg: str) -> None:
        user, self.auth.user = self.auth.user, None
        if not self.options.user_command:
            self.reply("-ERR USER/PASS not allowed, use AUTH")
        elif user is None:
            self.reply("-ERR send USER first")
        else:
            self.login(user, arg)

    def cmd_apop(self, arg: str) -> None:
        name, _, digest = arg.partition(" ")
        if not self.options.apop:
            self.reply("-ERR APOP not supported")
            return
        expected = hashlib.md5((self.auth.timestamp + self.options.password).encode()).hexdigest()
        self.login(name, self.options.password if digest.lower() == expected else None)

    def cmd_auth(self, arg: str) -> None:
        mechanism, _, initial = arg.partition(" ")
        mechanism = mechanism.upper()
        if not mechanism:
            self.reply_lines("+OK mechanisms follow", list(self.options.sasl))
            return
        if mechanism not in self.options.sasl or mechanism not in MECHANISMS:
            self.reply("-ERR unsupported authentication mechanism")
            return
        MECHANISMS[mechanism](self, initial or None)

    def login(self, user: str, password: str | None) -> None:
        """Check credentials and enter TRANSACTION (RFC 1939 section 4)."""
        opts = self.options
        if user != opts.user or password != opts.password:
            code = f"[{opts.auth_fail_code}] " if opts.auth_fail_code else ""
            self.reply(f"-ERR {code}invalid user name or password")
            return
        now = time.monotonic()
        last = self.owner.last_login
        if opts.login_delay is not None and last is not None and now - last < opts.login_delay:
            self.reply(f"-ERR [LOGIN-DELAY] wait {opts.login_delay} seconds between logins")
            return
        if opts.in_use or not self.mailbox.try_lock(self):
            self.reply("-ERR [IN-USE] maildrop is locked by another session")
            return
        self.owner.last_login = now
        self.txn = _Transaction(messages=self.visible_messages(), last=self.mailbox.last)
        self.txn.last = min(self.txn.last, len(self.txn.messages))
        self.reply(f"+OK maildrop has {len(self.txn.messages)} messages")

    def visible_messages(self) -> list[_Message]:
        snapshot = self.mailbox.snapshot()
        limit = self.options.max_messages_per_session
        if limit is not None:
            hidden = self.mailbox.retrieved
            snapshot = [(uidl, data) for uidl, data in snapshot if uidl not in hidden][:limit]
        return [_Message(n, uidl, data) for n, (uidl, data) in enumerate(snapshot, start=1)]

    def cmd_quit(self, arg: str) -> None:
        if self.txn is not None:
            self.update()
        # Unlock before answering: a client that reconnects right after +OK must get in.
        self.mailbox.unlock(self)
        self.reply("+OK bye")
        raise Hangup

    def update(self) -> None:
        """UPDATE state (RFC 1939 section 6): expunge what DELE marked, only now."""
        assert self.txn is not None
        deleted = [m for m in self.txn.messages if m.deleted]
        with self.mailbox.lock:
            for message in deleted:
                self.mailbox.discard(message.uidl, message.content)
            # Keep LAST pointing at the same message after renumbering.
            shift = sum(1 for m in deleted if m.number <= self.txn.last)
            self.mailbox.last = self.txn.last - shift

    # -- TRANSACTION state (RFC 1939 section 5, RFC 1460 LAST) ------------------

    def message(self, arg: str) -> _Message | None:
        """The undeleted message numbered ``arg``; answers -ERR itself if there is none."""
        assert self.txn is not None
        if not arg.isdigit() or not 1 <= int(arg) <= len(self.txn.messages):
            self.reply("-ERR no such message")
            return None
        found = self.txn.messages[int(arg) - 1]
        if found.deleted:
            self.reply(f"-ERR message {arg} already deleted")
            return None
        return found

    def live(self) -> list[_Message]:
        assert self.txn is not None
        return [m for m in self.txn.messages if not m.deleted]

    def listed_size(self, message: _Message) -> int:
        return message.size + self.options.listed_sizes_off_by

    def cmd_stat(self, arg: str) -> None:
        live = self.live()
        self.reply(f"+OK {len(live)} {sum(map(self.listed_size, live))}")

    def cmd_list(self, arg: str) -> None:
        if arg:
            if (found := self.message(arg)) is not None:
                self.reply(f"+OK {found.number} {self.listed_size(found)}")
            return
        live = self.live()
        lines = [f"{m.number} {self.listed_size(m)}" for m in live]
        self.reply_lines(f"+OK {len(live)} messages", lines)

    def cmd_uidl(self, arg: str) -> None:
        if not self.options.uidl:
            self.reply("-ERR unknown command")
        elif arg:
            if (found := self.message(arg)) is not None:
                self.reply(f"+OK {found.number} {found.uidl}")
        else:
            lines = [f"{m.number} {m.uidl}" for m in self.live()]
            self.reply_lines("+OK unique-id listing follows", lines)

    def cmd_retr(self, arg: str) -> None:
        assert self.txn is not None
        if (found := self.message(arg)) is None:
            return
        self.txn.last = max(self.txn.last, found.number)
        if self.options.max_messages_per_session is not None:
            with self.mailbox.lock:
                self.mailbox.retrieved.add(found.uidl)
        self.reply(f"+OK {found.size} octets")
        cut = found.size // 2 if self.options.drop_during_retr == found.number else None
        self.send_message(found.content, cut_after=cut)

    def cmd_top(self, arg: str) -> None:
        number, _, lines = arg.partition(" ")
        if not self.options.top:
            self.reply("-ERR unknown command")
        elif not lines.isdigit():
            self.reply("-ERR usage: TOP msg n")
        elif (found := self.message(number)) is not None:
            self.reply("+OK top of message follows")
            self.send_message(top(found.content, int(lines)))

    def cmd_dele(self, arg: str) -> None:
        if (found := self.message(arg)) is not None:
            found.deleted = True
            self.reply(f"+OK message {found.number} deleted")

    def cmd_rset(self, arg: str) -> None:
        assert self.txn is not None
        for message in self.txn.messages:
            message.deleted = False
        self.txn.last = 0  # RFC 1460: RSET also resets the highest access number
        self.reply("+OK")

    def cmd_last(self, arg: str) -> None:
        assert self.txn is not None
        if not self.options.last:
            self.reply("-ERR unknown command")
        else:
            self.reply(f"+OK {self.txn.last}")

    def cmd_noop(self, arg: str) -> None:
        self.reply("+OK")


_Command = Callable[[Session, str], None]
_AUTHORIZATION: dict[str, _Command] = {
    "CAPA": Session.cmd_capa,
    "STLS": Session.cmd_stls,
    "USER": Session.cmd_user,
    "PASS": Session.cmd_pass,
    "APOP": Session.cmd_apop,
    "AUTH": Session.cmd_auth,
    "QUIT": Session.cmd_quit,
}
_TRANSACTION: dict[str, _Command] = {
    "CAPA": Session.cmd_capa,
    "STAT": Session.cmd_stat,
    "LIST": Session.cmd_list,
    "UIDL": Session.cmd_uidl,
    "RETR": Session.cmd_retr,
    "TOP": Session.cmd_top,
    "DELE": Session.cmd_dele,
    "RSET": Session.cmd_rset,
    "LAST": Session.cmd_last,
    "NOOP": Session.cmd_noop,
    "QUIT": Session.cmd_quit,
}
