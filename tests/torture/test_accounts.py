"""One pass over many accounts, some hostile: the good ones complete, the run stays bounded.

Two good accounts (alice on the real Dovecot, one on a scriptable server) sit
among hostile ones: a server that trickles its greeting, one that answers UIDL
with garbage, one whose UIDL listing never ends, a password file that is
missing, and a wrong password. ``fetchd fetch`` and the daemon run all of them
through the same runner, with a one-second timeout.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fetchd.testing.dovecot import Dovecot
from fetchd.testing.server import POP3TestServer
from tests.daemon.conftest import DaemonProcess, environment
from tests.messages import make_message

Start = Callable[..., POP3TestServer]

#: Account -> the outcome ``fetchd status`` records for its poll.
EXPECTED = {
    "dovecot": "ok",
    "scripted": "ok",
    "trickle": "network",
    "garbage": "protocol",
    "endless": "protocol",
    "nopassword": "config",
    "wrongpw": "auth",
}
GOOD = [name for name, outcome in EXPECTED.items() if outcome == "ok"]
FAILED = [name for name, outcome in EXPECTED.items() if outcome != "ok"]


def mail(name: str, count: int) -> list[bytes]:
    return [
        make_message(f"{name} {i}", f"body {i}\n" * 20, message_id=f"<{name}-{i}@t>")
        for i in range(count)
    ]


def scripted_table(name: str, server: POP3TestServer, **keys: str) -> str:
    values = {
        "host": '"127.0.0.1"',
        "port": str(server.port),
        "security": '"plain"',
        "username": '"alice"',
        "password": '"secret"',
        "timeout": "1",
        **keys,
    }
    if "password_file" in keys:
        del values["password"]
    return f"[accounts.{name}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())


def write_config(tmp_path: Path, dovecot: Dovecot, start: Start) -> tuple[Path, dict[str, bytes]]:
    """The seven accounts; returns the config and the good accounts' mail by Message-ID."""
    dovecot.deliver_many("alice", mail("dovecot", 3))
    good = {name: mail(name, 3 if name == "dovecot" else 4) for name in GOOD}
    tables = [
        "[accounts.dovecot]\n"
        f'host = "localhost"\nport = {dovecot.pop3s_port}\nca_file = "{dovecot.ca_file}"\n'
        'username = "alice"\npassword = "secret"\ntimeout = 1\n',
        scripted_table("scripted", start(good["scripted"])),
        scripted_table("trickle", start(mail("t", 2), trickle=("GREETING", 0.5))),
        scripted_table("garbage", start(mail("g", 2), garbage_reply_to="UIDL")),
        scripted_table("endless", start(mail("e", 2), endless_reply_to="UIDL")),
        scripted_table("nopassword", start(mail("n", 2)), password_file=f'"{tmp_path / "nope"}"'),
        scripted_table("wrongpw", start(mail("w", 2)), password='"not-the-password"'),
    ]
    config = tmp_path / "config.toml"
    config.write_text(
        f'[daemon]\ndata_dir = "{tmp_path / "data"}"\nlog_level = "info"\n'
        'log_format = "json"\ninterval = "1h"\n\n' + "\n".join(tables)
    )
    config.chmod(0o600)
    originals = {f"<{n}-{i}@t>": m for n, msgs in good.items() for i, m in enumerate(msgs)}
    return config, originals


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fetchd", "-c", str(config), *args],
        env=environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def stored(data_dir: Path, account: str) -> list[bytes]:
    new = data_dir / account / "Maildir" / "new"
    return sorted(p.read_bytes() for p in new.iterdir()) if new.exists() else []


def expected_mail(originals: dict[str, bytes], account: str) -> list[bytes]:
    mine = [m for mid, m in originals.items() if mid.startswith(f"<{account}-")]
    return sorted(m.replace(b"\r\n", b"\n") for m in mine)


def outcomes(config: Path) -> dict[str, dict[str, Any]]:
    status = cli(config, "status", "--json")
    assert status.returncode == 1, status.stderr  # the FAILED accounts' last polls failed
    return {entry["account"]: entry for entry in json.loads(status.stdout)["accounts"]}


@pytest.fixture
def setup(
    dovecot_alice: Dovecot, pop3_server: Start, tmp_path: Path
) -> tuple[Path, dict[str, bytes]]:
    return write_config(tmp_path, dovecot_alice, pop3_server)


def test_fetch_stores_the_good_accounts_and_names_each_failed_one(
    setup: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    config, originals = setup
    started = time.monotonic()
    done = cli(config, "fetch")
    elapsed = time.monotonic() - started
    assert elapsed < 60, f"the run took {elapsed:.1f} s"
    assert done.returncode == 1, done.stderr[-3000:]
    summary = [line for line in done.stderr.splitlines() if line.startswith("fetchd: ")]
    assert sorted(line.split(":")[1].strip() for line in summary) == sorted(FAILED)
    for name in GOOD:
        assert stored(tmp_path / "data", name) == expected_mail(originals, name), name
    for name in FAILED:
        assert stored(tmp_path / "data", name) == [], name

    status = outcomes(config)
    assert {name: entry["outcome"] for name, entry in status.items()} == EXPECTED
    for name in GOOD:
        assert status[name]["stored"] == len(expected_mail(originals, name))
        assert status[name]["error"] is None
    for name in FAILED:
        assert status[name]["error"]
        assert status[name]["failures"] == 1
    # A second pass fetches nothing again and fails the same way.
    again = cli(config, "fetch")
    assert again.returncode == 1
    for name in GOOD:
        assert stored(tmp_path / "data", name) == expected_mail(originals, name)


def test_one_daemon_cycle_does_the_same(
    setup: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    config, originals = setup
    daemon = DaemonProcess(config, environment())
    try:
        started = time.monotonic()
        for name in GOOD:
            daemon.wait_for_event("poll", name, timeout=60)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            kinds = {e.get("account"): e.get("kind") for e in daemon.events() if "kind" in e}
            if set(FAILED) <= set(kinds):
                break
            time.sleep(0.1)
        assert kinds == {name: EXPECTED[name] for name in FAILED}, daemon.log_text()
        assert time.monotonic() - started < 60, daemon.log_text()
        code, _ = daemon.stop()
    finally:
        daemon.kill()
    assert code == 0, daemon.log_text()
    for name in GOOD:
        assert stored(tmp_path / "data", name) == expected_mail(originals, name), name
    assert {name: entry["outcome"] for name, entry in outcomes(config).items()} == EXPECTED
