"""``fetchd oauth login --browser``: the loopback flow with PKCE (RFC 8252, RFC 7636).

The "browser" here follows the printed address with urllib: our authorization
server approves at once and redirects to fetchd's loopback listener.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from fetchd import oauth
from fetchd.cli import EXIT_OK, main
from fetchd.config import load_config
from fetchd.errors import AuthError
from fetchd.oauth._loopback import authorize
from fetchd.testing.dovecot import Dovecot
from fetchd.testing.oauth2 import OAuth2TestServer
from tests.messages import make_message
from tests.oauth.conftest import write_config


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def browser(change: Callable[[str], str] = lambda url: url) -> Callable[[str], None]:
    """A ``say`` that opens the address it is told, in a thread, as a person would.

    ``change`` may alter the redirect back to fetchd before it is followed.
    """

    def say(line: str) -> None:
        if line.startswith("open "):
            threading.Thread(target=visit, args=(line.split()[1],), daemon=True).start()

    def visit(url: str) -> None:
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            opener.open(url)
        except urllib.error.HTTPError as exc:  # the 302, not followed
            location = exc.headers["Location"]
            with urllib.request.urlopen(change(location)) as page:  # noqa: S310
                page.read()

    return say


def test_the_browser_flow_stores_a_grant_that_logs_in(
    tmp_path: Path, auth: OAuth2TestServer, mail: Dovecot, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_config(tmp_path, auth, mail)
    account = load_config(setup.path).accounts["work"]
    assert account.oauth2 is not None
    oauth.login("work", account.oauth2, browser(), browser=True)

    query = next(form for path, form in auth.requests if path == "/authorize")
    assert query["code_challenge_method"] == "S256"
    assert query["redirect_uri"].startswith("http://127.0.0.1:")
    exchange = next(form for path, form in auth.requests if path == "/token")
    assert exchange["grant_type"] == "authorization_code"
    assert exchange["code_verifier"] not in json.dumps(query)  # only its hash went out
    grant = json.loads(setup.token_file.read_text())
    assert grant["refresh_token"] in auth.refresh_tokens()

    mail.deliver("alice", make_message("for alice"))
    assert main(["-c", str(setup.path), "fetch", "work"]) == EXIT_OK, capsys.readouterr().err
    assert len(list((setup.data_dir / "work").rglob("new/*"))) == 1


def test_a_refusal_in_the_browser_ends_the_login(
    tmp_path: Path, auth: OAuth2TestServer, mail: Dovecot
) -> None:
    auth.options.deny = True
    account = load_config(write_config(tmp_path, auth, mail).path).accounts["work"]
    assert account.oauth2 is not None
    with pytest.raises(AuthError, match=r"access was not granted \(access_denied\)"):
        oauth.login("work", account.oauth2, browser(), browser=True)


def test_a_redirect_with_another_state_is_refused(
    tmp_path: Path, auth: OAuth2TestServer, mail: Dovecot
) -> None:
    def forge(url: str) -> str:
        parts = urllib.parse.urlsplit(url)
        query = dict(urllib.parse.parse_qsl(parts.query)) | {"state": "forged"}
        return parts._replace(query=urllib.parse.urlencode(query)).geturl()

    account = load_config(write_config(tmp_path, auth, mail).path).accounts["work"]
    assert account.oauth2 is not None
    with pytest.raises(AuthError, match="wrong state"):
        oauth.login("work", account.oauth2, browser(forge), browser=True)
    assert not [form for path, form in auth.requests if path == "/token"]


def test_the_command_prints_the_address_and_waits_for_the_browser(
    tmp_path: Path, auth: OAuth2TestServer, mail: Dovecot
) -> None:
    setup = write_config(tmp_path, auth, mail)
    process = subprocess.Popen(
        [sys.executable, "-m", "fetchd", "-c", str(setup.path), "oauth", "login", "work",
         "--browser"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith(f"open {auth.url('/authorize')}?")
        browser()(first.strip())
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
        process.communicate()
    assert process.returncode == 0, err
    assert "logged in" in out
    assert setup.token_file.exists()


def test_without_an_answer_from_the_browser_the_login_gives_up(
    tmp_path: Path, auth: OAuth2TestServer, mail: Dovecot
) -> None:
    account = load_config(write_config(tmp_path, auth, mail).path).accounts["work"]
    assert account.oauth2 is not None
    said: list[str] = []
    before = threading.active_count()
    with pytest.raises(AuthError, match=r"no answer from the browser within 0\.3 s"):
        authorize("work", account.oauth2, said.append, wait=0.3)
    assert said[0].startswith("open ")
    assert threading.active_count() == before  # the listener stopped
    port = urllib.parse.parse_qs(urllib.parse.urlsplit(said[0]).query)["redirect_uri"][0]
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(port + "?code=late&state=x", timeout=2)  # noqa: S310
