"""Canary secrets: whatever fetchd prints or stores never holds the password or token.

Every auth method is tried with the password from every source, through the real
CLI (``fetch``, ``check --connect``, ``shell``) with the POP3 transcript on and
debug logging, in both log formats, with the right and with a wrong password.
The configured secret is always the canary; for a refused login the server
simply expects something else, so the canary still crosses the wire. Forbidden
are the canary itself and every form the client sent it in: the SASL payloads
(base64) and the APOP digest, taken from what the server received.
"""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fetchd.config import AccountConfig
from fetchd.errors import AuthError, FetchdError
from fetchd.log import configure_logging, get_logger
from fetchd.oauth import REFRESH_MARGIN
from fetchd.pop3 import auth, replies
from fetchd.runner import run_account
from fetchd.session import login
from fetchd.store.state import State
from fetchd.testing.dovecot import Dovecot
from fetchd.testing.oauth2 import OAuth2TestServer
from fetchd.testing.server import Mailbox, POP3TestServer, ServerOptions
from tests.messages import make_message
from tests.oauth.conftest import CLIENT_SECRET, auth_server, mail, oauth_dovecot, reset
from tests.oauth.conftest import write_config as write_oauth_config

# The OAuth2 fixtures, used by the token canary test at the end.
__all__ = ["auth_server", "mail", "oauth_dovecot"]

Start = Callable[..., POP3TestServer]

PASSWORD = "Canary-pw-7f3a9Qz"  # the canary the test looks for
TOKEN = "ya29.Canary-token-5b1dXk"
SERVER_PASSWORD_WHEN_WRONG = "not-the-canary"
USER = "alice"

METHODS = ("user", "apop", "plain", "login", "xoauth2", "oauthbearer")
SOURCES = ("password", "password_file", "password_env", "password_command", "password_credential")
ALL_MECHANISMS = ("PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER")


def secret_for(method: str) -> str:
    return TOKEN if method in ("xoauth2", "oauthbearer") else PASSWORD


def account_name(method: str, source: str) -> str:
    return f"{method}-{source.removeprefix('password').strip('_') or 'inline'}"


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def sent_forms(method: str, port: int) -> set[bytes]:
    """The canary and the encodings a client sends it in for ``method``."""
    secret = secret_for(method)
    forms = {secret.encode(), b64(secret.encode())}
    exchange = (
        auth.sasl_exchange(method, USER, secret, "127.0.0.1", port)
        if (method in auth.SASL_METHODS)
        else None
    )
    if exchange is not None:
        sent = (exchange.initial, *exchange.responses)
        forms.update(r.encode() for r in sent if r and r not in ("AQ==", auth.b64(USER)))
    return forms


_VERBS = frozenset({"USER", "AUTH", "CAPA", "STAT", "LIST", "UIDL", "RETR", "QUIT"})


def wire_secrets(server: POP3TestServer) -> set[bytes]:
    """What the client sent that carries the secret: PASS, APOP digest, SASL lines."""
    found: set[bytes] = set()
    for side, line in server.transcript:
        if side != "C":
            continue
        words = line.split(" ")
        verb = words[0].upper()
        if verb in ("PASS", "APOP") and len(words) > 1:
            found.add(words[-1].encode())
        elif verb == "AUTH" and len(words) > 2:
            found.add(words[2].encode())
        elif verb not in _VERBS and line not in ("", "*", "=", "AQ==", auth.b64(USER)):
            # A SASL response to a challenge; the username and the empty answers are no secret.
            found.add(line.encode())
    return found


class Accounts:
    """One scriptable server per (method, source), and the config naming them all."""

    def __init__(self, start: Start, tmp_path: Path, *, right: bool, fmt: str) -> None:
        self.root = tmp_path
        self.data_dir = tmp_path / "data"
        self.servers: dict[str, tuple[str, POP3TestServer]] = {}
        secrets_dir = tmp_path / "secrets"
        secrets_dir.mkdir()
        self.env = {**os.environ, "PYTHONPATH": os.getcwd(), "NO_COLOR": "1"}
        self.env["CREDENTIALS_DIRECTORY"] = str(secrets_dir)
        tables = []
        for method in METHODS:
            secret = secret_for(method)
            (secrets_dir / f"{method}.txt").write_text(secret + "\n")
            self.env[f"FETCHD_CANARY_{method.upper()}"] = secret
            for source in SOURCES:
                name = account_name(method, source)
                options = ServerOptions(
                    user=USER,
                    password=secret if right else SERVER_PASSWORD_WHEN_WRONG,
                    apop=method == "apop",
                    sasl=ALL_MECHANISMS,
                )
                mail = [make_message(f"hello from {name}", "nothing secret here\n")]
                server = start(Mailbox(mail), options)
                self.servers[name] = (method, server)
                tables.append(self._table(name, method, source, server.port, secrets_dir))
        self.config = tmp_path / "config.toml"
        self.config.write_text(
            f'[daemon]\ndata_dir = "{self.data_dir}"\nlog_level = "debug"\n'
            f'log_format = "{fmt}"\ntranscript = true\nmax_parallel = 8\n\n' + "\n".join(tables)
        )
        self.config.chmod(0o600)

    @staticmethod
    def _table(name: str, method: str, source: str, port: int, secrets: Path) -> str:
        value = {
            "password": f'"{secret_for(method)}"',
            "password_file": f'"{secrets / f"{method}.txt"}"',
            "password_env": f'"FETCHD_CANARY_{method.upper()}"',
            "password_command": f'"cat {secrets / f"{method}.txt"}"',
            "password_credential": f'"{method}.txt"',
        }[source]
        return (
            f'[accounts.{name}]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "plain"\n'
            f'username = "{USER}"\nauth = "{method}"\ntimeout = 5\n{source} = {value}\n'
        )

    def run(self, *args: str, stdin: str | None = None) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "fetchd", "-c", str(self.config), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            cwd=self.root,
        )

    def forbidden(self) -> dict[bytes, str]:
        """Every secret-bearing string, mapped to the account it belongs to."""
        found: dict[bytes, str] = {}
        for name, (method, server) in self.servers.items():
            for form in sent_forms(method, server.port) | wire_secrets(server):
                found[form] = name
        return found


def leaks(text: bytes, forbidden: dict[bytes, str]) -> list[str]:
    return [f"{form!r} ({name})" for form, name in forbidden.items() if form in text]


def stored_files(data_dir: Path) -> Iterator[Path]:
    return (path for path in data_dir.rglob("*") if path.is_file())


@pytest.mark.parametrize("fmt", ["json", "console"])
@pytest.mark.parametrize("right", [True, False], ids=["right-password", "wrong-password"])
def test_no_secret_in_output_or_data_whatever_the_method_and_source(
    pop3_server: Start, tmp_path: Path, right: bool, fmt: str
) -> None:
    accounts = Accounts(pop3_server, tmp_path, right=right, fmt=fmt)
    outputs: dict[str, tuple[int, bytes, bytes]] = {}

    def finish(label: str, process: subprocess.Popen[bytes], stdin: bytes = b"") -> None:
        out, err = process.communicate(stdin, timeout=60)
        outputs[label] = (process.returncode, out, err)

    # One after the other: each server's maildrop takes one session at a time.
    finish("fetch", accounts.run("fetch"))
    finish("check", accounts.run("check", "--connect"))
    # One shell per method, each with another password source, all at once.
    shells = [
        accounts.run("shell", account_name(method, SOURCES[i % len(SOURCES)]))
        for i, method in enumerate(METHODS)
    ]
    for i, shell in enumerate(shells):
        finish(f"shell {i}", shell, b"stat\nquit\n")

    forbidden = accounts.forbidden()
    # The secrets did cross the wire, and the APOP digests are among the forbidden.
    for method, server in accounts.servers.values():
        assert wire_secrets(server), method
        if method == "apop":  # one digest per session: fetch, check and maybe shell
            assert all(len(digest) == 32 for digest in wire_secrets(server))
            assert wire_secrets(server) <= forbidden.keys()
    for label, (_, out, err) in outputs.items():
        assert not leaks(out, forbidden), f"{label} stdout: {leaks(out, forbidden)}"
        assert not leaks(err, forbidden), f"{label} stderr: {leaks(err, forbidden)}"
    for path in stored_files(accounts.data_dir):
        content = path.read_bytes()
        assert not leaks(content, forbidden), f"{path}: {leaks(content, forbidden)}"

    # The runs did what they should, so the outputs above were worth searching.
    fetch_code, _, fetch_err = outputs["fetch"]
    assert b"pop3" in fetch_err  # the transcript was on
    assert fetch_code == (0 if right else 1), fetch_err[-2000:]
    assert outputs["check"][0] == (0 if right else 1)
    for i in range(len(METHODS)):
        code, out, _ = outputs[f"shell {i}"]
        assert (code == 0) is right
        if right:
            assert b"+OK" in out
    if right:
        assert len(list(accounts.data_dir.rglob("*.eml"))) == len(accounts.servers)
        assert (accounts.data_dir / "state.sqlite3").exists()
    else:
        assert b"refused" in fetch_err


def exception_texts(exc: BaseException) -> Iterator[str]:
    """The message, repr and formatted traceback of ``exc`` and of each exception it chains."""
    yield "".join(traceback.format_exception(exc))
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield str(current)
        yield repr(current)
        yield repr(current.args)
        current = current.__cause__ or current.__context__


@pytest.mark.parametrize("method", METHODS)
def test_a_refused_login_raises_without_the_secret(pop3_server: Start, method: str) -> None:
    secret = secret_for(method)
    server = pop3_server(
        Mailbox([]),
        ServerOptions(
            user=USER, password=SERVER_PASSWORD_WHEN_WRONG, apop=method == "apop",
            sasl=ALL_MECHANISMS,
        ),
    )  # fmt: skip
    account = AccountConfig(
        name="work",
        host="127.0.0.1",
        port=server.port,
        security="plain",
        username=USER,
        password=secret,
        auth=method,
        timeout=5,
    )
    assert secret not in repr(account)
    assert secret not in str(account)
    with pytest.raises(AuthError) as caught:
        login(account).close()
    forbidden = sent_forms(method, server.port) | wire_secrets(server)
    assert wire_secrets(server), "the secret never crossed the wire"
    for text in exception_texts(caught.value):
        assert not [form for form in forbidden if form.decode() in text], text


def test_a_failing_password_command_does_not_echo_its_output(tmp_path: Path) -> None:
    """A command that prints the secret, then fails: the error names the status only."""
    script = tmp_path / "leaky.sh"
    script.write_text(f"#!/bin/sh\necho {PASSWORD}\necho {TOKEN} >&2\nexit 3\n")
    script.chmod(0o700)
    account = AccountConfig(
        name="work",
        host="127.0.0.1",
        port=110,
        security="plain",
        username=USER,
        password_command=str(script),
    )
    with pytest.raises(FetchdError) as caught:
        account.resolve_secret()
    for text in exception_texts(caught.value):
        assert PASSWORD not in text


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_a_crash_during_login_logs_its_traceback_without_the_secret(
    pop3_server: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    """A bug in the login path is logged with its traceback; the frames hold the secret."""

    def crash(_greeting: str) -> str | None:
        raise RuntimeError("a bug while logging in")

    monkeypatch.setattr(replies, "apop_timestamp", crash)
    server = pop3_server(Mailbox([]), ServerOptions(user=USER, password=PASSWORD))
    account = AccountConfig(
        name="work",
        host="127.0.0.1",
        port=server.port,
        security="plain",
        username=USER,
        password=PASSWORD,
        timeout=5,
    )
    out = io.StringIO()
    configure_logging("debug", fmt, stream=out)
    state = State(tmp_path / "state.sqlite3")
    try:
        run = run_account(account, tmp_path, state, get_logger(account="work"))
    finally:
        state.close()
    assert run.outcome == "bug"
    text = out.getvalue()
    assert "a bug while logging in" in text  # the traceback was logged
    assert PASSWORD not in text


# --- OAuth2: tokens fetchd gets itself ------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_no_oauth2_token_in_output_or_data(
    auth_server: OAuth2TestServer, mail: Dovecot, tmp_path: Path, fmt: str
) -> None:
    """Login, fetches that refresh and rotate, then a revoked grant: no token escapes.

    The canaries are everything secret the flow handled: the client secret, the
    device code, every access and refresh token the server issued, and the
    SASL payloads that carried the access tokens. Only the grant file may hold them.
    """
    server = reset(auth_server)
    setup = write_oauth_config(tmp_path, server, mail)
    debug = 'log_level = "debug"'
    setup.path.write_text(setup.path.read_text().replace(debug, f'{debug}\nlog_format = "{fmt}"'))
    # Never more than fetchd's margin away from expiry: every login refreshes.
    server.options.expires_in = int(REFRESH_MARGIN)
    server.options.rotate = True
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "NO_COLOR": "1"}
    outputs: list[tuple[str, subprocess.CompletedProcess[bytes]]] = []
    for args in (("oauth", "login", "work"), ("fetch",), ("check", "--connect"), ("fetch",)):
        mail.deliver("alice", make_message("for alice", "nothing secret here\n"))
        done = subprocess.run(
            [sys.executable, "-m", "fetchd", "-c", str(setup.path), *args],
            capture_output=True, env=env, cwd=tmp_path, timeout=60, check=False,
        )  # fmt: skip
        outputs.append((" ".join(args), done))
    server.revoke_all()
    revoked = subprocess.run(
        [sys.executable, "-m", "fetchd", "-c", str(setup.path), "fetch", "work"],
        capture_output=True, env=env, cwd=tmp_path, timeout=60, check=False,
    )  # fmt: skip
    outputs.append(("fetch after revocation", revoked))

    for label, done in outputs[:-1]:
        assert done.returncode == 0, (label, done.stderr[-2000:])
    assert revoked.returncode == 1
    assert b"fetchd oauth login work" in revoked.stderr
    assert b"pop3" in outputs[1][1].stderr  # the transcript was on
    assert server.count("refresh_token") >= 3  # the tokens really changed hands
    forbidden = oauth_canaries(server, mail.pop3s_port)
    assert leaks(setup.token_file.read_bytes(), forbidden)  # the canaries are the real tokens
    for label, done in outputs:
        assert not leaks(done.stdout, forbidden), f"{label} stdout: {leaks(done.stdout, forbidden)}"
        assert not leaks(done.stderr, forbidden), f"{label} stderr: {leaks(done.stderr, forbidden)}"
    for path in stored_files(setup.data_dir):
        if path.parent != setup.token_file.parent:
            assert not leaks(path.read_bytes(), forbidden), path
    assert len(list(setup.data_dir.rglob("*.eml"))) >= 3


def oauth_canaries(server: OAuth2TestServer, port: int) -> dict[bytes, str]:
    found = {CLIENT_SECRET.encode(): "client secret"}
    for token in server.issued:
        found[token.encode()] = "issued"
        for method in ("xoauth2", "oauthbearer"):
            exchange = auth.sasl_exchange(method, "alice", token, "127.0.0.1", port)
            assert exchange.initial is not None
            found[exchange.initial.encode()] = method
    return found
