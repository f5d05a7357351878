"""Hooks against a real Dovecot: once per message and attachment, facts inert, failures contained.

Each hook here is a real program (``sh`` scripts) that writes its environment,
NUL-separated, to a file of its own; the tests read those files back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

import fetchd.hooks
from fetchd.cli import main
from fetchd.config import AccountConfig, load_config
from fetchd.errors import NetworkError, StorageError
from fetchd.hooks import (
    MAX_STARTS,
    DaemonHooks,
    HookRun,
    Unrecorded,
    inherited_environment,
    poll_hooks,
    run_pending,
    where_now,
)
from fetchd.log import get_logger
from fetchd.poll import poll_account
from fetchd.recovery import recover_account
from fetchd.runner import AccountRun, run_account
from fetchd.store.account import AccountStore
from fetchd.store.state import HookJob, PendingHook, PollRecord, State, state_path
from fetchd.testing.dovecot import Dovecot
from tests.accounts import account as make_account
from tests.messages import make_message
from tests.torture.test_crash import INJECTOR

#: Writes its environment to "$1/<pid>.env" (NUL-separated), then exits with "$2" (0).
RECORDER = """#!/bin/sh
env -0 > "$1/$$.env"
exit "${2:-0}"
"""

Env = dict[bytes, bytes]


@pytest.fixture
def recorder(tmp_path: Path) -> Callable[[str], tuple[list[str], Path]]:
    """``recorder(name)``: a hook argv that records each run's environment in a folder."""
    script = tmp_path / "record.sh"
    script.write_text(RECORDER)
    script.chmod(0o755)

    def make(name: str) -> tuple[list[str], Path]:
        out = tmp_path / name
        out.mkdir()
        return [str(script), str(out)], out

    return make


def runs(folder: Path) -> list[Env]:
    """The environments recorded in ``folder``, one per hook run."""
    found = []
    for file in sorted(folder.iterdir()):
        pairs = (item.partition(b"=") for item in file.read_bytes().split(b"\0") if item)
        found.append({name: value for name, _, value in pairs})
    return found


def poll(
    dovecot: Dovecot,
    data_dir: Path,
    state: State,
    slots: int = 4,
    on_poll: list[str] | None = None,
    **settings: Any,
) -> tuple[AccountRun, list[dict[str, Any]]]:
    account = make_account(dovecot.pop3_port, **settings)
    with capture_logs() as events:
        run = run_account(
            account,
            data_dir,
            state,
            get_logger(),
            transcript=False,
            daemon_hooks=DaemonHooks(slots, on_poll),
        )
    return run, events


def hook_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if str(e["event"]).startswith("hook")]


def test_hooks_run_once_per_message_and_per_attachment_with_their_facts(
    dovecot_alice: Dovecot, data_dir: Path, state: State, recorder: Any
) -> None:
    pdf, png = b"%PDF-1.4 invoice", bytes(range(256))
    dovecot_alice.deliver_many(
        "alice",
        [
            make_message("plain one", message_id="<one@test>"),
            make_message(
                "with files",
                sender="Billing Dept <billing@example.org>",
                message_id="<two@test>",
                attachments=[("invoice.pdf", pdf, "application/pdf"), ("p.png", png, "image/png")],
            ),
            make_message("plain three", message_id="<three@test>"),
        ],
    )
    on_message, messages = recorder("messages")
    on_attachment, attachments = recorder("attachments")
    run, events = poll(
        dovecot_alice, data_dir, state, on_message=on_message, on_attachment=on_attachment
    )
    assert run.error is None
    seen = {env[b"FETCHD_MESSAGE_ID"]: env for env in runs(messages)}
    assert sorted(seen) == [b"<one@test>", b"<three@test>", b"<two@test>"]
    two = seen[b"<two@test>"]
    assert (two[b"FETCHD_HOOK"], two[b"FETCHD_ACCOUNT"]) == (b"on_message", b"work")
    assert (two[b"FETCHD_FROM"], two[b"FETCHD_FROM_ADDRESS"]) == (
        b"Billing Dept",
        b"billing@example.org",
    )
    assert two[b"FETCHD_SUBJECT"] == b"with files"
    assert b"with files" in Path(os.fsdecode(two[b"FETCHD_MESSAGE"])).read_bytes()
    assert b"FETCHD_ATTACHMENT" not in two
    assert seen[b"<one@test>"][b"FETCHD_ATTACHMENT_DIR"] == b""
    folder = Path(os.fsdecode(two[b"FETCHD_ATTACHMENT_DIR"]))
    files = {}
    for env in runs(attachments):
        assert env[b"FETCHD_HOOK"] == b"on_attachment"
        assert env[b"FETCHD_MESSAGE_ID"] == b"<two@test>"
        assert env[b"FETCHD_ATTACHMENT_DIR"] == two[b"FETCHD_ATTACHMENT_DIR"]
        path = Path(os.fsdecode(env[b"FETCHD_ATTACHMENT"]))
        assert path.parent == folder
        files[path.name] = path.read_bytes()
    assert files == {"invoice.pdf": pdf, "p.png": png}
    assert [e["hook"] for e in hook_events(events)].count("on_message") == 3
    assert state.pending_hooks("work") == []
    # A later poll finds nothing new and runs nothing again.
    poll(dovecot_alice, data_dir, state, on_message=on_message, on_attachment=on_attachment)
    assert (len(runs(messages)), len(runs(attachments))) == (3, 2)


HOSTILE_SUBJECT = "$(touch {pwned}) `touch {pwned}` ; touch {pwned} \" ' \\"


def test_hostile_header_values_reach_the_hook_as_inert_data(
    dovecot_alice: Dovecot, data_dir: Path, state: State, tmp_path: Path
) -> None:
    pwned = tmp_path / "pwned"
    subject = HOSTILE_SUBJECT.format(pwned=pwned)
    long_name = "N" * 10_000
    raw = (
        f"From: {long_name} <evil@example.org>\r\n"
        "To: alice@example.org\r\n"
        # A raw newline can only come from an encoded word (=0A): the header itself is folded.
        f"Subject: {subject} =?utf-8?q?line=0Abreak=0D=09tab_=1B[31mred?= \xe9t\xe9 \r\n"
        "Message-ID: <hostile@test>\r\n"
        "\r\n"
        "body\r\n"
    ).encode("latin-1")
    dovecot_alice.deliver("alice", raw)
    out = tmp_path / "out"
    out.mkdir()
    # The shell sees only "$FETCHD_SUBJECT" in its script: a value is never parsed.
    script = 'printf "%s" "$FETCHD_SUBJECT" > "$0/subject"; printf "%s" "$FETCHD_FROM" > "$0/from"'
    run, events = poll(dovecot_alice, data_dir, state, on_message=["sh", "-c", script, str(out)])
    assert run.error is None
    assert [e["event"] for e in hook_events(events)] == ["hook ran"]
    assert not pwned.exists()
    got = (out / "subject").read_bytes()
    text = got.decode("utf-8")  # valid UTF-8 whatever the message held
    assert text.startswith(subject)
    assert "line break" in text
    assert not any(c in text for c in "\n\r\t\x1b")
    assert " [31mred" in text
    assert "t\ufffdt\ufffd" in text or "été" in text  # an undecodable byte, or latin-1 read
    sender = (out / "from").read_bytes().decode("utf-8")
    assert sender == long_name


def test_a_failing_hook_is_a_warning_counts_as_done_and_loses_no_mail(
    dovecot_alice: Dovecot, data_dir: Path, state: State, recorder: Any
) -> None:
    dovecot_alice.deliver_many("alice", [make_message(f"m{i}") for i in range(2)])
    argv, out = recorder("runs")
    run, events = poll(
        dovecot_alice, data_dir, state, on_message=[*argv, "3"], delete_after_fetch=True
    )
    assert run.error is None
    assert run.result is not None
    assert (run.result.stored, run.result.deleted) == (2, 2)
    failed = hook_events(events)
    assert [(e["event"], e["log_level"], e["status"]) for e in failed] == [
        ("hook failed", "warning", 3)
    ] * 2
    assert failed[0]["reason"] == "exited with status 3"
    assert state.pending_hooks("work") == []
    poll(dovecot_alice, data_dir, state, on_message=[*argv, "3"])
    assert len(runs(out)) == 2  # never retried
    assert len(list((data_dir / "work" / "Maildir" / "new").iterdir())) == 2


def test_a_bug_while_running_a_hook_counts_as_its_failed_run_and_the_others_are_recorded(
    dovecot_alice: Dovecot,
    data_dir: Path,
    state: State,
    recorder: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dovecot_alice.deliver_many("alice", [make_message(f"m{i}") for i in range(3)])
    argv, out = recorder("runs")
    calls = itertools.count()
    real_run_hook = fetchd.hooks.run_hook

    def run_hook(*args: Any, **kwargs: Any) -> HookRun:
        if next(calls) == 1:
            raise RuntimeError("a bug")
        return real_run_hook(*args, **kwargs)

    monkeypatch.setattr(fetchd.hooks, "run_hook", run_hook)
    run, events = poll(dovecot_alice, data_dir, state, on_message=argv)
    assert run.outcome == "ok"
    assert len(runs(out)) == 2
    assert sorted((e["event"], e["log_level"]) for e in hook_events(events)) == [
        ("hook crashed", "error"),
        ("hook failed", "warning"),
        ("hook ran", "info"),
        ("hook ran", "info"),
    ]
    [failed] = [e for e in hook_events(events) if e["event"] == "hook failed"]
    assert failed["reason"] == "fetchd hit a bug running it (RuntimeError)"
    assert state.pending_hooks("work") == []
    poll(dovecot_alice, data_dir, state, on_message=argv)
    assert len(runs(out)) == 2  # none again, the one that crashed included


class FlakyState(State):
    """A state whose first recording of hooks that ran fails, as a locked database's would."""

    failures_left = 1

    def hooks_done(self, account: str, hooks: Sequence[PendingHook]) -> None:
        if hooks and self.failures_left:
            self.failures_left -= 1
            raise StorageError("database is locked")
        super().hooks_done(account, hooks)


def test_hooks_that_ran_unrecorded_never_run_again_in_the_process_and_are_recorded_next(
    dovecot_alice: Dovecot, tmp_path: Path, recorder: Any
) -> None:
    dovecot_alice.deliver_many("alice", [make_message(f"m{i}") for i in range(3)])
    argv, out = recorder("runs")
    config = load_config(write_config(tmp_path, dovecot_alice, argv))
    account, data_dir = config.accounts["work"], config.daemon.data_dir
    shared = DaemonHooks.from_config(config)
    with contextlib.closing(FlakyState(state_path(data_dir))) as state:
        with capture_logs() as events:
            run_account(account, data_dir, state, get_logger(), daemon_hooks=shared)
        assert len(runs(out)) == 3
        [warning] = [e for e in events if "could not be recorded" in e["event"]]
        assert warning["log_level"] == "warning"
        assert state.pending_hooks("work") != []  # ran; the record of it failed
        # The next poll, after a reload too, records them and runs none again.
        reloaded = DaemonHooks.from_config(config, previous=shared)
        with capture_logs():
            run_account(account, data_dir, state, get_logger(), daemon_hooks=reloaded)
        assert len(runs(out)) == 3
        assert state.pending_hooks("work") == []


class SecondStartFails(State):
    """A state that cannot count the second batch of starts, as a full database could not."""

    starts = 0

    def start_hooks(self, account: str, hooks: Sequence[PendingHook], step: int = 1) -> None:
        self.starts += step > 0
        if self.starts == 2:
            raise StorageError("database or disk is full")
        super().start_hooks(account, hooks, step)


def test_hooks_still_running_when_a_start_cannot_be_counted_are_seen_to_their_end(
    dovecot_alice: Dovecot,
    data_dir: Path,
    recorder: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dovecot_alice.deliver_many("alice", [make_message(f"m{i}") for i in range(4)])
    argv, out = recorder("runs")
    calls = itertools.count()
    real_run_hook = fetchd.hooks.run_hook

    def run_hook(*args: Any, **kwargs: Any) -> HookRun:
        if next(calls) == 0:
            time.sleep(0.5)  # still running when the next start fails to count
        return real_run_hook(*args, **kwargs)

    monkeypatch.setattr(fetchd.hooks, "run_hook", run_hook)
    with contextlib.closing(SecondStartFails(state_path(data_dir))) as state:
        _, events = poll(dovecot_alice, data_dir, state, slots=2, on_message=argv)
        assert len(runs(out)) == 2
        assert [e["error"] for e in events if e["event"] == "hooks not run"] == [
            "database or disk is full"
        ]
        assert len(state.pending_hooks("work")) == 2  # the two never started
        poll(dovecot_alice, data_dir, state, slots=2, on_message=argv)
        assert len(runs(out)) == 4  # each once
        assert state.pending_hooks("work") == []


def test_a_hook_queued_anew_under_a_remembered_key_is_not_taken_for_the_one_that_ran() -> None:
    queued = HookJob(PendingHook("", "on_poll", "1"), 0, None, None, None, None, None, None)
    ran = dataclasses.replace(queued, starts=1)  # as queued after the start that ran it
    unrecorded = Unrecorded()
    unrecorded.add("work", [queued])
    assert unrecorded.among("work", [ran]) == [ran]
    assert unrecorded.among("work", [queued]) == []  # a new hook: its row went meanwhile
    assert unrecorded.among("work", [ran]) == []  # forgotten once no longer queued


def test_a_missing_program_is_a_warning_and_the_poll_succeeds(
    dovecot_alice: Dovecot, data_dir: Path, state: State, tmp_path: Path
) -> None:
    dovecot_alice.deliver("alice", make_message("hello"))
    missing = str(tmp_path / "no-such-program")
    run, events = poll(dovecot_alice, data_dir, state, on_message=[missing])
    assert run.error is None
    assert run.outcome == "ok"
    [event] = hook_events(events)
    assert event["event"] == "hook failed"
    assert event["status"] is None
    assert event["reason"].startswith(f"cannot run {missing!r}: No such file")
    assert state.pending_hooks("work") == []


def test_a_hook_past_its_timeout_is_killed_with_its_process_group(
    dovecot_alice: Dovecot, data_dir: Path, state: State, tmp_path: Path
) -> None:
    dovecot_alice.deliver("alice", make_message("slow"))
    pid_file = tmp_path / "child.pid"
    # A grandchild in the background, and output after the point the hook is killed.
    script = 'sleep 60 & echo $! > "$0"; echo started; sleep 60; echo never'
    started = time.monotonic()
    run, events = poll(
        dovecot_alice,
        data_dir,
        state,
        on_message=["sh", "-c", script, str(pid_file)],
        hook_timeout=1,
    )
    assert time.monotonic() - started < 20
    assert run.error is None
    [event] = hook_events(events)
    assert event["event"] == "hook failed"
    assert event["reason"] == "killed after 1 s (hook_timeout)"
    assert event["stdout"] == "started"
    grandchild = int(pid_file.read_text())
    _assert_gone(grandchild)
    assert state.pending_hooks("work") == []


def _assert_gone(pid: int) -> None:
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        # A killed child of a killed shell is a zombie until init reaps it.
        status = Path(f"/proc/{pid}/status")
        if status.exists() and "zombie" in status.read_text():
            return
        time.sleep(0.1)
    pytest.fail(f"process {pid} outlived the hook's timeout")


def test_output_is_kept_to_its_bound(dovecot_alice: Dovecot, data_dir: Path, state: State) -> None:
    dovecot_alice.deliver("alice", make_message("chatty"))
    script = "head -c 1000000 /dev/zero | tr '\\0' x; echo err >&2"
    run, events = poll(dovecot_alice, data_dir, state, on_message=["sh", "-c", script])
    assert run.error is None
    [event] = hook_events(events)
    assert event["event"] == "hook ran"
    assert event["stdout"] == "x" * 8192 + f" [... {1_000_000 - 8192} more bytes]"
    assert event["stderr"] == "err"


def test_on_error_gets_the_failure_and_no_secret(
    dovecot_alice: Dovecot,
    data_dir: Path,
    state: State,
    recorder: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    canary = "canary-pw-5b1d93"
    monkeypatch.setenv("HOOKTEST_PW", canary)
    monkeypatch.setenv("OTHER_API_TOKEN", "canary-token-77")
    monkeypatch.setenv("HARMLESS", "kept")
    monkeypatch.setenv("FETCHD_SUBJECT", "stale")
    argv, out = recorder("errors")
    on_message, messages = recorder("messages")
    run, _ = poll(
        dovecot_alice,
        data_dir,
        state,
        password=None,
        password_env="HOOKTEST_PW",
        on_error=argv,
        on_message=on_message,
    )
    assert run.outcome == "auth"
    [env] = runs(out)
    assert env[b"FETCHD_HOOK"] == b"on_error"
    assert env[b"FETCHD_OUTCOME"] == b"auth"
    assert env[b"FETCHD_FAILURES"] == b"1"
    assert env[b"FETCHD_ERROR"].decode() == str(run.error)
    assert b"refused" in env[b"FETCHD_ERROR"]
    assert env[b"HARMLESS"] == b"kept"
    for name in (b"HOOKTEST_PW", b"OTHER_API_TOKEN", b"FETCHD_SUBJECT"):
        assert name not in env
    assert b"canary" not in (out / os.listdir(out)[0]).read_bytes()
    assert runs(messages) == []


def test_at_most_max_hooks_run_at_once(
    dovecot_alice: Dovecot, data_dir: Path, state: State, tmp_path: Path
) -> None:
    dovecot_alice.deliver_many("alice", [make_message(f"m{i}") for i in range(6)])
    out = tmp_path / "spans"
    out.mkdir()
    script = 'a=$(date +%s.%N); sleep 0.4; echo "$a $(date +%s.%N)" > "$0/$$"'
    started = time.monotonic()
    run, _ = poll(
        dovecot_alice, data_dir, state, slots=2, on_message=["sh", "-c", script, str(out)]
    )
    assert run.error is None
    spans = [tuple(map(float, f.read_text().split())) for f in out.iterdir()]
    assert len(spans) == 6
    points = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    running, most = 0, 0
    for _, step in points:
        running += step
        most = max(most, running)
    assert most == 2
    assert time.monotonic() - started >= 1.2  # three rounds of two


# -- a crash between the commit and the hook ------------------------------------


def write_config(
    tmp_path: Path,
    dovecot: Dovecot,
    hook: list[str],
    max_hooks: int = 4,
    on_poll: str = "",
    *,
    password: str = "secret",
    on_error: list[str] | None = None,
) -> Path:
    on_error_line = "" if on_error is None else f"on_error = {on_error!r}"
    config = tmp_path / "config.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [daemon]
            data_dir = "{tmp_path / "data"}"
            transcript = false
            log_level = "warning"
            max_hooks = {max_hooks}
            {on_poll}
            [accounts.work]
            host = "127.0.0.1"
            port = {dovecot.pop3_port}
            security = "plain"
            username = "alice"
            password = "{password}"
            delete_after_fetch = true
            on_message = {hook!r}
            {on_error_line}
            """
        ).replace("'", '"')
    )
    config.chmod(0o600)
    return config


def fetch_killed_at(config: Path, target: str, when: str, nth: int) -> int:
    done = subprocess.run(
        [sys.executable, "-c", INJECTOR, str(config), target, when, str(nth)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    return done.returncode


@pytest.fixture
def mailbox(dovecot_alice: Dovecot) -> list[bytes]:
    mails = [make_message(f"crash {i}", message_id=f"<c{i}@test>") for i in range(25)]
    dovecot_alice.deliver_many("alice", mails)
    return mails


def test_a_kill_before_the_hooks_run_runs_each_on_the_next_pass_exactly_once(
    dovecot_alice: Dovecot, mailbox: list[bytes], tmp_path: Path, recorder: Any
) -> None:
    argv, out = recorder("runs")
    config = write_config(tmp_path, dovecot_alice, argv)
    # Killed once everything is committed and deleted on the server, before any hook.
    assert fetch_killed_at(config, "fetchd.hooks:run_pending", "before", 1) == -9
    assert runs(out) == []
    with contextlib.closing(State(tmp_path / "data" / "state.sqlite3")) as state:
        assert len(state.pending_hooks("work")) == len(mailbox)
    assert fetch_killed_at(config, "-", "-", 0) == 0
    ids = sorted(env[b"FETCHD_MESSAGE_ID"] for env in runs(out))
    assert ids == sorted(f"<c{i}@test>".encode() for i in range(len(mailbox)))
    assert fetch_killed_at(config, "-", "-", 0) == 0
    assert len(runs(out)) == len(mailbox)


def test_a_kill_between_commit_and_index_queues_the_hooks_on_the_next_pass(
    dovecot_alice: Dovecot, mailbox: list[bytes], tmp_path: Path, recorder: Any
) -> None:
    argv, out = recorder("runs")
    config = write_config(tmp_path, dovecot_alice, argv)
    assert fetch_killed_at(config, "fetchd.store.state:State.record", "after", 1) == -9
    assert runs(out) == []
    assert fetch_killed_at(config, "-", "-", 0) == 0
    assert fetch_killed_at(config, "-", "-", 0) == 0
    ids = sorted(env[b"FETCHD_MESSAGE_ID"] for env in runs(out))
    assert ids == sorted(f"<c{i}@test>".encode() for i in range(len(mailbox)))


def test_a_kill_while_hooks_run_reruns_only_those_not_recorded_done(
    dovecot_alice: Dovecot, mailbox: list[bytes], tmp_path: Path, recorder: Any
) -> None:
    """The one window: a hook that ran but was not yet recorded done runs again."""
    argv, out = recorder("runs")
    config = write_config(tmp_path, dovecot_alice, argv, max_hooks=1)
    assert fetch_killed_at(config, "fetchd.hooks:run_hook", "after", 10) == -9
    first = len(runs(out))
    assert first == 10
    assert fetch_killed_at(config, "-", "-", 0) == 0
    counts: dict[bytes, int] = {}
    for env in runs(out):
        counts[env[b"FETCHD_MESSAGE_ID"]] = counts.get(env[b"FETCHD_MESSAGE_ID"], 0) + 1
    assert len(counts) == len(mailbox)  # every message's hook ran
    again = [uid for uid, n in counts.items() if n > 1]
    assert 1 <= len(again) <= 2  # the killed run, and perhaps the one before it
    assert all(n <= 2 for n in counts.values())


# -- what is queued, and when it is not run --------------------------------------


def test_a_rebuilt_state_queues_no_hooks_for_the_mail_it_finds(
    dovecot_alice: Dovecot, data_dir: Path, state: State, recorder: Any
) -> None:
    dovecot_alice.deliver_many("alice", [make_message(f"m{i}") for i in range(3)])
    argv, out = recorder("runs")
    poll(dovecot_alice, data_dir, state, on_message=argv)
    assert len(runs(out)) == 3
    fresh = State(data_dir / "fresh.sqlite3")
    try:
        account = make_account(dovecot_alice.pop3_port, on_message=argv)
        result = recover_account(account, data_dir, fresh)
        assert result.stored == 3
        assert fresh.pending_hooks("work") == []
    finally:
        fresh.close()


def queue_one(dovecot: Dovecot, data_dir: Path, state: State, argv: list[str]) -> None:
    """Store one message with its on_message queued, but not run (the poll is stopped)."""
    dovecot.deliver("alice", make_message("queued"))
    stop = threading.Event()
    stop.set()  # the runner's hooks see a stopping daemon
    account = make_account(dovecot.pop3_port, on_message=argv)
    with capture_logs():
        poll_account(account, data_dir, state)
        run_pending(account, data_dir, state, get_logger(), shared=DaemonHooks(), stop=stop)
    [job] = state.pending_hooks("work")
    assert job.starts == 0  # a hook that never started did not count as a start


def test_a_stopping_daemon_leaves_hooks_queued_for_the_next_poll(
    dovecot_alice: Dovecot, data_dir: Path, state: State, recorder: Any
) -> None:
    argv, out = recorder("runs")
    queue_one(dovecot_alice, data_dir, state, argv)
    assert runs(out) == []
    poll(dovecot_alice, data_dir, state, on_message=argv)
    assert [env[b"FETCHD_SUBJECT"] for env in runs(out)] == [b"queued"]
    assert state.pending_hooks("work") == []


def test_a_hook_started_max_starts_times_is_given_up(
    dovecot_alice: Dovecot, data_dir: Path, state: State, recorder: Any
) -> None:
    argv, out = recorder("runs")
    queue_one(dovecot_alice, data_dir, state, argv)
    [job] = state.pending_hooks("work")
    for _ in range(MAX_STARTS):  # as if each start had ended in a crash
        state.start_hooks("work", [job.pending])
    _, events = poll(dovecot_alice, data_dir, state, on_message=argv)
    assert runs(out) == []
    [event] = hook_events(events)
    assert (event["event"], event["log_level"]) == ("hook given up", "warning")
    assert state.pending_hooks("work") == []


def test_a_hook_removed_from_the_config_is_dropped_unrun(
    dovecot_alice: Dovecot, data_dir: Path, state: State, recorder: Any
) -> None:
    argv, out = recorder("runs")
    queue_one(dovecot_alice, data_dir, state, argv)
    _, events = poll(dovecot_alice, data_dir, state)
    assert (runs(out), hook_events(events)) == ([], [])
    assert state.pending_hooks("work") == []


def test_on_poll_runs_after_each_poll_with_its_counts(
    dovecot_alice: Dovecot, tmp_path: Path, recorder: Any
) -> None:
    dovecot_alice.deliver_many("alice", [make_message(f"m{i}") for i in range(3)])
    on_message, messages = recorder("messages")
    argv, out = recorder("polls")
    config = write_config(tmp_path, dovecot_alice, on_message, on_poll=f"on_poll = {argv!r}")
    assert main(["-c", str(config), "fetch"]) == 0
    assert main(["-c", str(config), "fetch"]) == 0
    polls = [
        (env[b"FETCHD_HOOK"], env[b"FETCHD_STORED"], env[b"FETCHD_OUTCOME"]) for env in runs(out)
    ]
    assert sorted(polls) == [(b"on_poll", b"0", b"ok"), (b"on_poll", b"3", b"ok")]
    assert all(env[b"FETCHD_ACCOUNT"] == b"work" for env in runs(out))
    assert len(runs(messages)) == 3


# -- a poll's hooks: queued with the poll's record, run once ------------------------

#: Appends "<hook> <outcome> <failures>" to the file "$0": one line per run, in order.
POLL_LINE = 'printf "%s %s %s\\n" "$FETCHD_HOOK" "$FETCHD_OUTCOME" "$FETCHD_FAILURES" >> "$0"'


def lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_each_polls_on_error_then_on_poll_run_once_with_its_facts(
    dovecot_alice: Dovecot, data_dir: Path, state: State, tmp_path: Path
) -> None:
    log = tmp_path / "ran.log"
    hook = ["sh", "-c", POLL_LINE, str(log)]
    for _ in range(2):
        run, events = poll(
            dovecot_alice, data_dir, state, on_poll=hook, on_error=hook, password="wrong"
        )
        assert run.outcome == "auth"
        assert [(e["event"], e["hook"]) for e in hook_events(events)] == [
            ("hook ran", "on_error"),
            ("hook ran", "on_poll"),
        ]
        assert state.pending_hooks("work") == []
    assert lines(log) == ["on_error auth 1", "on_poll auth 1", "on_error auth 2", "on_poll auth 2"]
    run, _ = poll(dovecot_alice, data_dir, state, on_poll=hook, on_error=hook)
    assert run.outcome == "ok"
    assert lines(log)[4:] == ["on_poll ok 0"]


def test_a_poll_that_finds_the_account_locked_queues_and_runs_no_poll_hook(
    dovecot_alice: Dovecot, data_dir: Path, state: State, tmp_path: Path
) -> None:
    log = tmp_path / "ran.log"
    hook = ["sh", "-c", POLL_LINE, str(log)]
    account = make_account(dovecot_alice.pop3_port, on_error=hook)
    with AccountStore(account, data_dir, state).lock():  # as another fetchd process would
        run, _ = poll(dovecot_alice, data_dir, state, on_poll=hook, on_error=hook)
        assert run.outcome == "locked"
        assert state.pending_hooks("work") == []
    assert lines(log) == []


def test_a_kill_after_the_poll_is_recorded_runs_its_hooks_on_the_next_pass_exactly_once(
    dovecot_alice: Dovecot, tmp_path: Path, recorder: Any
) -> None:
    on_message, _ = recorder("messages")
    on_error, errors = recorder("errors")
    on_poll, polls = recorder("polls")
    config = write_config(
        tmp_path,
        dovecot_alice,
        on_message,
        on_poll=f"on_poll = {on_poll!r}",
        password="wrong",
        on_error=on_error,
    )
    # Killed with the failed poll recorded, before any of its hooks ran.
    assert fetch_killed_at(config, "fetchd.store.state:State.record_poll", "after", 1) == -9
    assert (runs(errors), runs(polls)) == ([], [])
    with contextlib.closing(State(tmp_path / "data" / "state.sqlite3")) as state:
        queued = [(job.pending.hook, job.starts) for job in state.pending_hooks("work")]
    assert queued == [("on_error", 0), ("on_poll", 0)]
    for _ in range(2):  # two more failed polls; the first's hooks run with the first's facts
        assert fetch_killed_at(config, "-", "-", 0) == 1
    failed = sorted((env[b"FETCHD_FAILURES"], env[b"FETCHD_ERROR"]) for env in runs(errors))
    assert [failures for failures, _ in failed] == [b"1", b"2", b"3"]
    assert all(b"refused" in error for _, error in failed)
    polled = sorted((env[b"FETCHD_FAILURES"], env[b"FETCHD_OUTCOME"]) for env in runs(polls))
    assert polled == [(b"1", b"auth"), (b"2", b"auth"), (b"3", b"auth")]
    assert {env[b"FETCHD_HOOK"] for env in runs(errors) + runs(polls)} == {
        b"on_error",
        b"on_poll",
    }
    assert {env[b"FETCHD_ACCOUNT"] for env in runs(errors) + runs(polls)} == {b"work"}


def test_a_kill_while_a_polls_hook_runs_reruns_it_once_more_at_most(
    dovecot_alice: Dovecot, tmp_path: Path, recorder: Any
) -> None:
    """The one window, as for a message's hook: run, not yet recorded done."""
    on_message, _ = recorder("messages")
    on_poll, polls = recorder("polls")
    config = write_config(tmp_path, dovecot_alice, on_message, on_poll=f"on_poll = {on_poll!r}")
    assert fetch_killed_at(config, "fetchd.hooks:run_hook", "after", 1) == -9
    assert len(runs(polls)) == 1
    assert fetch_killed_at(config, "-", "-", 0) == 0
    # The killed poll's on_poll again, then the clean poll's; then nothing queued.
    assert len(runs(polls)) == 3
    with contextlib.closing(State(tmp_path / "data" / "state.sqlite3")) as state:
        assert state.pending_hooks("work") == []


def queue_poll_hooks(state: State, account: AccountConfig, on_poll: list[str]) -> None:
    """Record a failed poll of ``account`` with its on_error and on_poll queued, not run."""
    record = PollRecord("work", 100.0, 101.0, "network", error="no route")
    shared = DaemonHooks(on_poll=on_poll)
    error = NetworkError("no route")
    state.record_poll(record, lambda failures: poll_hooks(account, shared, record, error, failures))


def run_queued(
    state: State, data_dir: Path, account: AccountConfig, on_poll: list[str] | None, stop: bool
) -> list[dict[str, Any]]:
    halt = threading.Event()
    if stop:
        halt.set()
    with capture_logs() as events:
        run_pending(
            account, data_dir, state, get_logger(), shared=DaemonHooks(on_poll=on_poll), stop=halt
        )
    return events


def test_a_stopping_daemon_leaves_poll_hooks_queued_with_no_start_counted(
    data_dir: Path, state: State, recorder: Any
) -> None:
    hook, out = recorder("runs")
    account = make_account(1, on_error=hook)
    queue_poll_hooks(state, account, hook)
    run_queued(state, data_dir, account, hook, stop=True)
    assert runs(out) == []
    assert [(job.pending.hook, job.starts) for job in state.pending_hooks("work")] == [
        ("on_error", 0),
        ("on_poll", 0),
    ]
    run_queued(state, data_dir, account, hook, stop=False)
    assert sorted(env[b"FETCHD_HOOK"] for env in runs(out)) == [b"on_error", b"on_poll"]
    assert [env[b"FETCHD_ERROR"] for env in runs(out) if b"FETCHD_ERROR" in env] == [b"no route"]
    assert state.pending_hooks("work") == []


def test_a_poll_hook_started_max_starts_times_is_given_up(
    data_dir: Path, state: State, recorder: Any
) -> None:
    hook, out = recorder("runs")
    account = make_account(1, on_error=hook)
    queue_poll_hooks(state, account, hook)
    error, _ = state.pending_hooks("work")
    for _ in range(MAX_STARTS):  # as if each start had ended in a crash
        state.start_hooks("work", [error.pending])
    events = run_queued(state, data_dir, account, hook, stop=False)
    assert [(e["event"], e["hook"]) for e in hook_events(events)] == [
        ("hook given up", "on_error"),
        ("hook ran", "on_poll"),
    ]
    assert [env[b"FETCHD_HOOK"] for env in runs(out)] == [b"on_poll"]
    assert state.pending_hooks("work") == []


def test_a_poll_hook_no_longer_configured_is_dropped_unrun(
    data_dir: Path, state: State, recorder: Any
) -> None:
    hook, out = recorder("runs")
    queue_poll_hooks(state, make_account(1, on_error=hook), hook)
    events = run_queued(state, data_dir, make_account(1), None, stop=False)
    assert (runs(out), hook_events(events)) == ([], [])
    assert state.pending_hooks("work") == []


def test_no_hook_inherits_any_account_password_or_stale_facts(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        textwrap.dedent(
            """
            [accounts.work]
            host = "pop.example.org"
            username = "a"
            password_env = "WORK_PW"
            [accounts.home]
            host = "pop.example.org"
            username = "b"
            password_env = "HOME_PW"
            """
        )
    )
    loaded = load_config(config)
    shared = DaemonHooks.from_config(loaded)
    environ = {
        "WORK_PW": "1",
        "HOME_PW": "2",
        "GITHUB_TOKEN": "3",
        "CREDENTIALS_DIRECTORY": "/run/credentials/fetchd.service",
        "FETCHD_SUBJECT": "stale",
        "FETCHD_CONFIG": str(config),
        "PATH": "/usr/bin",
        "DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/user/1000/bus",
    }
    env = inherited_environment(loaded.accounts["work"], shared.hidden, environ)
    assert sorted(env) == ["DBUS_SESSION_BUS_ADDRESS", "FETCHD_CONFIG", "PATH"]


def test_a_message_a_mail_client_moved_to_cur_is_named_where_it_is_now(tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    for sub in ("new", "cur"):
        (maildir / sub).mkdir(parents=True)
    name = "1.M2P3R4,FD=abc.host.eml"
    indexed = maildir / "new" / name
    assert where_now(indexed) == indexed  # not there at all: as indexed
    indexed.write_bytes(b"x")
    assert where_now(indexed) == indexed
    moved = maildir / "cur" / f"{name}:2,S"
    indexed.rename(moved)
    (maildir / "cur" / "1.M2P3R4,FD=abcd.host.eml:2,").write_bytes(b"another message")
    assert where_now(indexed) == moved
