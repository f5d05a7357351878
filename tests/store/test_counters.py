"""The state's counters: what status shows equals a full count, and no poll scans history."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fetchd.log import get_logger
from fetchd.runner import run_account
from fetchd.store import state as module
from fetchd.store.state import SCHEMA_VERSION, Fetched, FetchedCount, State, state_path
from fetchd.testing.server import POP3TestServer
from tests.accounts import account
from tests.messages import make_message

DAY = 24 * 3600.0


@pytest.fixture
def state(tmp_path: Path) -> Iterator[State]:
    db = State(state_path(tmp_path))
    yield db
    db.close()


def full_count(path: Path) -> dict[str, FetchedCount]:
    """What the counters must say, counted row by row as fetchd did before them."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute(
            "SELECT account, COUNT(*),"
            " SUM(date(fetched_at, 'unixepoch', 'localtime') = date('now', 'localtime'))"
            " FROM messages WHERE status IN ('stored', 'headers') GROUP BY account"
        ).fetchall()
    return {name: FetchedCount(total, today) for name, total, today in rows}


def test_counts_follow_records_rerecords_gone_marks_and_deletes(state: State) -> None:
    state.record(
        "a", [Fetched("1", "stored", 1, "p1"), Fetched("2", "seen"), Fetched("3", "headers")]
    )
    state.record("b", [Fetched("1", "stored", 1, "q1")])
    assert state.fetched_counts() == full_count(state.path)
    state.record("a", [Fetched("2", "stored", 1, "p2"), Fetched("1", "seen")])  # upserts
    state.mark_gone("a", ["2", "3"])
    assert (
        state.fetched_counts()
        == full_count(state.path)
        == {
            "a": FetchedCount(2, 2),
            "b": FetchedCount(1, 1),
        }
    )
    with sqlite3.connect(state.path) as db:  # a row removed by hand (say, a repair)
        db.execute("DELETE FROM messages WHERE account = 'b'")
        db.execute("UPDATE messages SET fetched_at = fetched_at - 3 * 86400 WHERE uid = x'32'")
    assert state.fetched_counts() == full_count(state.path) == {"a": FetchedCount(2, 1)}
    assert state.fetched_today() == 1


def test_a_new_day_starts_counting_today_from_zero(state: State) -> None:
    state.record("a", [Fetched("1", "stored")])
    with sqlite3.connect(state.path) as db:  # the counters as they were left yesterday
        db.execute("UPDATE fetched_counts SET day = date('now', 'localtime', '-1 day')")
    assert state.fetched_counts()["a"] == FetchedCount(1, 0)
    assert state.fetched_today() == 0
    state.record("a", [Fetched("2", "stored")])
    assert state.fetched_counts()["a"] == FetchedCount(2, 1)


def _version_two(path: Path, rows: list[tuple[str, bytes, str, float]]) -> None:
    """A database as fetchd wrote it before the counters (schema version 2)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        for script in module._MIGRATIONS[:2]:
            for statement in module._statements(script):
                db.execute(statement)
        db.executemany(
            "INSERT INTO messages (account, uid, status, fetched_at) VALUES (?, ?, ?, ?)", rows
        )
        db.execute("PRAGMA user_version=2")
        db.commit()


def test_the_migration_counts_the_existing_rows_once(tmp_path: Path) -> None:
    path = state_path(tmp_path)
    now = time.time()
    rows = [("a", f"{i}".encode(), "stored", now - (i % 3) * DAY) for i in range(30)]
    rows += [("a", b"h", "headers", now), ("a", b"s", "seen", now), ("b", b"1", "seen", now)]
    _version_two(path, rows)
    state = State(path)
    try:
        assert state.fetched_counts() == full_count(path) == {"a": FetchedCount(31, 11)}
        state.record("b", [Fetched("1", "stored")])
        state.record("a", [Fetched("h", "stored")])  # headers then whole: still one message
        assert state.fetched_counts() == full_count(path)
        assert state.fetched_counts()["b"] == FetchedCount(1, 1)
    finally:
        state.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


def _plans(db: sqlite3.Connection, statements: list[str]) -> dict[str, str]:
    plans = {}
    for sql in statements:
        if sql.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE", "INSERT")):
            rows = db.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
            plans[sql] = " | ".join(str(row[-1]) for row in rows)
    return plans


def test_no_statement_of_a_poll_scans_the_messages_table(
    tmp_path: Path, pop3_server: Callable[..., POP3TestServer]
) -> None:
    server = pop3_server([make_message(f"m{i}") for i in range(3)])
    state = State(state_path(tmp_path / "data"))
    # Another account's long history: what a full scan would have to read.
    state.record("old", [Fetched(f"{i}", "stored", 1, f"p{i}") for i in range(2000)])
    with sqlite3.connect(state.path) as db:
        db.execute("ANALYZE")  # as after months of use: the planner knows the tables are big
    statements: list[str] = []
    state._db.set_trace_callback(statements.append)
    try:
        for _ in range(2):  # the first poll fetches, the second finds nothing new
            run = run_account(account(server.port), tmp_path / "data", state, get_logger())
            assert run.outcome == "ok"
        state.fetched_today()
        state.fetched_counts()
        state.poll_status()
    finally:
        state._db.set_trace_callback(None)
    plans = _plans(state._db, statements)
    state.close()
    assert any("fetched_counts" in sql for sql in plans)
    assert any("USING INDEX messages_unindexed" in plan for plan in plans.values())
    for sql, plan in plans.items():
        scans = [step for step in plan.split(" | ") if step.startswith("SCAN messages")]
        assert not scans, (sql, plan)


def test_messages_left_to_extract_are_found_by_their_index_without_statistics(
    state: State,
) -> None:
    """Without ANALYZE (fetchd never runs it) the planner would take the primary key
    and read every message of the account on each poll."""
    state.record("a", [Fetched(f"{i}", "stored", 1, f"p{i}") for i in range(50)])
    statements: list[str] = []
    state._db.set_trace_callback(statements.append)
    try:
        assert len(state.unindexed("a")) == 50
    finally:
        state._db.set_trace_callback(None)
    (plan,) = _plans(state._db, statements).values()
    assert plan == "SEARCH messages USING INDEX messages_unindexed (account=?)"


def test_messages_gone_from_the_server_are_found_by_their_index(state: State) -> None:
    state.record("a", [Fetched(f"{i}", "stored", 1, f"p{i}") for i in range(50)])
    state.mark_gone("a", ["7"])
    statements: list[str] = []
    state._db.set_trace_callback(statements.append)
    try:
        assert list(state.recorded_ids("a", on_server=False)) == [["7"]]
    finally:
        state._db.set_trace_callback(None)
    (plan,) = _plans(state._db, statements).values()
    assert plan == "SEARCH messages USING INDEX messages_gone (account=?)"
