"""Fixtures for OAuth2: our authorization server, and a Dovecot that trusts it.

The Dovecot here checks XOAUTH2 and OAUTHBEARER tokens by asking the test
server's introspection endpoint, so a token fetchd got from that server logs
in to a real POP3 server, and a revoked or expired one does not.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fetchd.testing.dovecot import Dovecot
from fetchd.testing.oauth2 import AuthServerOptions, OAuth2TestServer
from tests.conftest import DOVECOT_USERS

CLIENT_ID = "fetchd-test-client"
CLIENT_SECRET = "Client-secret-Canary-4kQ"


@pytest.fixture(scope="module")
def auth_server() -> Iterator[OAuth2TestServer]:
    with OAuth2TestServer() as server:
        yield server


@pytest.fixture(scope="module")
def oauth_dovecot(auth_server: OAuth2TestServer) -> Iterator[Dovecot]:
    """A private Dovecot (alice, bob) whose oauth2 passdb asks ``auth_server``."""
    root = Path(tempfile.mkdtemp(prefix="fetchd-oauth-dovecot-"))
    try:
        url = auth_server.url("/introspect")
        with Dovecot(root, users=DOVECOT_USERS, oauth2_introspection_url=url) as server:
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)


def reset(server: OAuth2TestServer) -> OAuth2TestServer:
    """``server`` with default options, no grants and no requests recorded."""
    server.options = AuthServerOptions(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    server.revoke_all()
    with server.lock:
        server.requests.clear()
        server.issued.clear()
    return server


@pytest.fixture
def auth(auth_server: OAuth2TestServer) -> OAuth2TestServer:
    """The module's authorization server with default options and no grants."""
    return reset(auth_server)


@pytest.fixture
def mail(oauth_dovecot: Dovecot) -> Dovecot:
    """The Dovecot with empty mailboxes."""
    for user, _ in DOVECOT_USERS:
        oauth_dovecot.reset(user)
    return oauth_dovecot


@dataclass
class Setup:
    """A config with an OAuth2 account ``work`` (alice) and a password account ``home`` (bob)."""

    path: Path
    data_dir: Path

    @property
    def token_file(self) -> Path:
        return self.data_dir / "oauth" / "work.json"


def write_config(
    tmp_path: Path, auth: OAuth2TestServer, dovecot: Dovecot, method: str = "xoauth2"
) -> Setup:
    secret_file = tmp_path / "client-secret"
    secret_file.write_text(CLIENT_SECRET + "\n")
    data_dir = tmp_path / "data"
    path = tmp_path / "config.toml"
    path.write_text(
        f'[daemon]\ndata_dir = "{data_dir}"\nlog_level = "debug"\ntranscript = true\n\n'
        f'[accounts.work]\nhost = "127.0.0.1"\nport = {dovecot.pop3s_port}\n'
        f'ca_file = "{dovecot.ca_file}"\nusername = "alice"\nauth = "{method}"\ntimeout = 10\n\n'
        f'[accounts.work.oauth2]\nclient_id = "{CLIENT_ID}"\n'
        f'client_secret_file = "{secret_file}"\n'
        f'token_url = "{auth.url("/token")}"\ndevice_url = "{auth.url("/device")}"\n'
        f'authorize_url = "{auth.url("/authorize")}"\n'
        f'scopes = ["mail"]\n\n'
        f'[accounts.home]\nhost = "127.0.0.1"\nport = {dovecot.pop3s_port}\n'
        f'ca_file = "{dovecot.ca_file}"\nusername = "bob"\npassword = "secret2"\ntimeout = 10\n'
    )
    path.chmod(0o600)
    return Setup(path, data_dir)
