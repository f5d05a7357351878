"""The readers of other tools' configs and state (``fetchd.config.migrate``).

Quoting is checked against the tools themselves where they can print their
own parse: ``fetchmail --configdump`` and ``mpop --pretend``.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from fetchd.config.migrate import fetchmail, getmail, mpop, shell_command
from fetchd.config.migrate._fetchmail_lexer import escapes, tokens
from tests.strategies import fetchmail_string_bodies, rc_secrets

_TMP = settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=40)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def _notes(migration: fetchmail.Migration) -> list[str]:
    return [re.sub(r"^.*?:(\d+): ", r"\1: ", str(note)) for note in migration.notes]


# ---------------------------------------------------------------------------
# fetchmail


FETCHMAILRC = """\
# Polled every five minutes.
set daemon 300
set logfile ~/.fetchmail.log
set no bouncemail

defaults proto pop3 timeout 60 no rewrite
  fetchall

poll mail.example.com with proto POP3 port 995 and auth password:
  user 'jane.doe@example.com' there with password "s3cr\\x22t" is jane here
  options keep ssl sslcertck limit 2000000
  mda "/usr/bin/procmail -d %T"

skip old.example.net via 10.1.2.3 interval 3
  user "jd" there has password 'x' is jane here nokeep

poll imap.example.org proto IMAP user jd there password p

poll shared.example.com uidl service 110
  user a there password 1 is jane here keep sslproto '' folder INBOX
  user b there password 2 is jane here keep
"""


def test_fetchmail_accounts_from_a_real_world_rc(tmp_path: Path) -> None:
    migration = fetchmail.read(_write(tmp_path / "rc", FETCHMAILRC), tmp_path / "none")
    accounts = {found.name: found for found in migration.accounts}
    assert sorted(accounts) == [
        "10.1.2.3",
        "a-shared.example.com",
        "b-shared.example.com",
        "mail.example.com",
    ]
    mail = accounts["mail.example.com"]
    assert mail.table == {
        "host": "mail.example.com",
        "username": "jane.doe@example.com",
        "security": "tls",
        "port": 995,
        "delete_after_fetch": False,
        "max_message_size": 2000000,
        "timeout": "60s",
        "auth": "user",
        "interval": "300s",
    }
    assert mail.secret == 's3cr"t'
    old = accounts["10.1.2.3"]
    assert old.table["enabled"] is False
    assert old.table["delete_after_fetch"] is True
    assert old.table["interval"] == "900s"
    assert old.table["security"] == "starttls"  # fetchmail tries STLS by default
    shared = accounts["a-shared.example.com"]
    assert shared.table["port"] == 110
    assert shared.table["security"] == "starttls"  # in clear off loopback: not carried over


def test_fetchmail_notes_name_each_construct_and_its_line(tmp_path: Path) -> None:
    migration = fetchmail.read(_write(tmp_path / "rc", FETCHMAILRC), tmp_path / "none")
    notes = _notes(migration)
    assert (
        "3: set logfile ~/.fetchmail.log not translated: fetchd logs to stdout and stderr "
        "(the journal under systemd)" in notes
    )
    assert (
        '12: mda "/usr/bin/procmail -d %T" not translated: fetchd delivers by its own '
        "keys (maildir, mda, lmtp): set them by hand" in notes
    )
    assert (
        "7: fetchall not translated: fetchd fetches only the messages it has not fetched "
        "before" in notes
    )
    assert (
        "10: is jane here not translated: fetchd delivers by its own keys (maildir, mda, "
        "lmtp): set them by hand" in notes
    )
    assert any(n.startswith("17: poll imap.example.org: protocol imap not imported") for n in notes)
    assert any(n.startswith("20: folder INBOX not translated") for n in notes)
    assert any("sslproto ''" in n or 'sslproto ""' in n for n in notes)
    # Turning off what fetchd does not do anyway needs no note; defaults are noted once.
    assert not any("rewrite" in n or "bouncemail" in n for n in notes)
    assert sum("fetchall" in n for n in notes) == 1


def test_fetchmail_ids_split_as_fetchmail_reads_them() -> None:
    data = (
        b"jane@example.com@mail.example.com <uid@with@at>\n"
        b"  jd@old.example.net 0001 trailing\n"
        b"lotus user@host.example UID-1\n"
        b"no-at-sign line\n"
        b"bytes@host \xff\xfe\n"
    )
    seen = fetchmail.parse_ids(data)
    assert seen[("jane@example.com", "mail.example.com")] == {"<uid@with@at>"}
    assert seen[("jd", "old.example.net")] == {"0001"}
    assert seen[("lotus user", "host.example")] == {"UID-1"}
    assert seen[("bytes", "host")] == {b"\xff\xfe".decode("utf-8", "surrogateescape")}
    assert len(seen) == 4


def test_fetchmail_ids_go_to_the_account_by_user_and_poll_or_via_name(tmp_path: Path) -> None:
    ids = _write(tmp_path / "ids", "JD@Old.Example.Net u1\njd@10.1.2.3 u2\nother@x u3\n")
    migration = fetchmail.read(_write(tmp_path / "rc", FETCHMAILRC), ids)
    (old,) = [found for found in migration.accounts if found.name == "10.1.2.3"]
    assert old.seen == {"u1", "u2"}
    assert old.state_file == ids


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("a\\x41b", "aAb"),
        ("\\041", "!"),
        ("\\0101", "\x081"),
        ("\\65", "A"),
        ("\\q", "q"),
        ("a\\\nb", "ab"),
        ("\\\\", "\\"),
        ("end\\", "end"),
        ("\\xg", "\x00g"),
    ],
)
def test_fetchmail_escapes(body: str, expected: str) -> None:
    assert escapes(body) == expected


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("keep keeping 12 12ab", ["keyword", "string", "number", "string"]),
        ('user keep password "x"y', ["keyword", "string", "keyword", "string"]),
        ("nokeep # a comment\nno keep", ["keyword", "keyword", "keyword", "keyword"]),
        ("with and has wants options ; , :", []),
        ("Pop3 POP3 pop3", ["string", "keyword", "keyword"]),
    ],
)
def test_fetchmail_tokens_as_flex_makes_them(text: str, kinds: list[str]) -> None:
    assert [token.kind for token in tokens(text)] == kinds


def _configdump(rc: Path) -> dict[str, str]:
    """fetchmail's own reading of the first user of an rc file."""
    done = subprocess.run(
        ["fetchmail", "-f", str(rc), "--configdump"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "HOME": str(rc.parent)},
    )
    assert done.returncode == 0, done.stderr
    found = dict(re.findall(r'"(remote|password|pollname)":("(?:[^"\\]|\\.)*")', done.stdout))
    return {key: ast.literal_eval(value) for key, value in found.items()}


def _fetchmail_quoted(text: str, style: str) -> str:
    if style == "bare" and re.fullmatch(r"[A-Za-z0-9._@-]+", text) and not text.isdigit():
        return text
    quote = "'" if style == "single" else '"'
    return quote + "".join(f"\\x{ord(c):02x}" if c in "\\'\"" else c for c in text) + quote


@pytest.mark.skipif(shutil.which("fetchmail") is None, reason="fetchmail is not installed")
@_TMP
@given(
    user=rc_secrets(), password=rc_secrets(), style=st.sampled_from(["double", "single", "bare"])
)
@example(user="keep", password="a b#c", style="double")
def test_fetchmail_reads_strings_as_fetchmail_does(
    tmp_path: Path, user: str, password: str, style: str
) -> None:
    rc = _write(
        tmp_path / "rc",
        f"poll pop.example.com proto pop3\n  user {_fetchmail_quoted(user, style)} there "
        f"with password {_fetchmail_quoted(password, style)} keep\n",
    )
    dump = _configdump(rc)
    (found,) = fetchmail.read(rc, tmp_path / "ids").accounts
    assert (found.table["username"], found.secret) == (dump["remote"], dump["password"])


@pytest.mark.skipif(shutil.which("fetchmail") is None, reason="fetchmail is not installed")
@_TMP
@given(body=fetchmail_string_bodies())
def test_fetchmail_escapes_as_fetchmail_does(tmp_path: Path, body: str) -> None:
    assume(all(" " <= c <= "~" for c in escapes(body)) and escapes(body))
    rc = _write(tmp_path / "rc", f'poll pop.example.com user "u" there password "{body}"\n')
    assert escapes(body) == _configdump(rc)["password"]


# ---------------------------------------------------------------------------
# mpop


MPOPRC = """\
# mpop
defaults
tls on
keep on
uidls_file ~/uidls/%U_at_%H

account work
host pop.work.example
user jane
passwordeval gpg -q -d ~/.work.gpg
tls_starttls off
delivery mda /usr/bin/procmail -d jane
only_new off
skipsize 5m

account home : work
host   pop.home.example  \t
port 1995
user "jd home"
password "p w"
keep off
tls off
tls_starttls on
killsize 10m

account default : work
"""


def test_mpop_accounts_inherit_and_translate(tmp_path: Path) -> None:
    migration = mpop.read(_write(tmp_path / "rc", MPOPRC), None)
    accounts = {found.name: found for found in migration.accounts}
    assert sorted(accounts) == ["home", "work"]
    assert accounts["work"].table == {
        "host": "pop.work.example",
        "username": "jane",
        "security": "tls",
        "password_command": "sh -c 'gpg -q -d ~/.work.gpg'",
        "delete_after_fetch": False,
        "max_message_size": 5 * 1024 * 1024,
        "mda": ["sh", "-c", "/usr/bin/procmail -d jane"],  # mpop runs it through sh too
    }
    home = accounts["home"]
    assert (home.table["host"], home.table["port"], home.table["username"]) == (
        "pop.home.example",
        1995,
        "jd home",
    )
    assert home.secret == "p w"
    assert home.table["delete_after_fetch"] is True
    assert home.table["security"] == "starttls"
    notes = _notes(migration)
    assert not any(n.startswith("12: delivery") for n in notes)
    assert (
        "13: only_new off not translated: fetchd fetches only the messages it has not "
        "fetched before" in notes
    )
    assert any(n.startswith("24: killsize 10m not translated") for n in notes)
    assert "26: account default: the same mailbox as an account above; imported once" in notes


@pytest.mark.parametrize(
    ("skipsize", "size"),
    [
        ("100", 100),
        ("512k", 512 * 1024),
        ("512K", 512 * 1024),
        ("5m", 5 * 1024 * 1024),
        ("5M", 5 * 1024 * 1024),
        ("off", None),
        ("0", None),
        # Forms fetchd's own config reads but mpop refuses: no mpop config holds them.
        ("1.5m", None),
        ("1g", None),
        ("5 m", None),
        ("5mb", None),
    ],
)
def test_mpop_skipsize_in_mpops_forms_only(tmp_path: Path, skipsize: str, size: int | None) -> None:
    rc = _write(
        tmp_path / "rc", f"account work\nhost pop.example\nuser jane\nskipsize {skipsize}\n"
    )
    [found] = mpop.read(rc, None).accounts
    assert found.table.get("max_message_size") == size


def test_mpop_uidls_files_per_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "uidls").mkdir()
    (tmp_path / "uidls" / "jane_at_pop.work.example").write_text(
        "# comment\n#\n 2 pop.work.example jane\nAAA\nBBB\n 1 other.example jane\nCCC\n"
    )
    migration = mpop.read(_write(tmp_path / "rc", MPOPRC), None)
    (work,) = [found for found in migration.accounts if found.name == "work"]
    assert work.seen == {"AAA", "BBB"}


def test_mpop_uidls_with_spaces_in_the_user() -> None:
    assert mpop.parse_uidls(b" 1 host.example jd home\nX1\n") == {
        ("host.example", "jd home"): {"X1"}
    }


@pytest.mark.skipif(shutil.which("mpop") is None, reason="mpop is not installed")
@_TMP
@given(user=rc_secrets(), quoted=st.booleans())
@example(user='"a b" c', quoted=False)
@example(user='a\\"b', quoted=True)
def test_mpop_reads_arguments_as_mpop_does(tmp_path: Path, user: str, quoted: bool) -> None:
    assume(user.strip() == user and not (quoted is False and user.startswith("#")))
    written = f'"{user}"' if quoted else user
    rc = _write(
        tmp_path / "rc", f"account t\nhost h\nuser {written}\npassword x\ndelivery maildir /tmp\n"
    )
    done = subprocess.run(
        ["mpop", "-C", str(rc), "-P", "t"], capture_output=True, text=True, check=False
    )
    shown = re.search(r"^user = (.*)$", done.stdout, re.M)
    assert shown is not None, done.stdout + done.stderr
    (found,) = mpop.read(rc, tmp_path / "uidls").accounts
    assert found.table["username"] == shown.group(1)


# ---------------------------------------------------------------------------
# getmail


def test_getmail_account_and_oldmail(tmp_path: Path) -> None:
    rc = _write(
        tmp_path / "getmailrc-work",
        """\
[retriever]
type = SimplePOP3SSLRetriever
server = pop.example.com
username = jane/doe
password_command = ('/usr/bin/pass', 'show', 'mail work')
; a comment
use_apop = true
ssl_fingerprints = ('ab:cd',)

[destination]
type = MDA_external
path = /usr/bin/procmail

[options]
delete = false
delete_after = 30
max_message_size = 1000000
read_all = false
max_messages_per_session = 10
""",
    )
    (tmp_path / "oldmail-pop.example.com-995-jane-doe").write_bytes(b"U1\x001700000000\nU2\x001\n")
    migration = getmail.read([rc])
    (found,) = migration.accounts
    assert found.name == "work"
    assert found.table == {
        "host": "pop.example.com",
        "username": "jane/doe",
        "security": "tls",
        "port": 995,
        "auth": "apop",
        "delete_after_fetch": False,
        "delete_after_days": 30,
        "max_message_size": 1000000,
        "password_command": "/usr/bin/pass show 'mail work'",
        "mda": ["/usr/bin/procmail"],
    }
    assert found.seen == {"U1", "U2"}
    notes = _notes(migration)
    assert (
        "8: ssl_fingerprints = ('ab:cd',) not translated: fetchd checks the certificate "
        "against its CAs (ca_file)" in notes
    )
    assert not any("[destination]" in n for n in notes)
    assert any(n.startswith("19: max_messages_per_session = 10 not translated") for n in notes)
    assert not any("read_all" in n for n in notes)


def test_getmail_imap_and_broken_uidl(tmp_path: Path) -> None:
    _write(
        tmp_path / "getmailrc-imap",
        "[retriever]\ntype = SimpleIMAPSSLRetriever\nserver = imap.example.com\nusername = u\n",
    )
    _write(
        tmp_path / "getmailrc",
        "[retriever]\ntype = BrokenUIDLPOP3Retriever\n"
        "server = pop.example.com\nusername = u\npassword = p\n",
    )
    (tmp_path / "oldmail-pop.example.com-110-u").write_bytes(b"1/abc\x001\n")
    migration = getmail.read(getmail.rc_files(tmp_path))
    (found,) = migration.accounts
    assert found.name == "pop.example.com"
    assert found.seen == set()
    notes = _notes(migration)
    assert any("type = SimpleIMAPSSLRetriever not imported" in n for n in notes)
    assert any("BrokenUIDLPOP3Retriever: its message ids are its own" in n for n in notes)


def test_shell_command_keeps_plain_commands_and_wraps_the_rest() -> None:
    assert shell_command("pass show mail/work") == "pass show mail/work"
    assert shell_command("gpg -d ~/p.gpg | head -1") == "sh -c 'gpg -d ~/p.gpg | head -1'"


def test_fetchmail_ca_file_is_relative_to_the_rc_file(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not checked here\n")
    rc = _write(
        tmp_path / "rc", 'poll p.example user u there password x ssl sslcertfile "ca.pem"\n'
    )
    (found,) = fetchmail.read(rc, tmp_path / "ids").accounts
    assert found.table["ca_file"] == str(tmp_path / "ca.pem")
    assert not _notes(fetchmail.read(rc, tmp_path / "ids"))


@pytest.mark.parametrize(
    ("delivery", "expected"),
    [
        ("delivery maildir ~/Maildir", {"maildir": "HOME/Maildir"}),
        ("delivery mda /usr/bin/procmail -f %F", None),  # mpop's envelope sender: not ours
        ("delivery mbox ~/mbox", None),
    ],
)
def test_mpop_destinations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, delivery: str, expected: dict[str, str] | None
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    rc = _write(tmp_path / "rc", f"account a\nhost h.example\nuser u\n{delivery}\n")
    migration = mpop.read(rc, None)
    (found,) = migration.accounts
    keys = {k: v for k, v in found.table.items() if k in ("maildir", "mda")}
    if expected is None:
        assert keys == {}
        assert any(f"{delivery} not translated" in n for n in _notes(migration))
    else:
        assert keys == {k: v.replace("HOME", str(tmp_path)) for k, v in expected.items()}


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        ("type = Maildir\npath = /srv/mail/Maildir/", {"maildir": "/srv/mail/Maildir"}),
        (
            "type = MDA_external\npath = /usr/bin/maildrop\narguments = ('-d', 'jane')",
            {"mda": ["/usr/bin/maildrop", "-d", "jane"]},
        ),
        ("type = MDA_external\npath = /usr/bin/procmail\narguments = ('-f', '%(sender)')", None),
        ("type = MDA_external\npath = /bin/x\narguments = __import__('os')", None),
        ("type = Mboxrd\npath = ~/mbox", None),
    ],
)
def test_getmail_destinations(
    tmp_path: Path, destination: str, expected: dict[str, object] | None
) -> None:
    rc = _write(
        tmp_path / "getmailrc",
        "[retriever]\ntype = SimplePOP3SSLRetriever\nserver = pop.example.com\n"
        f"username = u\npassword = p\n\n[destination]\n{destination}\n",
    )
    migration = getmail.read([rc])
    (found,) = migration.accounts
    keys = {k: v for k, v in found.table.items() if k in ("maildir", "mda")}
    assert keys == (expected or {})
    assert any("[destination]" in n for n in _notes(migration)) == (expected is None)
