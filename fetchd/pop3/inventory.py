"""What the server holds this session, and which of it is new.

Messages are identified by UIDL (RFC 1939 section 7). A server without UIDL
that answers LAST (RFC 1460) has its messages after LAST considered; a server
with neither is identified by a digest of each message's headers (TOP n 0)
and size, which is weaker: two identical messages look like one. On both
fallbacks the id is that header digest, so a LAST that lies (another client
read the mailbox) still cannot cause a duplicate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from fetchd.errors import ServerError
from fetchd.pop3.client import Session
from fetchd.pop3.commands import Command
from fetchd.pop3.replies import parse_last, parse_scan_listing, parse_uidl_listing
from fetchd.store.state import Known


@dataclass(frozen=True)
class ServerMessage:
    number: int
    uid: str
    size: int


@dataclass
class Listing:
    """The mailbox as this session sees it."""

    messages: list[ServerMessage]
    method: str  # "uidl" | "last" | "headers"
    warnings: list[str] = field(default_factory=list)

    def by_uid(self) -> dict[str, ServerMessage]:
        return {message.uid: message for message in self.messages}


def read_listing(session: Session) -> Listing:
    """LIST and UIDL (pipelined when allowed), with the fallbacks above."""
    sizes: dict[int, int] = {}
    uids: dict[int, str] | None = None
    for reply in session.pipelined([Command("LIST"), Command("UIDL")]):
        if reply.command.name == "LIST":
            sizes = parse_scan_listing(reply.check("LIST").read_all())
        elif reply.ok:
            uids = parse_uidl_listing(reply.read_all())
    if uids is None:
        return _without_uidl(session, sizes)
    messages = [ServerMessage(n, uids[n], sizes.get(n, 0)) for n in sorted(uids)]
    return _unique(Listing(messages, "uidl"))


def _without_uidl(session: Session, sizes: Mapping[int, int]) -> Listing:
    first = 1
    method = "headers"
    warnings = ["the server has no UIDL; messages are told apart by a digest of their headers"]
    reply = session.exchange(Command("LAST"))
    if reply.ok:
        first = parse_last(reply.response.text) + 1
        method = "last"
        warnings[0] += f"; only those after LAST ({first - 1}) are considered"
    numbers = [number for number in sorted(sizes) if number >= first]
    ids = _header_digests(session, numbers, sizes)
    messages = [ServerMessage(n, ids[n], sizes[n]) for n in numbers]
    return _unique(Listing(messages, method, warnings))


def _header_digests(
    session: Session, numbers: list[int], sizes: Mapping[int, int]
) -> dict[int, str]:
    ids: dict[int, str] = {}
    commands = [Command("TOP", (str(number), "0")) for number in numbers]
    for number, reply in zip(numbers, session.pipelined(commands), strict=True):
        if not reply.ok:
            raise ServerError(
                "the server supports neither UIDL nor TOP, so fetchd cannot tell new "
                f"messages from old ones (TOP {number} said {reply.response.line!r})"
            )
        digest = hashlib.sha256(reply.read_all().replace(b"\r\n", b"\n"))
        digest.update(str(sizes[number]).encode())
        ids[number] = "hdr:" + digest.hexdigest()[:32]
    return ids


def _unique(listing: Listing) -> Listing:
    """Defend against duplicate ids (seen in the wild): later ones get ``#n``."""
    seen: dict[str, int] = {}
    unique = []
    for message in listing.messages:
        count = seen.get(message.uid, 0) + 1
        seen[message.uid] = count
        if count == 1:
            unique.append(message)
            continue
        listing.warnings.append(f"the server gave id {message.uid!r} to more than one message")
        unique.append(ServerMessage(message.number, f"{message.uid}#{count}", message.size))
    listing.messages = unique
    return listing


def new_messages(listing: Listing, known: Mapping[str, Known]) -> list[ServerMessage]:
    """Messages whose id the state has never recorded, in server order."""
    return [message for message in listing.messages if message.uid not in known]
