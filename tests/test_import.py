"""``fetchd import`` against the real tools: each fetches part of a real Dovecot mailbox first.

Every test runs fetchmail, getmail6 or mpop with its own config (keeping mail
on the server) until it has fetched the first messages; more mail arrives;
``fetchd import`` reads the tool's config and state from where the tool keeps
them; fetchd's first pass must then store exactly the messages the tool had
not fetched, and the server must still hold every message.
"""

from __future__ import annotations

import email
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from fetchd.cli import EXIT_CONFIG, EXIT_OK, main
from fetchd.store.state import Fetched, State, state_path
from fetchd.testing.dovecot import Dovecot
from tests.messages import make_message

pytestmark = pytest.mark.timeout(120)

FIRST = ("first 1", "first 2", "first 3")
LATER = ("later 1", "later 2")


def _private(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as stream:
        stream.write(text)
    return path


def _maildir(path: Path) -> Path:
    for sub in ("new", "cur", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    return path


def _subjects(maildir: Path) -> list[str]:
    found = []
    for path in [*maildir.glob("new/*"), *maildir.glob("cur/*")]:
        found.append(str(email.message_from_bytes(path.read_bytes())["Subject"]))
    return sorted(found)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The old tool's home directory, which is also fetchd's ``~`` while importing."""
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o755)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("FETCHMAILHOME", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    return home


@pytest.fixture
def fetchd_config(tmp_path: Path) -> Path:
    config = tmp_path / "fetchd" / "config.toml"
    config.parent.mkdir()
    _private(config, f'[daemon]\ndata_dir = "{tmp_path / "data"}"\ntranscript = false\n')
    return config


def _env(home: Path) -> dict[str, str]:
    # FETCHMAILHOME: as root, fetchmail's lock is /var/run/fetchmail.pid otherwise,
    # shared with every other fetchmail on the machine. Its id file stays ~/.fetchids.
    path = os.environ.get("PATH", "/usr/bin:/bin")
    return {"PATH": path, "HOME": str(home), "FETCHMAILHOME": str(home), "LANG": "C.UTF-8"}


def _run(argv: list[str], home: Path) -> None:
    done = subprocess.run(
        argv, env=_env(home), capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _move_and_check(
    dovecot: Dovecot,
    tool: str,
    fetch_first: Callable[[], None],
    config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    *args: str,
    shared: Path | None = None,
) -> str:
    """The scenario every tool goes through; returns what ``fetchd import`` printed.

    ``shared``: the old tool's Maildir, which fetchd now delivers into as well.
    """
    for subject in FIRST:
        dovecot.deliver("alice", make_message(subject))
    fetch_first()
    for subject in LATER:
        dovecot.deliver("alice", make_message(subject))
    assert main(["-c", str(config), "import", tool, *args]) == EXIT_OK
    printed = capsys.readouterr().out
    (drop_in,) = (config.parent / "accounts.d").glob("*.toml")
    assert main(["-c", str(config), "fetch"]) == EXIT_OK
    if shared is None:
        assert _subjects(tmp_path / "data" / drop_in.stem / "Maildir") == sorted(LATER)
    else:  # what the old tool stored, then what fetchd stored: each once
        assert _subjects(shared) == sorted(FIRST + LATER)
    assert len(dovecot.messages("alice")) == len(FIRST) + len(LATER)
    return printed


def _requires(program: str) -> None:
    if shutil.which(program) is None:
        pytest.skip(f"{program} is not installed")


def test_fetchmail_move(
    dovecot_alice: Dovecot,
    home: Path,
    fetchd_config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _requires("fetchmail")
    server, user = dovecot_alice, dovecot_alice.user("alice")
    rc = _private(
        home / ".fetchmailrc",
        "# fetchmail, as a person writes it\nset no syslog\n"
        f"poll {server.host} with proto POP3 port {server.pop3_port}:\n"
        f'  user "{user.name}" there with password "{user.password}" is "someone" here\n'
        '  options keep sslproto "" mda "cat > /dev/null"\n',
    )
    fetch = ["fetchmail", "-f", str(rc), "--nodetach", "--silent"]
    printed = _move_and_check(
        server, "fetchmail", lambda: _run(fetch, home), fetchd_config, tmp_path, capsys
    )
    assert "3 messages fetchmail had fetched are recorded as fetched (from ~/.fetchids)" in printed
    assert '~/.fetchmailrc:5: mda "cat > /dev/null" not translated: ' in printed
    password_file = fetchd_config.parent / "accounts.d" / f"{server.host}.password"
    assert password_file.read_text() == f"{user.password}\n"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600


def test_mpop_move(
    dovecot_alice: Dovecot,
    home: Path,
    fetchd_config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _requires("mpop")
    server, user = dovecot_alice, dovecot_alice.user("alice")
    maildir = _maildir(home / "Mail")
    _private(
        home / ".mpoprc",
        f"defaults\nkeep on\ntls on\ntls_starttls off\ntls_trust_file {server.ca_file}\n\n"
        f"account work\nhost {server.host}\nport {server.pop3s_port}\nuser {user.name}\n"
        f"passwordeval echo {user.password}\ndelivery maildir {maildir}\n\n"
        "account default : work\n",
    )
    fetch = ["mpop", "-q", "work"]
    printed = _move_and_check(
        server, "mpop", lambda: _run(fetch, home), fetchd_config, tmp_path, capsys, shared=maildir
    )
    assert "3 messages mpop had fetched are recorded as fetched" in printed
    table = tomllib.loads((fetchd_config.parent / "accounts.d" / "work.toml").read_text())
    assert table["maildir"] == str(maildir)
    assert table["security"] == "tls"
    assert table["password_command"] == f"echo {user.password}"
    assert "account default: the same mailbox as an account above; imported once" in printed


def test_getmail_move(
    request: pytest.FixtureRequest,
    dovecot_alice: Dovecot,
    home: Path,
    fetchd_config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _requires("getmail")
    server, user = dovecot_alice, dovecot_alice.user("alice")
    # Not under pytest's tmp dir, which only root may enter: getmail delivers as nobody.
    outside = Path(tempfile.mkdtemp(prefix="fetchd-getmail-"))
    request.addfinalizer(lambda: shutil.rmtree(outside, ignore_errors=True))
    outside.chmod(0o755)
    maildir = _maildir(outside / "Mail")
    deliver_as = ""
    if os.geteuid() == 0:  # getmail6 refuses to deliver as root; its Maildir can setuid
        deliver_as = "user = nobody\n"
        nobody = pwd.getpwnam("nobody")
        for directory in (maildir, *(maildir / s for s in ("new", "cur", "tmp"))):
            os.chown(directory, nobody.pw_uid, nobody.pw_gid)
    directory = home / ".config" / "getmail"
    directory.mkdir(parents=True)
    rc = _private(
        directory / "getmailrc-work",
        f"[retriever]\ntype = SimplePOP3Retriever\nserver = {server.host}\n"
        f"port = {server.pop3_port}\nusername = {user.name}\npassword = {user.password}\n\n"
        f"[destination]\ntype = Maildir\npath = {maildir}/\n{deliver_as}\n"
        "[options]\nread_all = false\ndelete = false\nmessage_log_syslog = false\n",
    )
    fetch = ["getmail", "--rcfile", str(rc), "--getmaildir", str(directory)]
    printed = _move_and_check(
        server, "getmail", lambda: _run(fetch, home), fetchd_config, tmp_path, capsys,
        shared=maildir,
    )  # fmt: skip
    assert "3 messages getmail had fetched are recorded as fetched" in printed
    assert "[destination]" not in printed  # a Maildir destination translates
    table = tomllib.loads(next((fetchd_config.parent / "accounts.d").glob("*.toml")).read_text())
    assert table["maildir"] == str(maildir)


# ---------------------------------------------------------------------------
# The command itself, without a server: nothing is contacted while importing.

MPOPRC = "account work\nhost pop.example.com\nuser jane\npassword p@ss w0rd\ntls on\nkeep on\n"


def _import(config: Path, *args: str) -> int:
    return main(["-c", str(config), "import", *args])


def test_dry_run_prints_the_toml_and_writes_nothing(
    home: Path, fetchd_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = _private(home / ".mpoprc", MPOPRC)
    uidls = home / ".mpop_uidls"
    uidls.mkdir()
    (uidls / "jane_at_pop.example.com").write_text(" 2 pop.example.com jane\nA\nB\n")
    assert _import(fetchd_config, "mpop", str(rc), "--dry-run") == EXIT_OK
    printed = capsys.readouterr().out
    assert not (fetchd_config.parent / "accounts.d").exists()
    assert not (tmp_path / "data").exists()
    toml = "\n".join(line for line in printed.splitlines() if not line.startswith("# "))
    assert tomllib.loads(toml) == {
        "host": "pop.example.com",
        "security": "starttls",
        "username": "jane",
        "password_file": "accounts.d/work.password",
        "delete_after_fetch": False,
    }
    assert "p@ss w0rd" not in printed
    assert "2 messages mpop had fetched would be recorded as fetched" in printed


def test_an_existing_account_is_never_overwritten(
    home: Path, fetchd_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = _private(home / ".mpoprc", MPOPRC)
    with fetchd_config.open("a") as stream:
        stream.write(
            '\n[accounts.work]\nhost = "other.example.com"\nusername = "x"\n'
            'password_command = "true"\n'
        )
    before = fetchd_config.read_text()
    assert _import(fetchd_config, "mpop", str(rc)) == 1
    printed = capsys.readouterr().out
    assert (
        "account work (~/.mpoprc:1) not imported: an account of that name already exists" in printed
    )
    assert "--rename work=work-2" in printed
    assert fetchd_config.read_text() == before
    assert not (fetchd_config.parent / "accounts.d" / "work.toml").exists()
    assert _import(fetchd_config, "mpop", str(rc), "--rename", "work=work-2") == EXIT_OK
    assert (fetchd_config.parent / "accounts.d" / "work-2.toml").is_file()
    assert _import(fetchd_config, "mpop", str(rc), "--rename", "work=work-2") == 1
    assert "already exists with the same server and user: skipped" in capsys.readouterr().out


def test_rows_the_state_already_holds_stay_as_they_are(
    home: Path, fetchd_config: Path, tmp_path: Path
) -> None:
    rc = _private(home / ".mpoprc", MPOPRC)
    uidls = home / ".mpop_uidls"
    uidls.mkdir()
    (uidls / "jane_at_pop.example.com").write_text(" 2 pop.example.com jane\nA\nB\n")
    state = State(state_path(tmp_path / "data"))
    state.record("work", [Fetched("A", "stored", 10, "work/Maildir/new/a.eml")])
    state.close()
    assert _import(fetchd_config, "mpop", str(rc)) == EXIT_OK
    state = State(state_path(tmp_path / "data"))
    try:
        known = state.known("work")
    finally:
        state.close()
    assert {uid: k.status for uid, k in known.items()} == {"A": "stored", "B": "seen"}


def test_a_config_that_does_not_load_leaves_nothing_behind(
    home: Path, fetchd_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A host with a space: fetchd's validation rejects it, and the import is undone.
    rc = _private(home / ".mpoprc", "account bad\nhost bad host\nuser u\npassword p\n")
    assert _import(fetchd_config, "mpop", str(rc)) == EXIT_CONFIG
    assert list((fetchd_config.parent / "accounts.d").iterdir()) == []
