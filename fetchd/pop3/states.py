"""The POP3 session states, every command and where each one is legal, as one table.

RFC 1939 section 3: a session starts in AUTHORIZATION once the greeting is
read, enters TRANSACTION when the server accepts the credentials and UPDATE
when QUIT is sent from TRANSACTION. We add GREETING (waiting for the banner),
USER_SENT (USER accepted, PASS must follow), CLOSED and a sticky ERROR.
Most transitions happen on the server's reply (``ON_REPLY``); QUIT sent in
TRANSACTION enters UPDATE at once (``ON_SEND``): nothing may follow it.
"""

from __future__ import annotations

import enum


class State(enum.Enum):
    GREETING = "GREETING"
    AUTHORIZATION = "AUTHORIZATION"
    USER_SENT = "USER_SENT"
    TRANSACTION = "TRANSACTION"
    UPDATE = "UPDATE"
    CLOSED = "CLOSED"
    ERROR = "ERROR"


_AUTH_COMMANDS = frozenset({"USER", "APOP", "AUTH", "CAPA", "STLS", "QUIT"})
_TRANSACTION_COMMANDS = frozenset(
    {"STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "RSET", "NOOP", "LAST", "CAPA", "QUIT"}
)

#: Commands the client may send in each state.
LEGAL_COMMANDS: dict[State, frozenset[str]] = {
    State.GREETING: frozenset(),
    State.AUTHORIZATION: _AUTH_COMMANDS,
    State.USER_SENT: frozenset({"PASS", "QUIT"}),
    State.TRANSACTION: _TRANSACTION_COMMANDS,
    State.UPDATE: frozenset(),
    State.CLOSED: frozenset(),
    State.ERROR: frozenset(),
}

#: Every command fetchd knows: those legal in some state.
COMMANDS: frozenset[str] = frozenset().union(*LEGAL_COMMANDS.values())

#: (state, command) -> the state as soon as the command is sent.
ON_SEND: dict[tuple[State, str], State] = {
    (State.TRANSACTION, "QUIT"): State.UPDATE,
}

#: (state, command, reply was +OK) -> next state. Missing entries keep the state.
ON_REPLY: dict[tuple[State, str, bool], State] = {
    (State.AUTHORIZATION, "USER", True): State.USER_SENT,
    (State.USER_SENT, "PASS", True): State.TRANSACTION,
    (State.USER_SENT, "PASS", False): State.AUTHORIZATION,
    (State.AUTHORIZATION, "APOP", True): State.TRANSACTION,
    (State.AUTHORIZATION, "AUTH", True): State.TRANSACTION,
    (State.AUTHORIZATION, "QUIT", True): State.CLOSED,
    (State.USER_SENT, "QUIT", True): State.CLOSED,
    (State.UPDATE, "QUIT", True): State.CLOSED,
    (State.UPDATE, "QUIT", False): State.CLOSED,
}

#: Commands that change the state; RFC 2449 section 6.6 forbids pipelining across them.
STATE_CHANGING = frozenset({"USER", "PASS", "APOP", "AUTH", "STLS", "QUIT"})

#: Commands whose positive reply is multi-line when sent with these argument counts.
MULTILINE_ARGC: dict[str, frozenset[int]] = {
    "RETR": frozenset({1}),
    "TOP": frozenset({2}),
    "LIST": frozenset({0}),
    "UIDL": frozenset({0}),
    "CAPA": frozenset({0}),
}


def state_after_send(state: State, command: str) -> State:
    """The state once ``command`` is sent (before any reply)."""
    return ON_SEND.get((state, command), state)


def next_state(state: State, command: str, ok: bool) -> State:
    """The state after the server answered ``command`` with +OK (ok) or -ERR."""
    return ON_REPLY.get((state, command, ok), state)


def is_multiline(command: str, argc: int) -> bool:
    """Whether a +OK reply to this command carries a dot-terminated body."""
    return argc in MULTILINE_ARGC.get(command, frozenset())
