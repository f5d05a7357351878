"""The device flow's polling (RFC 8628 section 3.5) against our authorization server.

A ``Clock`` that records instead of sleeping keeps these fast; the server is real.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fetchd import oauth
from fetchd.config import OAuth2Config
from fetchd.errors import AuthError, ProtocolError
from fetchd.oauth._device import DEFAULT_INTERVAL, GRANT_TYPE, device_code
from fetchd.testing.oauth2 import OAuth2TestServer
from tests.oauth.conftest import CLIENT_ID, CLIENT_SECRET


class FakeClock(oauth.Clock):
    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []
        super().__init__(sleep=self._sleep, monotonic=lambda: self.now)

    def _sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def config(
    auth: OAuth2TestServer, tmp_path: Path, secret: str | None = CLIENT_SECRET
) -> OAuth2Config:
    return OAuth2Config.model_validate(
        dict(
            client_id=CLIENT_ID,
            client_secret=secret,
            token_url=auth.url("/token"),
            device_url=auth.url("/device"),
            scopes=("mail",),
            token_file=tmp_path / "oauth" / "work.json",
        )
    )


def run(auth: OAuth2TestServer, tmp_path: Path, clock: FakeClock) -> list[str]:
    said: list[str] = []
    oauth.login("work", config(auth, tmp_path), said.append, clock)
    return said


def test_polls_at_the_interval_and_slows_down_when_told(
    auth: OAuth2TestServer, tmp_path: Path
) -> None:
    auth.options.interval = 2
    auth.options.approve_after = 4
    auth.options.slow_down_at = frozenset({2, 3})
    clock = FakeClock()
    said = run(auth, tmp_path, clock)
    # Each slow_down adds 5 s for every later poll (RFC 8628 section 3.5).
    assert clock.waits == [2, 2, 7, 12, 12]
    assert said[0].startswith(f"open {auth.url('/activate')} and enter ")
    assert "user_code=" in said[1]


def test_an_unavailable_token_endpoint_is_asked_less_often_not_given_up(
    auth: OAuth2TestServer, tmp_path: Path
) -> None:
    auth.options.interval = 2
    auth.options.approve_after = 4
    auth.options.unavailable_at = frozenset({2, 3})
    clock = FakeClock()
    run(auth, tmp_path, clock)
    # Two HTTP 503s double the wait each time (RFC 8628 section 3.5); the login succeeds.
    assert clock.waits == [2, 2, 4, 8, 8]
    assert (tmp_path / "oauth" / "work.json").is_file()


@pytest.mark.parametrize(
    ("option", "message"),
    [("deny", "access was denied"), ("expired", "the code expired")],
)
def test_a_refusal_or_an_expired_code_ends_the_login(
    auth: OAuth2TestServer, tmp_path: Path, option: str, message: str
) -> None:
    setattr(auth.options, option, True)
    with pytest.raises(AuthError, match=message):
        run(auth, tmp_path, FakeClock())
    assert auth.count(GRANT_TYPE) == 3  # refused after the person's turn, not before


def test_fetchd_stops_polling_when_the_code_expires_by_its_own_clock(
    auth: OAuth2TestServer, tmp_path: Path
) -> None:
    auth.options.approve_after = 10**6
    auth.options.interval = 30
    auth.options.device_expires_in = 100
    clock = FakeClock()
    with pytest.raises(AuthError, match="the code expired before it was entered"):
        run(auth, tmp_path, clock)
    assert sum(clock.waits) <= 100 + 30
    assert len(clock.waits) == 4


def test_a_wrong_client_secret_is_refused_at_the_device_endpoint(
    auth: OAuth2TestServer, tmp_path: Path
) -> None:
    with pytest.raises(AuthError, match=r"device endpoint refused \(invalid_client\)") as caught:
        oauth.login("work", config(auth, tmp_path, "wrong-secret"), print, FakeClock())
    assert "wrong-secret" not in str(caught.value)


def test_the_device_answer_is_read_as_google_and_microsoft_send_it() -> None:
    google = device_code(
        {"device_code": "Dev-Canary-77", "user_code": "U", "verification_url": "https://g/"}, "u"
    )
    assert (google.verification_uri, google.interval) == ("https://g/", DEFAULT_INTERVAL)
    assert "Dev-Canary-77" not in repr(google)
    with pytest.raises(ProtocolError):
        device_code({"user_code": "U"}, "u")
