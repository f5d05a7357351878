"""The daemon runs an account's hooks off its poll thread, after the next poll is scheduled."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from fetchd.config import Config, load_config
from fetchd.daemon import Daemon
from fetchd.store.state import State, state_path
from fetchd.testing.server import POP3TestServer
from tests.daemon.conftest import RecordingNotifier
from tests.daemon.test_daemon import account, finished, polls, wait_until
from tests.messages import make_message

#: Appends its name to "$0.started", then waits until "$0.release" exists.
BLOCKING_HOOK = (
    'echo "$FETCHD_HOOK" >> "$0.started"; until [ -e "$0.release" ]; do sleep 0.05; done'
)


class BlockingHook:
    """A hook that runs until the test releases it; it notes each start."""

    def __init__(self, folder: Path) -> None:
        self.base = folder / "hook"
        self.argv = ["sh", "-c", BLOCKING_HOOK, str(self.base)]

    def starts(self) -> list[str]:
        started = self.base.with_name("hook.started")
        return started.read_text().splitlines() if started.exists() else []

    def release(self) -> None:
        self.base.with_name("hook.release").touch()


@pytest.fixture
def hook(tmp_path: Path) -> Iterator[BlockingHook]:
    blocking = BlockingHook(tmp_path)
    yield blocking
    blocking.release()  # a failed test must not leave the daemon's stop waiting


def write(path: Path, *accounts: str, max_parallel: int = 1, max_hooks: int = 4) -> Config:
    data = path.parent / "data"
    path.write_text(
        f'[daemon]\ndata_dir = "{data}"\ninterval = "1s"\ntranscript = false\n'
        f"max_parallel = {max_parallel}\nmax_hooks = {max_hooks}\n" + "".join(accounts)
    )
    return load_config(path)


def on_message(text: str, argv: list[str]) -> str:
    return text + f"on_message = {json.dumps(argv)}\n"


def test_a_slow_hook_neither_delays_the_schedule_nor_holds_the_poll_thread(
    tmp_path: Path,
    pop3_server: Callable[..., POP3TestServer],
    running: Callable[..., Daemon],
    hook: BlockingHook,
) -> None:
    # [IN-USE]: each poll fails, is backed off (1 s doubled) and queues on_error.
    busy, other = pop3_server([], in_use=True), pop3_server([])
    config = write(
        tmp_path / "config.toml",
        account("busy", busy.port) + f"on_error = {json.dumps(hook.argv)}\n",
        account("other", other.port),
    )
    notifier = RecordingNotifier()
    with capture_logs() as events:
        running(config, notifier)
        wait_until(lambda: hook.starts() == ["on_error"])
    sessions = busy.sessions
    # Recorded, backed off, its next poll written and the failure reported: all
    # before its hook ended.
    row = polls(config)["busy"]
    assert (row.outcome, row.failures) == ("busy", 1)
    assert row.finished is not None
    assert row.next_poll is not None
    assert row.next_poll - row.finished >= 1.9
    assert [e["event"] for e in events if e["log_level"] == "warning"] == [
        "poll failed; will retry"
    ]
    assert any("failing: busy" in line for sent in notifier.sent for line in sent)
    # The one poll thread (max_parallel = 1) polls the other account meanwhile,
    # also after the busy one is due again; that one is not polled while its hook runs.
    wait_until(lambda: (finished(config, "other") or 0) > row.next_poll + 1)
    assert polls(config)["busy"] == row  # not even a poll that finds it locked
    assert busy.sessions == sessions
    hook.release()
    wait_until(lambda: busy.sessions > sessions)
    wait_until(lambda: hook.starts() == ["on_error"] * 2)


def test_a_stop_waits_for_running_hooks_and_starts_no_more(
    tmp_path: Path,
    pop3_server: Callable[..., POP3TestServer],
    running: Callable[..., Daemon],
    hook: BlockingHook,
) -> None:
    server = pop3_server([make_message("one"), make_message("two")])
    config = write(
        tmp_path / "config.toml", on_message(account("slow", server.port), hook.argv), max_hooks=1
    )
    daemon = running(config)
    wait_until(lambda: len(hook.starts()) == 1)
    daemon.stop()
    assert not daemon.wait_idle(0.5)  # the hook still runs
    hook.release()
    assert daemon.wait_idle(10)
    assert len(hook.starts()) == 1
    with contextlib.closing(State(state_path(config.daemon.data_dir))) as state:
        [left] = state.pending_hooks("slow")  # the other message's, for the next start
    assert left.starts == 0
