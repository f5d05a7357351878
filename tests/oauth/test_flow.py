"""OAuth2 end to end: ``fetchd oauth login``, then fetching from a real Dovecot.

The authorization server is ours (``fetchd.testing.oauth2``), the POP3 server
a private Dovecot that checks each token with it. Access tokens are longer
than 255 octets, so AUTH sends them on a continuation line.
"""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest

from fetchd import oauth
from fetchd.cli import EXIT_ACCOUNT_FAILED, EXIT_OK, EXIT_USAGE, main
from fetchd.config import load_config
from fetchd.daemon.policy import specs_for
from fetchd.daemon.service import grant_stamps
from fetchd.errors import AuthError, NetworkError
from fetchd.testing.dovecot import Dovecot
from fetchd.testing.oauth2 import OAuth2TestServer
from tests.messages import make_message
from tests.oauth.conftest import CLIENT_SECRET, Setup, write_config

REFRESH = "refresh_token"
DEVICE = "urn:ietf:params:oauth:grant-type:device_code"


def fetched(setup: Setup, account: str) -> list[Path]:
    return sorted((setup.data_dir / account).rglob("new/*"))


def log_in(setup: Setup, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["-c", str(setup.path), "oauth", "login", "work"]) == EXIT_OK
    return capsys.readouterr().out


@pytest.mark.parametrize("method", ["xoauth2", "oauthbearer"])
def test_login_then_fetch_with_the_token(
    tmp_path: Path,
    auth: OAuth2TestServer,
    mail: Dovecot,
    capsys: pytest.CaptureFixture[str],
    method: str,
) -> None:
    setup = write_config(tmp_path, auth, mail, method)
    auth.options.approve_after = 3
    out = log_in(setup, capsys)

    device = next(form for path, form in auth.requests if path == "/device")
    assert device["client_secret"] == CLIENT_SECRET
    assert device["scope"] == "mail"
    # The server was polled until the "person" approved: three pending, then the grant.
    assert auth.count(DEVICE) == 4
    first = out.splitlines()[0]
    assert first.startswith(f"open {auth.url('/activate')} and enter ")
    assert first.split()[-1].count("-") == 1  # the user code
    grant = json.loads(setup.token_file.read_text())
    assert grant["refresh_token"] in auth.refresh_tokens()
    assert stat.S_IMODE(setup.token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(setup.token_file.parent.stat().st_mode) == 0o700
    assert len(grant["access_token"]) > 255

    mail.deliver("alice", make_message("for alice"))
    mail.deliver("bob", make_message("for bob"))
    assert main(["-c", str(setup.path), "fetch"]) == EXIT_OK
    err = capsys.readouterr().err
    assert len(fetched(setup, "work")) == 1
    assert len(fetched(setup, "home")) == 1
    # The token went on its own line after "AUTH <mechanism>" (RFC 5034 section 4).
    assert f"AUTH {method.upper()}" in err
    assert f"AUTH {method.upper()} ***" not in err
    assert "(challenge)" in err
    assert "Logged in" in err
    assert grant["access_token"] not in err
    assert auth.count(REFRESH) == 0  # the token from the login was still good


def test_an_expired_token_is_refreshed_and_a_rotated_refresh_token_saved(
    tmp_path: Path, auth: OAuth2TestServer, mail: Dovecot, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_config(tmp_path, auth, mail)
    # Good for 2.5 s beyond fetchd's 60 s margin; the server refuses it after 62.5 s.
    auth.options.expires_in = int(oauth.REFRESH_MARGIN) + 3
    auth.options.rotate = True
    log_in(setup, capsys)
    first = json.loads(setup.token_file.read_text())

    mail.deliver("alice", make_message("one"))
    assert main(["-c", str(setup.path), "fetch", "work"]) == EXIT_OK
    assert auth.count(REFRESH) == 0

    time.sleep(3.2)
    mail.deliver("alice", make_message("two"))
    assert main(["-c", str(setup.path), "fetch", "work"]) == EXIT_OK, capsys.readouterr().err
    assert len(fetched(setup, "work")) == 2
    assert auth.count(REFRESH) == 1
    refresh = next(form for path, form in auth.requests if form.get("grant_type") == REFRESH)
    assert refresh["refresh_token"] == first["refresh_token"]
    assert refresh["client_secret"] == CLIENT_SECRET
    second = json.loads(setup.token_file.read_text())
    assert second["refresh_token"] != first["refresh_token"]
    assert auth.refresh_tokens() == {second["refresh_token"]}  # the old one is dead
    assert second["access_token"] != first["access_token"]
    assert second["expires_at"] > first["expires_at"]
    assert stat.S_IMODE(setup.token_file.stat().st_mode) == 0o600
    assert not [p for p in setup.token_file.parent.iterdir() if p.name.startswith(".")]


def test_a_revoked_grant_fails_that_account_only_and_says_how_to_log_in(
    tmp_path: Path, auth: OAuth2TestServer, mail: Dovecot, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_config(tmp_path, auth, mail)
    auth.options.expires_in = 0  # every login must refresh
    log_in(setup, capsys)
    auth.revoke_all()
    mail.deliver("alice", make_message("for alice"))
    mail.deliver("bob", make_message("for bob"))

    assert main(["-c", str(setup.path), "fetch"]) == EXIT_ACCOUNT_FAILED
    err = capsys.readouterr().err
    assert "run `fetchd oauth login work`" in err
    assert fetched(setup, "work") == []
    assert len(fetched(setup, "home")) == 1  # the other account was fetched

    account = load_config(setup.path).accounts["work"]
    assert account.oauth2 is not None
    with pytest.raises(AuthError, match=r"revoked or has expired") as caught:
        oauth.access_token("work", account.oauth2)
    assert caught.value.retry_later is False


def test_an_unreachable_token_endpoint_is_retried_later(
    tmp_path: Path, auth: OAuth2TestServer, mail: Dovecot, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_config(tmp_path, auth, mail)
    auth.options.expires_in = 0
    log_in(setup, capsys)
    text = setup.path.read_text().replace(auth.url("/token"), "http://127.0.0.1:9/token")
    setup.path.write_text(text)
    account = load_config(setup.path).accounts["work"]
    assert account.oauth2 is not None
    grant = json.loads(setup.token_file.read_text())
    grant["token_url"] = "http://127.0.0.1:9/token"
    setup.token_file.write_text(json.dumps(grant))
    with pytest.raises(NetworkError) as caught:
        oauth.access_token("work", account.oauth2)
    assert caught.value.retry_later is True
    assert grant["refresh_token"] not in str(caught.value)


def test_without_a_login_the_error_says_to_log_in(
    tmp_path: Path, auth: OAuth2TestServer, mail: Dovecot, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_config(tmp_path, auth, mail)
    assert main(["-c", str(setup.path), "fetch", "work"]) == EXIT_ACCOUNT_FAILED
    assert "no OAuth2 grant for this client" in capsys.readouterr().err
    assert main(["-c", str(setup.path), "check"]) == 1
    assert "run `fetchd oauth login work`" in capsys.readouterr().out
    assert main(["-c", str(setup.path), "oauth", "login", "home"]) == EXIT_USAGE
    assert "has no [accounts.home.oauth2] table" in capsys.readouterr().err


def test_a_token_the_server_does_not_know_is_refused_by_dovecot(
    tmp_path: Path, auth: OAuth2TestServer, mail: Dovecot, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Dovecot really checks tokens: an intact grant file with a made-up token fails."""
    setup = write_config(tmp_path, auth, mail)
    log_in(setup, capsys)
    grant = json.loads(setup.token_file.read_text())
    grant["access_token"] = "at.made-up"
    setup.token_file.write_text(json.dumps(grant))
    assert main(["-c", str(setup.path), "fetch", "work"]) == EXIT_ACCOUNT_FAILED
    assert "refused the login (XOAUTH2)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        '{"access_token": "a"}',
        json.dumps(
            {
                "access_token": "a", "refresh_token": "r", "expires_at": "soon",
                "obtained_at": 0, "token_url": "t", "client_id": "c", "scope": "",
            }
        ),
    ],
)  # fmt: skip
def test_a_damaged_grant_file_says_to_log_in_again(
    tmp_path: Path, auth: OAuth2TestServer, mail: Dovecot, content: str
) -> None:
    setup = write_config(tmp_path, auth, mail)
    setup.token_file.parent.mkdir(parents=True)
    setup.token_file.write_text(content)
    account = load_config(setup.path).accounts["work"]
    assert account.oauth2 is not None
    with pytest.raises(AuthError, match=r"is damaged; run `fetchd oauth login work`"):
        oauth.access_token("work", account.oauth2)


def test_a_new_login_makes_a_reload_poll_the_account_at_once(
    tmp_path: Path, auth: OAuth2TestServer, mail: Dovecot, capsys: pytest.CaptureFixture[str]
) -> None:
    """A refused login is retried hourly; a new grant counts as a change, as an edit would.
    A refresh, which rewrites the grant file, does not: a reload polls on schedule."""
    setup = write_config(tmp_path, auth, mail)
    auth.options.expires_in = 0  # every use refreshes the token and saves the grant anew
    config = load_config(setup.path)
    before = specs_for(config, grant_stamps(config))
    log_in(setup, capsys)
    after = specs_for(config, grant_stamps(config))
    assert before["work"] != after["work"]
    assert before["home"] == after["home"]
    assert specs_for(config, grant_stamps(config)) == after
    saved = setup.token_file.read_text()
    oauth2 = config.accounts["work"].oauth2
    assert oauth2 is not None
    oauth.access_token("work", oauth2)
    assert setup.token_file.read_text() != saved  # refreshed, rotated, written again
    assert specs_for(config, grant_stamps(config)) == after
    log_in(setup, capsys)
    assert specs_for(config, grant_stamps(config))["work"] != after["work"]


def test_a_grant_saved_before_logins_were_stamped_still_serves(
    tmp_path: Path, auth: OAuth2TestServer, mail: Dovecot, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_config(tmp_path, auth, mail)
    log_in(setup, capsys)
    older = json.loads(setup.token_file.read_text())
    del older["logged_in_at"]
    setup.token_file.write_text(json.dumps(older))
    mail.deliver("alice", make_message("one"))
    assert main(["-c", str(setup.path), "fetch", "work"]) == EXIT_OK, capsys.readouterr().err
    assert len(fetched(setup, "work")) == 1
