"""The runner's log of a poll: warnings, why it logged in again, one summary, a transcript."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from fetchd.log import configure_logging, get_logger
from fetchd.poll import PollResult
from fetchd.runner import log_result, run_account
from fetchd.store.account import AccountStore
from fetchd.store.state import State, state_path
from fetchd.testing.server import POP3TestServer
from tests.accounts import account
from tests.messages import make_message


def test_each_further_session_is_logged_with_its_reason() -> None:
    result = PollResult("work", stored=5, sessions=2, session_reasons=["a slice, perhaps"])
    with capture_logs() as events:
        log_result(get_logger(account="work"), result)
    assert [e["event"] for e in events] == ["poll session", "poll"]
    assert (events[0]["session"], events[0]["reason"]) == (2, "a slice, perhaps")


@pytest.fixture
def debug_logging() -> None:
    configure_logging("debug", "json", io.StringIO())


def _transcript_levels(events: list[dict[str, Any]]) -> set[str]:
    return {e["log_level"] for e in events if e["event"] == "pop3"}


def test_a_poll_that_finds_nothing_new_keeps_its_transcript_at_debug(
    tmp_path: Path, pop3_server: Callable[..., POP3TestServer], debug_logging: None
) -> None:
    server = pop3_server([make_message("one")])
    with contextlib.closing(State(state_path(tmp_path))) as state:
        with capture_logs() as fetching:
            run_account(account(server.port), tmp_path, state, get_logger())
        with capture_logs() as idle:
            run_account(account(server.port), tmp_path, state, get_logger())
    assert _transcript_levels(fetching) == {"info"}
    sent = [e["text"] for e in fetching if e["event"] == "pop3" and e["direction"] == "C"]
    assert sent[0] == "CAPA"  # held lines come out, in order, once the poll fetches
    assert _transcript_levels(idle) == {"debug"}
    assert [e["log_level"] for e in idle if e["event"] == "poll"] == ["info"]


def test_a_failing_poll_gives_its_transcript_at_info(
    tmp_path: Path, pop3_server: Callable[..., POP3TestServer], debug_logging: None
) -> None:
    server = pop3_server([], password="other")  # the account logs in with "secret"
    with contextlib.closing(State(state_path(tmp_path))) as state, capture_logs() as events:
        run = run_account(account(server.port), tmp_path, state, get_logger())
    assert run.outcome == "auth"
    assert _transcript_levels(events) == {"info"}


def test_a_poll_that_finds_the_account_locked_leaves_its_record_and_streak_as_they_were(
    tmp_path: Path, pop3_server: Callable[..., POP3TestServer]
) -> None:
    """Another fetchd process holds the account: that one records its poll. This one
    neither shows as the last outcome nor lengthens a streak of failures."""
    refusing = pop3_server([], password="other")  # the account logs in with "secret"
    work = account(refusing.port)
    with contextlib.closing(State(state_path(tmp_path))) as state:
        assert run_account(work, tmp_path, state, get_logger()).failures == 1
        [before] = state.poll_status()
        with AccountStore(work, tmp_path, state).lock():  # as the other process would
            locked = run_account(work, tmp_path, state, get_logger())
        assert (locked.outcome, locked.failures) == ("locked", 1)
        assert state.poll_status() == [before]
        assert (before.outcome, before.failures) == ("auth", 1)
