"""Tests for fetchd.log: JSON lines, console rendering, level filtering, reconfiguration."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.contextvars import bound_contextvars
from structlog.testing import capture_logs

from fetchd.log import configure_logging, get_logger


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_is_one_object_per_line_with_event_level_timestamp() -> None:
    out = io.StringIO()
    configure_logging("info", "json", out)
    log = get_logger(account="work")
    log.info("poll.start")
    log.warning("poll.done", fetched=3, path=Path("/srv/mail"))
    events = json_lines(out)
    assert [e["event"] for e in events] == ["poll.start", "poll.done"]
    assert [e["level"] for e in events] == ["info", "warning"]
    assert all(e["account"] == "work" for e in events)
    assert (events[1]["fetched"], events[1]["path"]) == (3, "/srv/mail")
    assert list(events[1])[:3] == ["timestamp", "level", "event"]


def test_timestamp_is_iso_utc_and_current() -> None:
    out = io.StringIO()
    configure_logging("info", "json", out)
    get_logger().info("tick")
    stamp = json_lines(out)[0]["timestamp"]
    assert stamp.endswith("Z")
    when = datetime.fromisoformat(stamp)
    assert when.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - when) < timedelta(minutes=1)


def test_json_renders_exceptions() -> None:
    out = io.StringIO()
    configure_logging("info", "json", out)
    try:
        raise RuntimeError("disk on fire")
    except RuntimeError:
        get_logger().exception("store.failed")
    (event,) = json_lines(out)
    assert event["level"] == "error"
    assert "Traceback" in event["exception"]
    assert "RuntimeError: disk on fire" in event["exception"]


def test_console_mode_renders_for_people() -> None:
    out = io.StringIO()
    configure_logging("info", "console", out)
    get_logger(account="work").info("poll.done", fetched=3)
    text = out.getvalue()
    assert text.count("\n") == 1
    assert "poll.done" in text
    assert "fetched=3" in text
    assert "account=work" in text
    assert "info" in text
    assert "\x1b[" not in text  # no colour codes when the stream is not a terminal
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_console_mode_renders_exceptions() -> None:
    out = io.StringIO()
    configure_logging("info", "console", out)
    try:
        raise RuntimeError("disk on fire")
    except RuntimeError:
        get_logger().exception("store.failed")
    assert "RuntimeError: disk on fire" in out.getvalue()


def test_auto_is_json_when_not_a_terminal() -> None:
    out = io.StringIO()
    configure_logging("info", "auto", out)
    get_logger().info("hello")
    assert json_lines(out)[0]["event"] == "hello"


def test_auto_is_console_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    out = FakeTerminal()
    configure_logging("info", "auto", out)
    get_logger().info("hello", n=1)
    text = out.getvalue()
    assert "hello" in text
    assert "n=1" in text
    assert not text.startswith("{")


@pytest.mark.parametrize(
    ("level", "shown"),
    [
        ("debug", ["d", "i", "w", "e"]),
        ("info", ["i", "w", "e"]),
        ("warning", ["w", "e"]),
        ("error", ["e"]),
        ("WARNING", ["w", "e"]),
    ],
)
def test_level_filtering(level: str, shown: list[str]) -> None:
    out = io.StringIO()
    configure_logging(level, "json", out)
    log = get_logger()
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    assert [e["event"] for e in json_lines(out)] == shown


def test_reconfiguring_changes_stream_level_and_format() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", "json", first)
    log = get_logger()
    log.info("early")
    configure_logging("debug", "console", second)
    log.debug("late")  # the same logger object follows the new configuration
    assert [e["event"] for e in json_lines(first)] == ["early"]
    assert "late" in second.getvalue()
    assert "early" not in second.getvalue()


def test_default_stream_is_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    get_logger().info("to.stderr")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert json.loads(captured.err)["event"] == "to.stderr"


def test_context_variables_are_merged() -> None:
    out = io.StringIO()
    configure_logging("info", "json", out)
    with bound_contextvars(account="home"):
        get_logger().info("inside")
    get_logger().info("outside")
    inside, outside = json_lines(out)
    assert inside["account"] == "home"
    assert "account" not in outside


def test_capture_logs_sees_events_from_get_logger() -> None:
    configure_logging("info", "json", io.StringIO())
    with capture_logs() as events:
        get_logger(account="work").info("poll.done", fetched=2)
    assert events == [{"account": "work", "fetched": 2, "event": "poll.done", "log_level": "info"}]


@pytest.mark.parametrize(("level", "fmt"), [("verbose", "json"), ("info", "xml")])
def test_unknown_level_or_format_is_refused(level: str, fmt: str) -> None:
    with pytest.raises(ValueError, match="unknown log"):
        configure_logging(level, fmt, io.StringIO())


@pytest.mark.parametrize(
    ("environment", "coloured"),
    [
        ({"TERM": "xterm-256color"}, True),
        ({"TERM": "xterm-256color", "NO_COLOR": "1"}, False),
        ({"TERM": "xterm-256color", "NO_COLOR": ""}, True),  # no-color.org: empty is unset
        ({"TERM": "dumb"}, False),
    ],
)
def test_console_on_a_terminal_is_coloured_unless_asked_not_to(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], coloured: bool
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    out = FakeTerminal()
    configure_logging("info", "auto", out)
    get_logger().warning("hello", n=1)
    assert ("\x1b[" in out.getvalue()) is coloured


def test_console_columns_line_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    out = FakeTerminal()
    configure_logging("debug", "auto", out)
    log = get_logger()
    log.info("poll", n=1)
    log.warning("poll warning", n=2)
    log.debug("a much longer event name than the others", n=3)
    lines = [line.split("Z ", 1)[1] for line in out.getvalue().splitlines()]
    assert [line[:11] for line in lines] == ["[info     ]", "[warning  ]", "[debug    ]"]
    assert lines[0].index("n=1") == lines[1].index("n=2")  # events padded to one width
    assert "n=3" in lines[2]
