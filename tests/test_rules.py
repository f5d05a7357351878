"""The rules of a poll that need no server: when a mailbox may have been a slice."""

from __future__ import annotations

import pytest

from fetchd.rules import slice_reason


@pytest.mark.parametrize("host", ["pop.gmail.com", "gmail.com", "POP.GoogleMail.com."])
def test_hosts_known_to_slice_always_get_another_session(host: str) -> None:
    assert slice_reason(host, 3, 1) == f"{host} shows a mailbox in slices"


def test_a_listing_of_only_new_mail_may_be_a_slice() -> None:
    assert slice_reason("mail.example.org", 7, 7) is not None


def test_a_round_listing_may_be_a_window_that_deletions_made_room_in() -> None:
    assert slice_reason("mail.example.org", 250, 3, deleted=3) is not None


def test_a_round_listing_with_nothing_deleted_shows_the_same_window_again() -> None:
    assert slice_reason("mail.example.org", 100_000, 100) is None


@pytest.mark.parametrize(
    ("host", "listed", "unknown"),
    [
        ("mail.example.org", 5003, 3),  # old mail beside the new: the whole mailbox
        ("notgmail.com", 12, 2),  # only the domain itself and its subdomains
        ("mail.example.org", 0, 0),
    ],
)
def test_a_whole_mailbox_gets_no_second_session(host: str, listed: int, unknown: int) -> None:
    assert slice_reason(host, listed, unknown) is None
