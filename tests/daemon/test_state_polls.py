"""Poll bookkeeping in the state database: what the daemon records and status reads."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from fetchd.errors import StorageError
from fetchd.store.state import Fetched, PollRecord, State


@pytest.fixture
def state(tmp_path: Path) -> State:
    return State(tmp_path / "state.sqlite3")


def poll(account: str, outcome: str = "ok", at: float = 1000.0, **kw: Any) -> PollRecord:
    return PollRecord(account, at - 1, at, outcome, **kw)


def test_the_failure_streak_grows_and_a_success_resets_it(state: State) -> None:
    assert state.record_poll(poll("a", at=100)) == 0
    assert state.record_poll(poll("a", "network", at=200, error="refused")) == 1
    assert state.record_poll(poll("a", "network", at=300, error="refused")) == 2
    [row] = state.poll_status()
    assert (row.outcome, row.error, row.failures) == ("network", "refused", 2)
    assert row.last_success == 100  # the last good poll is remembered through failures
    assert state.record_poll(poll("a", at=400, stored=3, new=3, octets=99)) == 0
    [row] = state.poll_status()
    assert (row.failures, row.last_success, row.error) == (0, 400, None)
    assert (row.new, row.stored, row.octets) == (3, 3, 99)


def test_a_first_poll_that_fails_has_no_last_success(state: State) -> None:
    assert state.record_poll(poll("a", "auth", error="refused")) == 1
    [row] = state.poll_status()
    assert row.last_success is None


def test_next_poll_is_kept_per_account_and_cleared_on_stop(state: State) -> None:
    state.set_next_poll("b", 500.0)  # before any poll of b
    state.record_poll(poll("a"))
    state.set_next_poll("a", 600.0)
    assert {r.account: r.next_poll for r in state.poll_status()} == {"a": 600.0, "b": 500.0}
    [b] = [r for r in state.poll_status() if r.account == "b"]
    assert (b.outcome, b.failures, b.finished) == (None, 0, None)
    state.clear_next_polls()
    assert {r.next_poll for r in state.poll_status()} == {None}


def test_poll_status_is_sorted_by_account(state: State) -> None:
    for name in ("c", "a", "b"):
        state.record_poll(poll(name))
    assert [r.account for r in state.poll_status()] == ["a", "b", "c"]


def test_fetched_counts_count_stored_messages_only(state: State) -> None:
    state.record("a", [Fetched("1", "stored", 10, "a/1.eml"), Fetched("2", "headers", 5, "p")])
    state.record("a", [Fetched("3", "seen"), Fetched("4", "seen", 7)])
    state.record("b", [Fetched("1", "stored", 10, "b/1.eml")])
    counts = state.fetched_counts()  # today: all of them were fetched just now
    assert (counts["a"].total, counts["a"].today) == (2, 2)
    assert (counts["b"].total, counts["b"].today) == (1, 1)
    later = state.fetched_counts(day="2999-01-01")
    assert (later["a"].total, later["a"].today) == (2, 0)


def test_read_only_access_never_writes_or_creates(tmp_path: Path, state: State) -> None:
    state.record_poll(poll("a"))
    reader = State.open_readonly(state.path)
    try:
        assert [r.account for r in reader.poll_status()] == ["a"]
        with pytest.raises(StorageError):
            reader.record_poll(poll("b"))
    finally:
        reader.close()
    with pytest.raises(StorageError, match="nothing has been polled"):
        State.open_readonly(tmp_path / "missing.sqlite3")
    assert not (tmp_path / "missing.sqlite3").exists()


def test_the_polls_table_is_the_one_the_schema_defines(state: State) -> None:
    state.record_poll(poll("a", "busy", error="[IN-USE]", deleted=2))
    with sqlite3.connect(state.path) as db:
        row = db.execute("SELECT outcome, error, deleted, failures FROM polls").fetchone()
    assert row == ("busy", "[IN-USE]", 2, 1)
