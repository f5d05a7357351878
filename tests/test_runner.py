"""The runner's log of a poll: warnings, why it logged in again, one summary."""

from __future__ import annotations

from structlog.testing import capture_logs

from fetchd.log import get_logger
from fetchd.poll import PollResult
from fetchd.runner import log_result


def test_each_further_session_is_logged_with_its_reason() -> None:
    result = PollResult("work", stored=5, sessions=2, session_reasons=["a slice, perhaps"])
    with capture_logs() as events:
        log_result(get_logger(account="work"), result)
    assert [e["event"] for e in events] == ["poll session", "poll"]
    assert (events[0]["session"], events[0]["reason"]) == (2, "a slice, perhaps")
