"""The state database: UIDs as bytes, failing messages, schema migration, opening it safely."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from itertools import chain
from pathlib import Path
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fetchd.errors import StorageError
from fetchd.store import state as state_module
from fetchd.store.state import (
    MAX_RETRY_DELAY,
    SCHEMA_VERSION,
    Failure,
    Fetched,
    Indexed,
    State,
    integrity_problems,
    retry_delay,
    state_path,
)

# Two UIDs that differ only in one byte that is not UTF-8 (0xff, 0xfe on the wire).
ODD = "u\udcff"
ODDER = "u\udcfe"


@pytest.fixture
def state(tmp_path: Path) -> Iterator[State]:
    db = State(state_path(tmp_path))
    yield db
    db.close()


def test_state_path_is_the_data_dirs_state_file(tmp_path: Path) -> None:
    assert state_path(tmp_path) == tmp_path / "state.sqlite3"


# -- UIDs as bytes --------------------------------------------------------------


def test_uids_with_invalid_utf8_are_two_rows_and_round_trip(state: State) -> None:
    state.record("a", [Fetched(ODD, "stored", 1, "a/1"), Fetched(ODDER, "stored", 2, "a/2")])
    known = state.known("a")
    assert set(known) == {ODD, ODDER}
    assert [uid.encode("utf-8", "surrogateescape") for uid in sorted(known)] == [
        b"u\xfe",
        b"u\xff",
    ]
    assert sorted(uid for uid, _ in state.unindexed("a")) == [ODDER, ODD]
    state.mark_gone("a", [ODD])
    known = state.known("a")
    assert (known[ODD].on_server, known[ODDER].on_server) == (False, True)


def test_known_uids_are_known_less_the_rows(state: State) -> None:
    state.record("a", [Fetched(ODD, "stored"), Fetched("b", "seen"), Fetched("c", "headers")])
    state.record("other", [Fetched("d", "stored")])
    state.mark_gone("a", ["b"])
    recorded, on_server = state.known_uids("a")
    known = state.known("a")
    assert recorded == set(known) == {ODD, "b", "c"}
    assert on_server == {uid for uid, k in known.items() if k.on_server} == {ODD, "c"}


def test_known_uids_of_utf8_ids_only_and_nothing_gone(state: State) -> None:
    uids = ["plain", "ünï", "tab\tin", "nul\x00in", "#2"]
    state.record("a", [Fetched(uid, "stored") for uid in uids])
    recorded, on_server = state.known_uids("a")
    assert recorded == on_server == set(uids)
    state.mark_gone("a", ["ünï"])
    recorded, on_server = state.known_uids("a")
    assert (recorded, on_server) == (set(uids), set(uids) - {"ünï"})


# Ids as a server may send them: UTF-8, raw bytes (surrogates), NUL, tab, the
# separator SQLite joins them with, and nothing at all.
_IDS = st.lists(
    st.one_of(
        st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=6),
        st.sampled_from(["", "\n", "a\nb", "nul\x00", "tab\t", "ünï", ODD, ODDER, "\udce2\udc82"]),
    ),
    unique=True,
    max_size=12,
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(on_server=_IDS, gone=_IDS, chunk=st.integers(1, 8))
def test_recorded_ids_come_whole_in_pieces(
    on_server: list[str], gone: list[str], chunk: int
) -> None:
    gone = [uid for uid in gone if uid not in on_server]
    state = State.in_memory()
    try:
        state.record("a", [Fetched(uid, "stored") for uid in on_server + gone])
        state.record("other", [Fetched("elsewhere", "stored")])
        state.mark_gone("a", gone)
        with patch.object(state_module, "ID_CHUNK", chunk):
            pieces = list(state.recorded_ids("a", on_server=True))
            gone_pieces = list(state.recorded_ids("a", on_server=False))
    finally:
        state.close()
    assert sorted(chain.from_iterable(pieces)) == sorted(on_server)
    assert sorted(chain.from_iterable(gone_pieces)) == sorted(gone)
    assert all(pieces), "no empty piece"


def test_recorded_ids_longer_than_sqlites_longest_string_come_row_by_row(state: State) -> None:
    ids = [f"id-{n:04}" for n in range(300)]
    state.record("a", [Fetched(uid, "stored") for uid in ids])
    state._db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1000)  # the ids joined take 2,700
    assert sorted(chain.from_iterable(state.recorded_ids("a", on_server=True))) == ids


def test_uid_columns_hold_the_wire_bytes(state: State) -> None:
    state.record("a", [Fetched(ODD, "stored"), Fetched("plain-ü", "stored")])
    with sqlite3.connect(state.path) as db:
        rows = db.execute("SELECT typeof(uid), uid FROM messages ORDER BY uid").fetchall()
    assert rows == [("blob", "plain-ü".encode()), ("blob", b"u\xff")]


def test_index_and_listing_find_odd_uids(state: State) -> None:
    state.record("a", [Fetched(ODD, "stored", 9, "a/new/x")])
    row = Indexed("a", ODD, "a/new/x", None, "S", "s@x", "subj", None, None, ("a/f",))
    state.index_many("a", [row])
    [listed] = state.listing("a")
    assert (listed.uid, listed.subject, listed.attachments) == (ODD, "subj", ("a/f",))
    assert state.unindexed("a") == []


def _version_one(path: Path, rows: list[tuple[str, str]]) -> None:
    """A database as fetchd wrote it before UIDs became BLOB (schema version 1)."""
    from fetchd.store import state as module

    with sqlite3.connect(path) as db:
        db.executescript(module._MIGRATIONS[0])
        db.executemany(
            "INSERT INTO messages (account, uid, status, fetched_at) VALUES (?, ?, 'stored', 1)",
            rows,
        )
        db.execute("PRAGMA user_version=1")


def test_a_version_one_database_is_migrated_with_its_uids_unchanged(tmp_path: Path) -> None:
    path = state_path(tmp_path)
    _version_one(path, [("a", "0000000157a9c1f2"), ("a", "ünï"), ("b", "x")])
    state = State(path)
    try:
        assert set(state.known("a")) == {"0000000157a9c1f2", "ünï"}
        state.record("a", [Fetched("ünï", "stored", 5)])  # the same row, not a second one
        assert len(state.known("a")) == 2
        state.record_failure("b", "y", "boom")  # the new table exists
    finally:
        state.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert db.execute("SELECT DISTINCT typeof(uid) FROM messages").fetchall() == [("blob",)]


def test_readers_refuse_a_schema_they_do_not_know(tmp_path: Path) -> None:
    path = state_path(tmp_path)
    _version_one(path, [("a", "1")])
    with pytest.raises(StorageError, match="older than this fetchd"):
        State.open_readonly(path)
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    for opener in (State, State.open_readonly):
        with pytest.raises(StorageError, match="newer than this fetchd"):
            opener(path)


def test_read_only_state_is_built_by_the_constructor(state: State) -> None:
    state.record("a", [Fetched("1", "stored")])
    reader = State.open_readonly(state.path)
    try:
        assert reader.read_only
        assert set(reader.known("a")) == {"1"}
        with pytest.raises(StorageError):
            reader.record("a", [Fetched("2", "stored")])
    finally:
        reader.close()


# -- failing messages ---------------------------------------------------------------


def test_backoff_is_next_poll_then_doubling_from_15_minutes_capped_at_a_day() -> None:
    assert [retry_delay(n) for n in range(1, 8)] == [
        0,
        15 * 60,
        30 * 60,
        60 * 60,
        2 * 3600,
        4 * 3600,
        8 * 3600,
    ]
    assert retry_delay(8) == 16 * 3600
    assert retry_delay(9) == retry_delay(10_000) == MAX_RETRY_DELAY == 24 * 3600


def test_failures_count_up_and_keep_the_last_error(state: State) -> None:
    before = time.time()
    assert state.record_failure("a", ODD, "first") == 1
    [first] = state.failing("a").values()
    assert (first.uid, first.count, first.error) == (ODD, 1, "first")
    assert before <= first.next_attempt <= time.time()  # retried at the next poll
    assert state.record_failure("a", ODD, "second") == 2
    assert state.record_failure("a", ODDER, "other") == 1
    failing = state.failing("a")
    assert set(failing) == {ODD, ODDER}
    again = failing[ODD]
    assert isinstance(again, Failure)
    assert (again.count, again.error) == (2, "second")
    assert again.next_attempt == pytest.approx(time.time() + 15 * 60, abs=5)
    assert state.failing("b") == {}


def test_recording_a_message_clears_its_failure_only(state: State) -> None:
    state.record_failure("a", ODD, "x")
    state.record_failure("a", ODDER, "y")
    state.record_failure("b", ODD, "z")
    state.record("a", [Fetched(ODD, "stored", 3, "p")])
    assert set(state.failing("a")) == {ODDER}
    assert set(state.failing("b")) == {ODD}  # another account's message of the same UID


def test_clear_failures(state: State) -> None:
    for uid in ("1", "2", "3"):
        state.record_failure("a", uid, "x")
    state.clear_failures("a", ["1", "3", "not-there"])
    assert set(state.failing("a")) == {"2"}


# -- creating the schema while others do ----------------------------------------------


def _open_together(path: Path, count: int) -> list[BaseException]:
    """``count`` threads open ``path`` at the same moment; returns what they raised."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def open_it() -> None:
        barrier.wait()
        try:
            State(path).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_threads_opening_a_fresh_database_at_once_all_succeed(tmp_path: Path) -> None:
    for attempt in range(5):
        path = state_path(tmp_path / str(attempt))
        path.parent.mkdir()
        assert _open_together(path, 8) == []
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


_OPEN_AT = """
import sys, time
from pathlib import Path
from fetchd.store.state import State
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
State(Path(sys.argv[1])).close()
"""


def test_processes_opening_a_fresh_database_at_once_all_succeed(tmp_path: Path) -> None:
    for attempt in range(3):
        path = state_path(tmp_path / str(attempt))
        at = str(time.time() + 1.0)  # all of them start at this moment
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _OPEN_AT, str(path), at], stderr=subprocess.PIPE
            )
            for _ in range(6)
        ]
        errors = [p.communicate()[1].decode() for p in procs]
        assert [(p.returncode, e) for p, e in zip(procs, errors, strict=True) if p.returncode] == []


# -- a directory fetchd cannot write -----------------------------------------------


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory that even root cannot write: a small tmpfs remounted read-only.

    Without root, taking the write permission away does the same.
    """
    where = tmp_path / "ro"
    where.mkdir()
    if os.geteuid() != 0:
        yield where
        where.chmod(0o755)
        return
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def _make_read_only(where: Path) -> None:
    if os.geteuid() != 0:
        where.chmod(0o555)
    else:
        subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)


def test_a_read_only_directory_is_named_as_the_problem(read_only_dir: Path) -> None:
    _make_read_only(read_only_dir)
    with pytest.raises(StorageError) as caught:
        State(state_path(read_only_dir))
    assert f"the directory {read_only_dir} is not writable" in str(caught.value)


def test_an_existing_database_in_a_read_only_directory(read_only_dir: Path) -> None:
    state = State(state_path(read_only_dir))
    state.record("a", [Fetched("1", "stored")])
    state.close()
    _make_read_only(read_only_dir)
    with pytest.raises(StorageError) as caught:
        State(state_path(read_only_dir))
    assert f"the directory {read_only_dir} is not writable" in str(caught.value)


def test_a_file_where_the_data_directory_should_be(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("not a directory")
    with pytest.raises(StorageError, match=r"cannot create the directory .*data"):
        State(state_path(tmp_path / "data"))


# -- integrity ---------------------------------------------------------------------


def _filled(path: Path) -> None:
    state = State(path)
    state.record("a", [Fetched(f"uid-{i:05}", "stored", i, f"a/{i}") for i in range(3000)])
    state.close()


def test_a_sound_database_has_no_problems(tmp_path: Path) -> None:
    _filled(state_path(tmp_path))
    assert integrity_problems(state_path(tmp_path)) == []


def test_a_truncated_database_is_reported(tmp_path: Path) -> None:
    path = state_path(tmp_path)
    _filled(path)
    with path.open("r+b") as file:
        file.truncate(path.stat().st_size // 2)
    assert integrity_problems(path) != []


def test_overwritten_pages_are_reported(tmp_path: Path) -> None:
    path = state_path(tmp_path)
    _filled(path)
    with path.open("r+b") as file:
        file.seek(4096 * 3)
        file.write(os.urandom(4096 * 4))
    assert integrity_problems(path) != []


def test_a_file_that_is_no_database_is_reported(tmp_path: Path) -> None:
    path = state_path(tmp_path)
    path.write_bytes(b"this is not sqlite" * 500)
    [problem] = integrity_problems(path)
    assert "not a database" in problem


def test_fetched_today_counts_only_stored_mail_from_the_counters(tmp_path: Path) -> None:
    db = State(tmp_path / "state.sqlite3")
    db.record("a", [Fetched("u1", "stored", 1, "p1"), Fetched("u2", "seen", 1, None)])
    db.record("b", [Fetched("u3", "headers", 1, "p3")])
    assert db.fetched_today() == 2
    plan = db._db.execute(
        "EXPLAIN QUERY PLAN SELECT COALESCE(SUM(today), 0) FROM fetched_counts WHERE day = ?",
        ("2000-01-01",),
    ).fetchall()
    assert "messages" not in str(plan)  # the daemon's per-poll cost ignores history
    db.close()


def test_a_new_database_is_private_whatever_the_umask(tmp_path: Path) -> None:
    # The service's UMask=0027 shares the mail with a group; the state stays its own.
    previous = os.umask(0o027)
    try:
        db = State(tmp_path / "state.sqlite3")
    finally:
        os.umask(previous)
    try:
        files = sorted(tmp_path.iterdir())
        assert [path.name for path in files] == [
            "state.sqlite3",
            "state.sqlite3-shm",
            "state.sqlite3-wal",
        ]
        assert {path.name: path.stat().st_mode & 0o777 for path in files} == dict.fromkeys(
            (path.name for path in files), 0o600
        )
    finally:
        db.close()
