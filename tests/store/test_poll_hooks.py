"""A poll's hooks in the state: queued with its record, with their facts, after every message's."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from fetchd.errors import StorageError
from fetchd.store import state as module
from fetchd.store.state import (
    SCHEMA_VERSION,
    Fetched,
    Indexed,
    PendingHook,
    PollHook,
    PollRecord,
    State,
    state_path,
)


def failed(at: float) -> PollRecord:
    return PollRecord("a", at, at + 1, "network", error="refused")


def both(failures: int) -> list[PollHook]:
    """The hooks of a failed poll, their facts naming the streak as the runner's do."""
    return [
        PollHook("on_error", {"FETCHD_HOOK": "on_error", "FETCHD_FAILURES": str(failures)}),
        PollHook("on_poll", {"FETCHD_HOOK": "on_poll", "FETCHD_FAILURES": str(failures)}),
    ]


def queued(state: State) -> list[tuple[str, str, str, dict[str, str] | None]]:
    return [
        (job.pending.uid, job.pending.hook, job.pending.target, job.facts and dict(job.facts))
        for job in state.pending_hooks("a")
    ]


def test_a_polls_hooks_are_queued_with_the_streak_it_records(state: State) -> None:
    assert state.record_poll(failed(100), both) == 1
    assert state.record_poll(failed(200), both) == 2
    streaks = [(hook, target, facts) for _, hook, target, facts in queued(state)]
    assert streaks == [
        ("on_error", "1", {"FETCHD_HOOK": "on_error", "FETCHD_FAILURES": "1"}),
        ("on_poll", "1", {"FETCHD_HOOK": "on_poll", "FETCHD_FAILURES": "1"}),
        ("on_error", "2", {"FETCHD_HOOK": "on_error", "FETCHD_FAILURES": "2"}),
        ("on_poll", "2", {"FETCHD_HOOK": "on_poll", "FETCHD_FAILURES": "2"}),
    ]
    assert {uid for uid, *_ in queued(state)} == {""}
    assert state.pending_hooks("b") == []


def test_polls_hooks_run_in_the_order_queued_whatever_the_clock_says(state: State) -> None:
    state.record_poll(failed(100), both)
    with contextlib.closing(sqlite3.connect(state.path)) as db, db:
        db.execute("UPDATE pending_hooks SET queued = queued + 3600")  # the clock went back
    state.record_poll(failed(200), both)
    assert [(hook, target) for _, hook, target, _ in queued(state)] == [
        ("on_error", "1"),
        ("on_poll", "1"),
        ("on_error", "2"),
        ("on_poll", "2"),
    ]


def test_a_poll_without_hooks_queues_nothing(state: State) -> None:
    state.record_poll(failed(100))
    state.record_poll(failed(200), lambda failures: [])
    assert state.pending_hooks("a") == []


def test_a_number_still_queued_is_never_given_again(state: State) -> None:
    state.record_poll(failed(100), both)
    state.record_poll(failed(200), both)
    first = [job.pending for job in state.pending_hooks("a") if job.pending.target == "1"]
    state.hooks_done("a", first)
    state.record_poll(failed(300), both)
    assert [(hook, target) for _, hook, target, _ in queued(state)] == [
        ("on_error", "2"),
        ("on_poll", "2"),
        ("on_error", "3"),
        ("on_poll", "3"),
    ]


def test_the_messages_hooks_come_first_whenever_they_were_queued(state: State) -> None:
    state.record_poll(failed(100), both)
    state.record("a", [Fetched("u1", "stored", 1, "a/new/1")])
    row = Indexed("a", "u1", "a/new/1", None, None, None, "s", None, "a/f", ("a/f/x.pdf",))
    hooks = [
        PendingHook("u1", "on_message", "a/new/1"),
        PendingHook("u1", "on_attachment", "a/f/x.pdf"),
    ]
    state.index_many("a", [row], hooks)
    assert [(uid, hook, facts is None) for uid, hook, _, facts in queued(state)] == [
        ("u1", "on_message", True),
        ("u1", "on_attachment", True),
        ("", "on_error", False),
        ("", "on_poll", False),
    ]


def test_a_record_that_fails_queues_no_hook(state: State) -> None:
    def broken(failures: int) -> Sequence[PollHook]:
        raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(StorageError):
        state.record_poll(failed(100), broken)
    assert state.poll_status() == []
    assert state.pending_hooks("a") == []


def test_a_started_poll_hook_counts_its_starts_and_is_gone_once_done(state: State) -> None:
    state.record_poll(failed(100), both)
    [error, _] = state.pending_hooks("a")
    state.start_hooks("a", [error.pending])
    assert [job.starts for job in state.pending_hooks("a")] == [1, 0]
    state.hooks_done("a", [error.pending])
    assert [hook for _, hook, _, _ in queued(state)] == ["on_poll"]


def _previous_version(path: Path, setup: Callable[[sqlite3.Connection], None]) -> None:
    """A database as fetchd wrote it before a poll's hooks were queued (schema version 6)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        for script in module._MIGRATIONS[:6]:
            for statement in module._statements(script):
                db.execute(statement)
        setup(db)
        db.execute("PRAGMA user_version=6")
        db.commit()


def test_a_database_of_the_previous_version_keeps_its_queued_hooks(tmp_path: Path) -> None:
    path = state_path(tmp_path)

    def one_queued(db: sqlite3.Connection) -> None:
        db.execute(
            "INSERT INTO messages (account, uid, status, fetched_at, path)"
            " VALUES ('a', x'7531', 'stored', 1, 'a/new/1')"
        )
        db.execute(
            "INSERT INTO pending_hooks (account, uid, hook, target, queued, starts)"
            " VALUES ('a', x'7531', 'on_message', 'a/new/1', 1, 1)"
        )

    _previous_version(path, one_queued)
    with contextlib.closing(State(path)) as state:
        [job] = state.pending_hooks("a")
        assert (job.pending, job.starts, job.path, job.facts) == (
            PendingHook("u1", "on_message", "a/new/1"),
            1,
            "a/new/1",
            None,
        )
        state.record_poll(failed(100), both)
        assert [hook for _, hook, _, _ in queued(state)] == ["on_message", "on_error", "on_poll"]
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
