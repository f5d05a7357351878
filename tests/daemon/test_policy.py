"""The daemon's pure policy: backoff, failure kinds, cron weekdays, one job per account."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fetchd import errors
from fetchd.config import load_config
from fetchd.daemon.policy import (
    BACKOFF_CAP,
    _cron_weekdays,
    backoff_delay,
    cron_trigger,
    specs_for,
)
from fetchd.runner import outcome_of

intervals = st.floats(min_value=0.001, max_value=7 * 86400)
streaks = st.integers(min_value=0, max_value=10_000)


@given(intervals, streaks)
def test_backoff_never_polls_sooner_than_the_interval_nor_later_than_the_cap(
    interval: float, failures: int
) -> None:
    delay = backoff_delay(interval, failures)
    assert interval <= delay <= max(interval, BACKOFF_CAP)


@given(intervals, streaks)
def test_backoff_grows_with_the_streak(interval: float, failures: int) -> None:
    assert backoff_delay(interval, failures) <= backoff_delay(interval, failures + 1)


@given(intervals, streaks)
def test_a_permanent_failure_waits_for_the_cap(interval: float, failures: int) -> None:
    expected = interval if failures == 0 else max(interval, BACKOFF_CAP)
    assert backoff_delay(interval, failures, permanent=True) == expected


def test_backoff_doubles_from_the_interval() -> None:
    assert [backoff_delay(300, n) for n in range(6)] == [300, 600, 1200, 2400, 3600, 3600]


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (errors.AuthError("no"), "auth"),
        (errors.ServerBusyError("later", code="LOGIN-DELAY"), "busy"),
        (errors.AccountLockedError("held"), "locked"),
        (errors.TLSError("bad cert"), "tls"),
        (errors.NetworkTimeout("silent"), "network"),
        (errors.ServerError("-ERR"), "server"),
        (errors.ProtocolError("garbage"), "protocol"),
        (errors.ConfigError("no password"), "config"),
        (errors.StorageError("disk full"), "storage"),
        (errors.UsageError("no APOP"), "usage"),
        (ValueError("bug"), "bug"),
    ],
)
def test_failure_kinds(error: Exception, kind: str) -> None:
    assert outcome_of(error) == kind


@pytest.mark.parametrize(
    ("field", "names"),
    [
        ("1-5", "mon,tue,wed,thu,fri"),
        ("0", "sun"),
        ("7", "sun"),
        ("0,6", "sun,sat"),
        ("*/2", "sun,tue,thu,sat"),
        ("mon-fri", "mon-fri"),
        ("5-7", "fri,sat,sun"),
    ],
)
def test_cron_weekday_numbers_count_from_sunday(field: str, names: str) -> None:
    assert _cron_weekdays(field) == names


def test_a_weekday_schedule_fires_on_weekdays_only() -> None:
    trigger = cron_trigger("30 8 * * 1-5")
    moment = datetime(2024, 1, 5, 9, 0).astimezone()  # a Friday, after 08:30
    fires = []
    for _ in range(5):
        moment = trigger.get_next_fire_time(None, moment + timedelta(seconds=1))
        fires.append(moment.strftime("%a %H:%M"))
    assert fires == ["Mon 08:30", "Tue 08:30", "Wed 08:30", "Thu 08:30", "Fri 08:30"]


def test_one_job_per_enabled_account_with_its_own_interval(tmp_path: Path) -> None:
    config_path = tmp_path / "config.toml"
    config_path.write_text(
        """
[daemon]
interval = "5m"
jitter = "10s"
[accounts.a]
host = "pop.example.com"
username = "a"
password_env = "A"
[accounts.b]
host = "pop.example.com"
username = "b"
password_env = "B"
interval = "1m"
[accounts.c]
host = "pop.example.com"
username = "c"
password_env = "C"
schedule = "*/10 * * * *"
[accounts.off]
host = "pop.example.com"
username = "off"
password_env = "OFF"
enabled = false
"""
    )
    specs = specs_for(load_config(config_path))
    assert sorted(specs) == ["a", "b", "c"]
    assert (specs["a"].interval, specs["b"].interval, specs["c"].interval) == (300, 60, 300)
    assert {spec.jitter for spec in specs.values()} == {10}
    assert type(specs["c"].trigger()).__name__ == "CronTrigger"
    assert specs["b"].trigger().interval == timedelta(minutes=1)
