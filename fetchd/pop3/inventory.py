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
import operator
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import compress, filterfalse
from typing import NamedTuple

from fetchd.errors import ProtocolError, ServerError
from fetchd.pop3.client import Session, listing_caps
from fetchd.pop3.commands import Command
from fetchd.pop3.replies import Columns, parse_last, parse_stat, scan_columns, uidl_columns


class ServerMessage(NamedTuple):
    """One message of the listing. A named tuple, not a frozen dataclass: a
    poll makes one per message on the server, and a tuple costs half as much."""

    number: int
    uid: str
    size: int


@dataclass
class Listing:
    """The mailbox as this session sees it, in server order.

    Kept as three parallel lists, not a ServerMessage per message: a poll of
    a mailbox that keeps years of mail mostly compares ids, and making an
    object per message would cost more than all the rest. ``message`` and
    ``select`` make ServerMessages for the few a poll acts on.
    """

    numbers: Sequence[int]
    uids: list[str]
    sizes: Sequence[int]
    method: str  # "uidl" | "last" | "headers"
    warnings: list[str] = field(default_factory=list)
    #: The set of ``uids`` that ``_unique`` made, until ``take_ids`` hands it over.
    _ids: set[str] | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.uids)

    @property
    def messages(self) -> list[ServerMessage]:
        """Every message, made on each call: for small listings and tests."""
        return list(map(ServerMessage, self.numbers, self.uids, self.sizes))

    def message(self, index: int) -> ServerMessage:
        return ServerMessage(self.numbers[index], self.uids[index], self.sizes[index])

    def select(self, uids: Container[str]) -> list[ServerMessage]:
        """The messages whose id is in ``uids``, in server order."""
        # No Python loop over every listed id: a poll of a big mailbox picks a few.
        picked = compress(range(len(self.uids)), map(uids.__contains__, self.uids))
        return [self.message(i) for i in picked]

    def by_uid(self) -> dict[str, ServerMessage]:
        return {message.uid: message for message in self.messages}

    def take_ids(self) -> set[str]:
        """The listed ids as a set of the caller's own, to change as it likes.

        The first call hands over the set ``read_listing`` made to find
        repeated ids: at a million messages, making it again would cost about
        as much as comparing the whole listing with the state.
        """
        ids, self._ids = self._ids, None
        return set(self.uids) if ids is None else ids


#: The most messages one mailbox may list: ten times what mpop handles. A STAT
#: beyond it is refused before any listing is read, whose caps it would set.
MAX_MESSAGES = 10_000_000
#: TOP n 0 is a message's header: far below this unless the server misbehaves.
HEADER_MAX_OCTETS = 4 * 1024 * 1024


def read_listing(session: Session) -> Listing:
    """STAT, LIST and UIDL (pipelined when allowed), with the fallbacks above.

    STAT comes first so that the listings can be capped by its count
    (``client.listing_caps``): an endless listing ends in ReplyTooLongError.
    """
    count = 0
    sizes: Columns[int] = (range(0), [])
    uids: tuple[Sequence[int], list[str]] | None = None
    warnings: list[str] = []
    max_octets, max_lines = listing_caps(count)  # replaced once STAT answered
    for reply in session.pipelined([Command.stat(), Command.list(), Command.uidl()]):
        name = reply.command.name
        if name == "STAT":
            count = parse_stat(reply.check("STAT").response.text)[0]
            if count > MAX_MESSAGES:
                raise ProtocolError(
                    f"the server says it holds {count} messages, more than fetchd reads "
                    f"in one mailbox ({MAX_MESSAGES}); nothing was fetched or deleted"
                )
            max_octets, max_lines = listing_caps(count)
        # A listing may be long: its bytes are held only while it is parsed.
        elif name == "LIST":
            body = reply.check("LIST").read_all(max_octets=max_octets, max_lines=max_lines)
            sizes, body = scan_columns(body, warnings), b""
        elif reply.ok:
            body = reply.read_all(max_octets=max_octets, max_lines=max_lines)
            uids, body = uidl_columns(body, warnings), b""
    if len(sizes[0]) != count:
        warnings.append(f"STAT counts {count} messages but LIST lists {len(sizes[0])}")
    if uids is None:
        return _without_uidl(session, dict(zip(*sizes, strict=True)), warnings)
    numbers, ids = uids
    if _same(numbers, sizes[0]):  # as every sane server lists: one column of numbers for both
        return _unique(Listing(numbers, ids, sizes[1], "uidl", warnings))
    warnings.append("LIST and UIDL list different message numbers")
    by_number = dict(zip(*sizes, strict=True))
    return _unique(Listing(numbers, ids, [by_number.get(n, 0) for n in numbers], "uidl", warnings))


def _same(numbers: Sequence[int], others: Sequence[int]) -> bool:
    if isinstance(numbers, range) and isinstance(others, range):
        return numbers == others
    return len(numbers) == len(others) and all(map(operator.eq, numbers, others))


def _without_uidl(session: Session, sizes: Mapping[int, int], warnings: list[str]) -> Listing:
    first = 1
    method = "headers"
    note = "the server has no UIDL; messages are told apart by a digest of their headers"
    reply = session.exchange(Command.last())
    if reply.ok:
        first = parse_last(reply.response.text) + 1
        method = "last"
        note += f"; only those after LAST ({first - 1}) are considered"
    numbers = [number for number in sorted(sizes) if number >= first]
    ids = _header_digests(session, numbers, sizes)
    listing = Listing(numbers, [ids[n] for n in numbers], [sizes[n] for n in numbers], method)
    listing.warnings = [note, *warnings]
    return _unique(listing)


def _header_digests(
    session: Session, numbers: list[int], sizes: Mapping[int, int]
) -> dict[int, str]:
    ids: dict[int, str] = {}
    commands = [Command.top(number, 0) for number in numbers]
    for number, reply in zip(numbers, session.pipelined(commands), strict=True):
        if not reply.ok:
            raise ServerError(
                "the server supports neither UIDL nor TOP, so fetchd cannot tell new "
                f"messages from old ones (TOP {number} said {reply.response.line!r})"
            )
        header = reply.read_all(max_octets=HEADER_MAX_OCTETS)
        digest = hashlib.sha256(header.replace(b"\r\n", b"\n"))
        digest.update(str(sizes[number]).encode())
        ids[number] = "hdr:" + digest.hexdigest()[:32]
    return ids


def names(said: str, uid: str) -> bool:
    """Whether ``said``, the id the server gives a message now (``UIDL n``), names
    the listed ``uid``: the same, or the id ``_unique`` renamed ``said#n``."""
    return uid == said or uid.rpartition("#")[0] == said


def _unique(listing: Listing) -> Listing:
    """Defend against duplicate ids (seen in the wild): later ones get ``#n``."""
    ids = set(listing.uids)
    if len(ids) == len(listing.uids):
        listing._ids = ids  # handed over by take_ids
        return listing
    seen: dict[str, int] = {}
    unique = []
    for uid in listing.uids:
        count = seen.get(uid, 0) + 1
        seen[uid] = count
        if count == 1:
            unique.append(uid)
            continue
        listing.warnings.append(f"the server gave id {uid!r} to more than one message")
        unique.append(f"{uid}#{count}")
    listing.uids = unique
    return listing


@dataclass(frozen=True)
class Comparison:
    """A listing beside the state's record of the mailbox."""

    #: Listed messages the state has never recorded, in server order.
    unknown: list[ServerMessage]
    #: Ids the state expects on the server that the listing does not show,
    #: sorted: another client deleted them. Only UIDL can tell (message
    #: numbers are reused), so other listings have none.
    vanished: list[str]


def compare(
    listing: Listing, on_server: Iterable[Sequence[str]], gone: Iterable[Sequence[str]]
) -> Comparison:
    """Sort the listing out against the ids recorded as on the server and as gone.

    The recorded ids come in pieces (``State.recorded_ids``) and are struck
    off one set of the listed ids, so a mailbox of a million known messages
    never has a second million-entry set of them in memory; what is left is
    new. Every recorded id is one row, so it comes in one piece only: a piece
    struck off fewer ids than it holds has ids that are not listed, and only
    then are its ids looked up one by one (each pass over a million ids costs
    a sizeable part of a poll).
    """
    unknown = listing.take_ids()
    vanished: list[str] = []
    listed: set[str] | None = None  # made only once a recorded id is not listed
    for ids in on_server:
        before = len(unknown)
        unknown.difference_update(ids)
        if listing.method == "uidl" and before - len(unknown) != len(ids):
            listed = set(listing.uids) if listed is None else listed
            vanished += filterfalse(listed.__contains__, ids)
    for ids in gone:
        unknown.difference_update(ids)
    return Comparison(listing.select(unknown) if unknown else [], sorted(vanished))
