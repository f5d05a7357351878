"""A listing beside the state's record: which messages are new, which left the server."""

from __future__ import annotations

from collections.abc import Iterator

from hypothesis import given
from hypothesis import strategies as st

from fetchd.pop3.inventory import Listing, compare, read_listing
from tests.pop3.scripted import session_after_login
from tests.pop3.test_bounds import listing_wire

_ID = st.sampled_from(["a", "b", "c", "d", "e", "f", "a#2", "u\udcff", "", "x\ny"])


def _pieces(ids: list[str], size: int) -> Iterator[list[str]]:
    return (ids[start : start + size] for start in range(0, len(ids), size))


@given(
    listed=st.lists(_ID, unique=True),
    on_server=st.sets(_ID),
    gone=st.sets(_ID),
    method=st.sampled_from(["uidl", "last", "headers"]),
    size=st.integers(1, 4),
    made=st.booleans(),
)
def test_comparing_is_set_arithmetic_in_server_order(
    listed: list[str],
    on_server: set[str],
    gone: set[str],
    method: str,
    size: int,
    made: bool,
) -> None:
    gone -= on_server  # a recorded id is one row: on the server or gone
    count = len(listed)
    listing = Listing(range(1, count + 1), listed, [10] * count, method)
    if made:  # as read_listing leaves it: the set of ids already made
        listing._ids = set(listed)
    seen = compare(listing, _pieces(sorted(on_server), size), _pieces(sorted(gone), size))
    recorded = on_server | gone
    assert [m.uid for m in seen.unknown] == [uid for uid in listed if uid not in recorded]
    assert [m.number for m in seen.unknown] == [
        n for n, uid in enumerate(listed, 1) if uid not in recorded
    ]
    assert seen.vanished == (sorted(on_server - set(listed)) if method == "uidl" else [])


def test_the_set_of_ids_is_handed_over_once() -> None:
    wire = listing_wire(2, b"1 10\r\n2 20\r\n", b"1 a\r\n2 b\r\n")
    listing = read_listing(session_after_login(wire))
    first = listing.take_ids()
    first.clear()  # the caller's own to change
    assert listing.take_ids() == {"a", "b"}
    assert compare(listing, [["a"]], []).unknown == [listing.message(1)]


def test_repeated_ids_are_compared_under_their_new_names() -> None:
    wire = listing_wire(3, b"1 10\r\n2 20\r\n3 30\r\n", b"1 a\r\n2 a\r\n3 b\r\n")
    listing = read_listing(session_after_login(wire))
    assert listing.uids == ["a", "a#2", "b"]
    seen = compare(listing, [["a", "b", "gone"]], [])
    assert ([m.uid for m in seen.unknown], seen.vanished) == (["a#2"], ["gone"])
