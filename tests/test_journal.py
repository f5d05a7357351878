"""fetchd under journald: each stderr line starts with its syslog priority.

systemd names the stream it gave a service in ``$JOURNAL_STREAM`` (device:inode).
These tests run fetchd with stderr on a file and that variable set to the
file's device and inode, then read the file as journald would: a leading
``<N>`` is the line's priority, and a line without one is logged at info (6).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest
import structlog

from fetchd import journal
from fetchd.log import configure_logging, get_logger
from fetchd.testing.dovecot import Dovecot
from tests.messages import make_message

ROOT = Path(__file__).resolve().parent.parent
_PREFIX = re.compile(r"<([0-7])>(.*)")
_ANSI = "\x1b["
#: The summary event of one poll of alice, as a journal line.
_SUMMARY = re.compile(r"\[info     \] poll {27}account=alice ")


def journald(text: str) -> list[tuple[int, str]]:
    """``text`` as journald reads it: (priority, message) per line."""
    entries = []
    for line in text.splitlines():
        match = _PREFIX.fullmatch(line)
        entries.append((int(match[1]), match[2]) if match else (6, line))
    return entries


def prefixes(text: str) -> list[str | None]:
    """The priority prefix of each line, None where a line has none."""
    return [m[1] if (m := _PREFIX.fullmatch(line)) else None for line in text.splitlines()]


def stream_id(stream: TextIO) -> str:
    """What systemd puts in $JOURNAL_STREAM for a stream: its device and inode."""
    stat = os.fstat(stream.fileno())
    return f"{stat.st_dev}:{stat.st_ino}"


def fetchd(tmp_path: Path, *args: str, journal_stream: str | None = "match") -> tuple[int, str]:
    """Run ``python3 -m fetchd ARGS`` with stderr on a file; its exit code and that file.

    ``journal_stream``: "match" sets $JOURNAL_STREAM to the file's device and
    inode, None leaves it unset, anything else is set as it is.
    """
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    env["PYTHONPATH"] = str(ROOT)
    err = tmp_path / "stderr"
    with err.open("w") as stderr:
        if journal_stream is not None:
            env["JOURNAL_STREAM"] = (
                stream_id(stderr) if journal_stream == "match" else journal_stream
            )
        done = subprocess.run(
            [sys.executable, "-m", "fetchd", *args],
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            timeout=60,
            check=False,
        )
    return done.returncode, err.read_text()


def write_config(tmp_path: Path, dovecot: Dovecot, *, extra: str = "") -> Path:
    """alice on the test Dovecot, and "down" on a port nobody listens on."""
    config = tmp_path / "config.toml"
    config.write_text(
        f"""\
[daemon]
data_dir = "{tmp_path / "data"}"
{extra}
[accounts.alice]
host = "127.0.0.1"
port = {dovecot.pop3_port}
security = "plain"
username = "alice"
password = "secret"

[accounts.down]
host = "127.0.0.1"
port = 1
security = "plain"
username = "alice"
password = "secret"
timeout = 5
"""
    )
    config.chmod(0o600)
    return config


@pytest.fixture
def config(dovecot_alice: Dovecot, tmp_path: Path) -> Path:
    dovecot_alice.deliver("alice", make_message("for the journal"))
    return write_config(tmp_path, dovecot_alice)


# -- what journald gets from a real run ------------------------------------------


def test_a_failed_fetch_is_logged_as_errors_and_a_poll_as_info(
    config: Path, tmp_path: Path
) -> None:
    code, err = fetchd(tmp_path, "-c", str(config), "fetch")
    assert code == 1
    entries = journald(err)
    assert None not in prefixes(err), err  # every line carries its priority
    errors = [text for priority, text in entries if priority == 3]
    assert any("poll failed" in text and "account=down" in text for text in errors), err
    assert any(text.startswith("fetchd: down: cannot connect to 127.0.0.1:1") for text in errors)
    assert all("down" in text for text in errors)  # alice's poll is no error
    [poll] = [text for priority, text in entries if _SUMMARY.match(text)]
    assert "stored=1" in poll
    assert (6, poll) in entries


@pytest.mark.parametrize("journal_stream", ["match", None])
def test_what_a_password_command_says_on_stderr_is_a_warning(
    dovecot_alice: Dovecot, tmp_path: Path, journal_stream: str | None
) -> None:
    dovecot_alice.deliver("alice", make_message("for the journal"))
    config = tmp_path / "config.toml"
    config.write_text(
        f'''[daemon]\ndata_dir = "{tmp_path / "data"}"\n
[accounts.alice]
host = "127.0.0.1"
port = {dovecot_alice.pop3_port}
security = "plain"
username = "alice"
password_command = "sh -c 'echo keyring unlocked >&2; echo two lines >&2; echo secret'"
'''
    )
    config.chmod(0o600)
    code, err = fetchd(tmp_path, "-c", str(config), "fetch", journal_stream=journal_stream)
    assert code == 0, err
    if journal_stream is None:  # not journald: passed through as it is
        assert "keyring unlocked\ntwo lines\n" in err
        return
    assert None not in prefixes(err), err
    assert (4, "keyring unlocked") in journald(err)
    assert (4, "two lines") in journald(err)
    assert "secret" not in err


def test_a_journal_line_is_plain_text_without_timestamp_or_colour(
    config: Path, tmp_path: Path
) -> None:
    _, err = fetchd(tmp_path, "-c", str(config), "fetch", "alice")
    # The level column, then the event, padded: as on a terminal.
    [priority] = [p for p, t in journald(err) if _SUMMARY.match(t)]
    assert priority == 6
    assert _ANSI not in err
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", err)  # journald stamps it itself


def test_a_config_error_is_an_error_on_every_line(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[accounts.x]\nhost = "h"\nusername = "u"\npassword_env = "P"\nport = 0\n')
    code, err = fetchd(tmp_path, "-c", str(config), "fetch")
    assert code == 78
    assert len(err.splitlines()) > 1  # the intro, then the problems
    assert set(prefixes(err)) == {"3"}, err
    assert "<3>fetchd: configuration error:" in err.splitlines()
    assert any("accounts.x.port" in text for _, text in journald(err))


def test_json_when_asked_for_keeps_its_timestamp_and_is_prefixed(
    dovecot_alice: Dovecot, tmp_path: Path
) -> None:
    config = write_config(tmp_path, dovecot_alice, extra='log_format = "json"\n')
    code, err = fetchd(tmp_path, "-c", str(config), "fetch")
    assert code == 1
    events = [(priority, json.loads(text)) for priority, text in journald(err) if "{" in text[:1]]
    by_event = {(e["event"], e.get("account")): priority for priority, e in events}
    assert by_event[("poll failed", "down")] == 3
    assert by_event[("poll", "alice")] == 6
    assert all("timestamp" in e for _, e in events)
    assert "<3>fetchd: down: cannot connect to 127.0.0.1:1: Connection refused" in err


@pytest.mark.parametrize("value", ["1:2", "", "garbage", "other file"])
def test_no_prefix_unless_stderr_is_the_named_stream(
    config: Path, tmp_path: Path, value: str
) -> None:
    # An inherited variable that names some other stream: stderr was redirected.
    if value == "other file":
        with (tmp_path / "elsewhere").open("w") as other:
            value = stream_id(other)
    code, err = fetchd(tmp_path, "-c", str(config), "fetch", journal_stream=value)
    assert code == 1
    assert set(prefixes(err)) == {None}, err
    assert json.loads(err.splitlines()[0])["level"] in (
        "info",
        "error",
    )  # auto: JSON off a terminal
    assert "fetchd: down: cannot connect to 127.0.0.1:1: Connection refused" in err.splitlines()


def test_status_errors_are_prefixed_too(tmp_path: Path) -> None:
    code, err = fetchd(tmp_path, "-c", str(tmp_path / "missing.toml"), "status")
    assert code == 78
    assert set(prefixes(err)) == {"3"}, err


# -- the pieces, in process ------------------------------------------------------


@pytest.fixture
def journal_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TextIO]:
    """A file that $JOURNAL_STREAM names, as systemd names a service's stderr."""
    with (tmp_path / "journal").open("w+") as stream:
        monkeypatch.setenv("JOURNAL_STREAM", stream_id(stream))
        yield stream
    structlog.reset_defaults()


def written(stream: TextIO) -> str:
    stream.flush()
    stream.seek(0)
    return stream.read()


def test_each_level_has_its_priority(journal_file: TextIO) -> None:
    configure_logging("debug", "auto", journal_file)
    log = get_logger()
    for level in ("debug", "info", "warning", "error", "critical"):
        getattr(log, level)(f"at {level}")
    entries = journald(written(journal_file))
    assert [(p, t.split("] ", 1)[1].strip()) for p, t in entries] == [
        (7, "at debug"),
        (6, "at info"),
        (4, "at warning"),
        (3, "at error"),
        (3, "at critical"),
    ]


def test_a_traceback_is_an_error_on_every_line(journal_file: TextIO) -> None:
    configure_logging("info", "console", journal_file)
    try:
        raise RuntimeError("disk on fire")
    except RuntimeError:
        get_logger().exception("store failed", path="a\nb")
    text = written(journal_file)
    assert "Traceback (most recent call last):" in text
    assert set(prefixes(text)) == {"3"}, text
    assert "<3>RuntimeError: disk on fire" in text.splitlines()


def test_the_command_lines_own_messages(journal_file: TextIO, tmp_path: Path) -> None:
    journal.write("fetchd: one\ntwo", stream=journal_file)
    journal.write("just saying", "info", stream=journal_file)
    assert written(journal_file).splitlines() == ["<3>fetchd: one", "<3>two", "<6>just saying"]
    with (tmp_path / "plain").open("w+") as plain:  # not the journal's stream
        journal.write("fetchd: one", stream=plain)
        assert written(plain) == "fetchd: one\n"


def test_connected_only_to_the_named_stream(
    journal_file: TextIO, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert journal.connected(journal_file)
    with (tmp_path / "other").open("w") as other:
        assert not journal.connected(other)
    monkeypatch.setenv("JOURNAL_STREAM", "x:y")
    assert not journal.connected(journal_file)
    monkeypatch.delenv("JOURNAL_STREAM")
    assert not journal.connected(journal_file)
