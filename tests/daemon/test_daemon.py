"""The daemon in-process: LOGIN-DELAY, reload bookkeeping, jobs that never crash the scheduler."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import fetchd.poll
import fetchd.runner
from fetchd.config import AccountConfig, Config, load_config
from fetchd.daemon import Daemon
from fetchd.daemon import service as daemon_module
from fetchd.poll import PollResult
from fetchd.store.state import PollStatus, State
from fetchd.testing.server import POP3TestServer
from tests.daemon.conftest import RecordingNotifier
from tests.messages import make_message


def account(name: str, port: int, **extra: str) -> str:
    lines = [
        f"[accounts.{name}]",
        'host = "127.0.0.1"',
        f"port = {port}",
        'security = "plain"',
        'username = "alice"',
        'password_env = "FETCHD_TEST_PW"',
        *(f'{key} = "{value}"' for key, value in extra.items()),
    ]
    return "\n".join(lines) + "\n"


def write(path: Path, *accounts: str, interval: str = "1s") -> Config:
    data = path.parent / "data"
    daemon = f'[daemon]\ndata_dir = "{data}"\ninterval = "{interval}"\ntranscript = false\n'
    path.write_text(daemon + "".join(accounts))
    return load_config(path)


def polls(config: Config) -> dict[str, PollStatus]:
    with contextlib.closing(State(config.daemon.data_dir / "state.sqlite3")) as state:
        return {row.account: row for row in state.poll_status()}


def finished(config: Config, name: str) -> float | None:
    """When the account's last poll ended, if it ever polled."""
    row = polls(config).get(name)
    return None if row is None else row.finished


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_servers_login_delay_is_never_broken(
    tmp_path: Path,
    pop3_server: Callable[..., POP3TestServer],
    running: Callable[..., Daemon],
) -> None:
    server = pop3_server([make_message(f"m{i}") for i in range(3)], login_delay=2)
    config = write(tmp_path / "config.toml", account("slow", server.port))
    running(config)
    wait_until(lambda: finished(config, "slow") is not None)
    first = finished(config, "slow")
    # The second poll is the one a daemon ignoring LOGIN-DELAY gets refused.
    wait_until(lambda: server.sessions >= 2 and (finished(config, "slow") or 0) > (first or 0))
    row = polls(config)["slow"]
    # Polls every second would log in four times, and be refused with [LOGIN-DELAY].
    assert server.sessions == 2
    assert (row.outcome, row.failures) == ("ok", 0)
    assert not any(
        "LOGIN-DELAY" in line
        for side, line in server.transcript
        if side == "S" and line.startswith("-ERR")
    )
    assert len(list((config.daemon.data_dir / "slow" / "Maildir" / "new").iterdir())) == 3


def backed_off(config: Config, *names: str, failures: int = 1) -> bool:
    """Whether each account has failed ``failures`` times and its next poll is set back."""
    rows = polls(config)
    for name in names:
        row = rows.get(name)
        if row is None or row.failures != failures or row.finished is None:
            return False
        if (row.next_poll or 0) - row.finished < 1.9:  # 1 s, doubled
            return False
    return True


def test_reload_touches_only_the_accounts_whose_settings_changed(
    tmp_path: Path, running: Callable[..., Daemon]
) -> None:
    # Port 1 refuses connections: every poll fails at once and is backed off.
    path = tmp_path / "config.toml"
    config = write(path, account("same", 1), account("edited", 1), account("dropped", 1))
    notifier = RecordingNotifier()
    daemon = running(config, notifier)
    wait_until(lambda: backed_off(config, "same", "edited", "dropped"))
    before = polls(config)

    write(path, account("same", 1), account("edited", 1, timeout="5s"), account("new", 1))
    assert daemon.reload()
    # The edited account is polled again at once (its fix may be in the edit), the
    # new one for the first time; the unchanged one keeps its backed-off schedule.
    wait_until(lambda: backed_off(config, "new") and backed_off(config, "edited", failures=2))
    after = polls(config)
    assert after["same"].next_poll == pytest.approx(before["same"].next_poll, abs=0.001)
    assert after["same"].finished == before["same"].finished
    assert after["dropped"].next_poll is None
    kinds = [m[0] for m in notifier.sent if m[0] in ("RELOADING=1", "READY=1")]
    assert kinds == ["READY=1", "RELOADING=1", "READY=1"]


def test_an_invalid_config_on_reload_keeps_the_running_one(
    tmp_path: Path, running: Callable[..., Daemon]
) -> None:
    path = tmp_path / "config.toml"
    config = write(path, account("kept", 1), interval="1h")
    daemon = running(config)
    path.write_text(path.read_text() + "[accounts.broken]\n")
    assert not daemon.reload()
    assert [spec for spec in daemon_module.specs_for(config)] == ["kept"]
    wait_until(lambda: "kept" in polls(config) and polls(config)["kept"].finished is not None)


def fine_polled_after_buggy(config: Config) -> bool:
    rows = polls(config)
    crashed = rows["buggy"].finished
    return crashed is not None and (rows["fine"].started or 0) > crashed


def test_a_crashing_poll_is_recorded_and_backed_off_without_stopping_others(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pop3_server: Callable[..., POP3TestServer],
    running: Callable[..., Daemon],
) -> None:
    server = pop3_server([make_message("fine")])
    real_poll = fetchd.poll.poll_account

    def poll(account: AccountConfig, *args: Any, **kwargs: Any) -> PollResult:
        if account.name == "buggy":
            raise RuntimeError("a bug")
        return real_poll(account, *args, **kwargs)

    monkeypatch.setattr(fetchd.runner, "poll_account", poll)
    config = write(
        tmp_path / "config.toml", account("buggy", server.port), account("fine", server.port)
    )
    running(config)
    wait_until(
        lambda: (
            len(polls(config)) == 2
            and polls(config)["fine"].failures == 0
            and polls(config)["fine"].finished is not None
        )
    )
    # The crash is recorded with its next poll set back, and "fine" starts a poll after it.
    wait_until(lambda: backed_off(config, "buggy") and fine_polled_after_buggy(config))
    rows = polls(config)
    assert rows["buggy"].outcome == "bug"
    assert rows["buggy"].failures == 1
    assert "a bug" in (rows["buggy"].error or "")
