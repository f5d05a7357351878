"""Delivering where people read mail: a shared Maildir, an MDA command, LMTP.

Mail is fetched over POP3 from alice's mailbox of the session's Dovecot and
delivered into bob's mailbox of the same Dovecot: into his Maildir directly,
through Dovecot's own LDA, or to its LMTP server. Dovecot then reads it back
(POP3, doveadm), so each test checks what a mail client would see.
"""

from __future__ import annotations

import grp
import mailbox
import os
import poplib
import pwd
import re
import stat
import textwrap
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest

from fetchd.config import AccountConfig
from fetchd.poll import PollResult, poll_account
from fetchd.store.account import AccountStore
from fetchd.store.maildir import FOLDER_MARKER, message_key
from fetchd.store.state import State
from fetchd.testing.dovecot import Dovecot
from tests.accounts import account
from tests.messages import make_message

#: A name fetchd gives a message in a Maildir others use: the Maildir spec's
#: time.MusecPpidRrand.host, the key in the unique part, no suffix, no flags.
SPEC_NAME = re.compile(r"\d+\.M\d+P\d+R[0-9a-f]{8},FD=[0-9a-f]{24}\.[^:/.][^:/]*")


def mails(count: int, prefix: str = "msg") -> list[bytes]:
    """``count`` messages; every third has a PDF attached."""
    return [
        make_message(
            f"{prefix} {i}",
            f"body {i}\n",
            message_id=f"<{prefix}-{i}@test>",
            attachments=[(f"doc-{i}.pdf", os.urandom(900), "application/pdf")]
            if i % 3 == 0
            else [],
        )
        for i in range(count)
    ]


def lf(message: bytes) -> bytes:
    return message.replace(b"\r\n", b"\n")


def message_ids(messages: list[bytes]) -> list[str]:
    return sorted(str(message_from_bytes(m)["Message-ID"]) for m in messages)


@pytest.fixture
def bob(dovecot_alice: Dovecot) -> Dovecot:
    """The session's Dovecot, alice's mailbox and bob's emptied."""
    dovecot_alice.reset("bob")
    return dovecot_alice


def hand_to_dovecot(root: Path) -> None:
    """Give what fetchd (root here) wrote to Dovecot's mail user, as if fetchd ran as bob."""
    uid, gid = pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
    for directory, _, files in os.walk(root):
        os.chown(directory, uid, gid)
        for name in files:
            os.chown(Path(directory) / name, uid, gid)


def pop3_messages(dovecot: Dovecot, user: str, password: str) -> list[bytes]:
    """Every message of ``user``'s INBOX, as Dovecot serves it over POP3 (LF endings)."""
    client = poplib.POP3(dovecot.host, dovecot.pop3_port, timeout=10)
    try:
        client.user(user)
        client.pass_(password)
        count, _ = client.stat()
        return [b"\n".join(client.retr(n + 1)[1]) + b"\n" for n in range(count)]
    finally:
        client.quit()


def poll(acct: AccountConfig, data_dir: Path, state: State, **kw: Any) -> PollResult:
    return poll_account(acct, data_dir, state, **kw)


def attachment_folders(data_dir: Path) -> list[Path]:
    root = data_dir / "work" / "attachments"
    return sorted(p for p in root.iterdir() if not p.name.startswith("."))


# -- maildir: someone else's Maildir ------------------------------------------------------


def test_maildir_destination_is_read_by_python_and_by_dovecot(
    bob: Dovecot, data_dir: Path, state: State
) -> None:
    sent = mails(9)
    bob.deliver_many("alice", sent)
    target = bob.user("bob").maildir
    acct = account(bob.pop3_port, maildir=str(target), delete_after_fetch=True)
    result = poll(acct, data_dir, state)
    assert (result.stored, result.failed, result.deleted) == (9, 0, 9)
    names = [p.name for p in (target / "new").iterdir()]
    assert len(names) == 9
    assert all(SPEC_NAME.fullmatch(name) for name in names), names
    assert not list((target / "tmp").iterdir())
    assert not (data_dir / "work" / "Maildir").exists(), "fetchd's own Maildir was made"
    # Python's mailbox module reads it as a Maildir, byte for byte.
    read = [bytes(m) for m in mailbox.Maildir(target, factory=None).values()]
    assert sorted(lf(m) for m in read) == sorted(lf(m) for m in sent)
    # Attachments still go to the account's folder, from the message in bob's Maildir.
    folders = attachment_folders(data_dir)
    assert len(folders) == 3
    assert all((f / "message.eml").stat().st_ino in _inodes(target) for f in folders)
    # The index points at the files in bob's Maildir, by absolute path.
    assert {Path(r.path or "").parent for r in state.listing("work")} == {target / "new"}
    # Dovecot indexes it and serves it over POP3, as a mail client sees it.
    hand_to_dovecot(target)
    served = pop3_messages(bob, "bob", "secret2")
    assert sorted(served) == sorted(lf(m) for m in sent)
    assert bob.messages("alice") == []


def test_a_lost_state_finds_messages_dovecot_moved_into_cur(
    bob: Dovecot, data_dir: Path, state: State
) -> None:
    """Dovecot moves what it served into cur/ with flags; the key still names them."""
    sent = mails(5)
    bob.deliver_many("alice", sent)
    target = bob.user("bob").maildir
    acct = account(bob.pop3_port, maildir=str(target))
    assert poll(acct, data_dir, state).stored == 5
    hand_to_dovecot(target)
    assert len(pop3_messages(bob, "bob", "secret2")) == 5
    moved = [p.name for p in (target / "cur").iterdir()]
    assert len(moved) == 5, "Dovecot did not move the messages into cur/"
    assert all(":2," in name for name in moved)
    fresh = State(data_dir / "fresh.sqlite3")
    try:
        again = poll(acct, data_dir, fresh)
    finally:
        fresh.close()
    assert again.stored == 0
    assert "5 message(s) stored before an interruption were recorded" in again.warnings
    assert sorted(p.name for p in (target / "cur").iterdir()) == sorted(moved)
    assert list((target / "new").iterdir()) == []


def _inodes(maildir: Path) -> set[int]:
    return {p.stat().st_ino for sub in ("new", "cur") for p in (maildir / sub).iterdir()}


def test_maildir_subfolder_is_made_with_its_marker_and_dovecot_finds_it(
    bob: Dovecot, data_dir: Path, state: State
) -> None:
    sent = mails(4, "work")
    bob.deliver_many("alice", sent)
    folder = bob.user("bob").maildir / ".Work"
    acct = account(bob.pop3_port, maildir=str(folder))
    assert poll(acct, data_dir, state).stored == 4
    assert (folder / FOLDER_MARKER).is_file()
    assert all((folder / sub).is_dir() for sub in ("cur", "new", "tmp"))
    assert stat.S_IMODE((folder / "new").stat().st_mode) == 0o700
    work = mailbox.Maildir(bob.user("bob").maildir, factory=None).get_folder("Work")
    assert sorted(lf(bytes(m)) for m in work.values()) == sorted(lf(m) for m in sent)
    hand_to_dovecot(bob.user("bob").maildir)
    found = bob.doveadm("fetch", "-u", "bob", "hdr.message-id", "mailbox", "Work", "ALL")
    assert sorted(re.findall(r"<work-\d+@test>", found)) == message_ids(sent)
    # A second poll stores nothing again.
    assert poll(acct, data_dir, state).stored == 0
    assert len(list((folder / "new").iterdir())) == 4


def test_missing_maildir_is_made_private(
    data_dir: Path, state: State, tmp_path: Path, bob: Dovecot
) -> None:
    folder = tmp_path / "home" / "Mail" / ".Lists"
    old = os.umask(0o022)
    try:
        AccountStore(account(bob.pop3_port, maildir=str(folder)), data_dir, state)
    finally:
        os.umask(old)
    made = [folder.parents[1], folder.parent, folder, *(folder.parent / s for s in ("new",))]
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in made} == dict.fromkeys(
        (p.name for p in made), 0o700
    )
    assert (folder / FOLDER_MARKER).is_file()
    assert (folder.parent / "cur").is_dir()


def test_existing_maildir_keeps_its_modes(bob: Dovecot, data_dir: Path, state: State) -> None:
    target = bob.user("bob").maildir
    modes = {sub: stat.S_IMODE((target / sub).stat().st_mode) for sub in ("new", "cur", "tmp")}
    bob.deliver_many("alice", mails(1))
    poll(account(bob.pop3_port, maildir=str(target), share_group=False), data_dir, state)
    assert modes == {sub: stat.S_IMODE((target / sub).stat().st_mode) for sub in modes}


def test_recovery_in_a_shared_maildir_takes_only_its_own_files(
    bob: Dovecot, data_dir: Path, state: State
) -> None:
    """A crash left message 1 in bob's Maildir unrecorded; others' files stay untouched."""
    sent = mails(3)
    bob.deliver_many("alice", sent)
    target = bob.user("bob").maildir
    uids = _uids(bob)
    key = message_key("work", uids[0])
    ours = f"1700000000.M1P1R0123abcd,FD={key}.somehost"
    (target / "new" / ours).write_bytes(lf(sent[0]))
    # Files fetchd did not write, some with the key of a message being fetched in them.
    strangers = {
        "new": [f"1700000000.M2P2.host,FD={key}.eml", f"x,FD={message_key('work', uids[1])}.y"],
        "cur": ["1700000001.M3P3.otherhost:2,S"],
        "tmp": [
            "1700000002.M4P4.deliverer",
            f"1700000003.M5P5R00000000,FD={key}.host,FA=0123456789ab",
        ],
    }
    for sub, names in strangers.items():
        for name in names:
            (target / sub / name).write_bytes(b"Subject: not fetchd's\n\nhello\n")
            os.utime(target / sub / name, (1_000_000, 1_000_000))  # long stale
    result = poll(account(bob.pop3_port, maildir=str(target)), data_dir, state)
    assert result.stored == 2, "the recovered message is recorded, not stored again"
    assert "1 message(s) stored before an interruption" in " ".join(result.warnings)
    for sub, names in strangers.items():
        for name in names:
            assert (target / sub / name).exists(), f"{sub}/{name} was touched"
    mine = [p for p in (target / "new").iterdir() if SPEC_NAME.fullmatch(p.name)]
    assert sorted(p.read_bytes() for p in mine) == sorted(lf(m) for m in sent)
    assert ours in {p.name for p in mine}, "the recovered file was stored again"


def _uids(dovecot: Dovecot) -> list[str]:
    client = poplib.POP3(dovecot.host, dovecot.pop3_port, timeout=10)
    try:
        client.user("alice")
        client.pass_("secret")
        _, lines, _ = client.uidl()
        return [line.split()[1].decode() for line in lines]
    finally:
        client.quit()


# -- mda: a command ------------------------------------------------------------------------


def test_mda_delivers_into_dovecot_and_keeps_fetchds_copy(
    bob: Dovecot, data_dir: Path, state: State
) -> None:
    sent = mails(7)
    bob.deliver_many("alice", sent)
    acct = account(bob.pop3_port, mda=bob.lda_command("bob"), delete_after_fetch=True)
    result = poll(acct, data_dir, state)
    assert (result.stored, result.failed, result.deleted) == (7, 0, 7)
    assert poll(acct, data_dir, state).stored == 0
    assert message_ids(pop3_messages(bob, "bob", "secret2")) == message_ids(sent)
    own = [p.read_bytes() for p in (data_dir / "work" / "Maildir" / "new").iterdir()]
    assert sorted(own) == sorted(lf(m) for m in sent)
    assert len(attachment_folders(data_dir)) == 3
    assert state.handoffs("work") == {}


FLAKY_MDA = textwrap.dedent(
    """\
    import os, sys, time
    message = sys.stdin.buffer.read()
    inbox = sys.argv[1]
    healed = os.path.exists(os.path.join(inbox, "healed"))
    if not healed and b"Subject: defer" in message:
        sys.stderr.write("mailbox locked, try later\\n")
        sys.exit(75)
    if not healed and b"Subject: refuse" in message:
        sys.stderr.write("no such folder\\n" + "x" * 100000)
        sys.exit(67)
    if not healed and b"Subject: slow" in message:
        time.sleep(30)
    name = os.path.join(inbox, str(time.time_ns()))
    with open(name, "wb") as out:
        out.write(message)
    """
)


@pytest.fixture
def flaky_mda(tmp_path: Path) -> tuple[list[str], Path]:
    """A script that defers, refuses or hangs on chosen messages; delivers the rest."""
    script = tmp_path / "mda.py"
    script.write_text(FLAKY_MDA)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    return [os.environ.get("PYTHON", "python3"), str(script), str(inbox)], inbox


def inbox_ids(inbox: Path) -> list[str]:
    return message_ids([p.read_bytes() for p in inbox.iterdir() if p.name != "healed"])


def test_mda_failures_keep_their_message_on_the_server_and_the_rest_goes_on(
    bob: Dovecot, data_dir: Path, state: State, flaky_mda: tuple[list[str], Path]
) -> None:
    argv, inbox = flaky_mda
    good = mails(4, "good")
    bad = [make_message(s, message_id=f"<{s}@test>") for s in ("defer", "refuse", "slow")]
    bob.deliver_many("alice", [good[0], bad[0], good[1], bad[1], good[2], bad[2], good[3]])
    acct = account(bob.pop3_port, mda=argv, delete_after_fetch=True, delivery_timeout="2s")
    result = poll(acct, data_dir, state)
    assert (result.stored, result.deleted) == (4, 4)
    assert result.failed_uids == set(state.failing("work"))
    assert (result.failed, result.deferred) == (3, 1)
    assert inbox_ids(inbox) == message_ids(good)
    left = message_ids([p.read_bytes() for p in bob.messages("alice")])
    assert left == ["<defer@test>", "<refuse@test>", "<slow@test>"]
    text = "\n".join(result.warnings)
    assert "deferred" in text
    assert "mailbox locked, try later" in text
    assert "exited 67: no such folder" in text
    assert "did not finish within 2 s" in text
    assert max(len(w) for w in result.warnings) < 2600, "stderr is bounded"
    # Nothing of the failed ones is kept: they are fetched again when due.
    assert len(list((data_dir / "work" / "Maildir" / "new").iterdir())) == 4
    # The command is mended; the next poll (retries due at once) delivers the three once.
    (inbox / "healed").touch()
    _make_due(state)
    again = poll(acct, data_dir, state)
    assert (again.stored, again.failed) == (3, 0)
    assert inbox_ids(inbox) == message_ids(good + bad)
    assert bob.messages("alice") == []
    # The hung one may have delivered before it was killed: said so, not hidden.
    assert "it is there twice" in " ".join(again.warnings)


def _make_due(state: State) -> None:
    """Let every failing message be retried now (the backoff is tested elsewhere)."""
    db = state._db  # a test reaching into the state it owns
    db.execute("UPDATE message_failures SET next_attempt = 0")


def test_a_missing_mda_fails_the_messages_not_the_poll(
    bob: Dovecot, data_dir: Path, state: State
) -> None:
    bob.deliver_many("alice", mails(2))
    acct = account(bob.pop3_port, mda=["/nonexistent/mda"], delete_after_fetch=True)
    result = poll(acct, data_dir, state)
    assert (result.stored, result.failed, result.deleted) == (0, 2, 0)
    assert "cannot run /nonexistent/mda" in " ".join(result.warnings)
    assert len(bob.messages("alice")) == 2


# -- lmtp ----------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["socket", "port"])
def test_lmtp_delivers_into_dovecot_once(
    bob: Dovecot, data_dir: Path, state: State, where: str
) -> None:
    assert bob.lmtp, "Dovecot's LMTP server is not installed: apt-get install dovecot-lmtpd"
    sent = mails(6)
    bob.deliver_many("alice", sent)
    address = f"unix:{bob.lmtp_socket}" if where == "socket" else f"127.0.0.1:{bob.lmtp_port}"
    acct = account(bob.pop3_port, lmtp=address, lmtp_recipient="bob", delete_after_fetch=True)
    result = poll(acct, data_dir, state)
    assert (result.stored, result.failed, result.deleted) == (6, 0, 6)
    assert poll(acct, data_dir, state).stored == 0
    served = pop3_messages(bob, "bob", "secret2")
    assert message_ids(served) == message_ids(sent)
    assert len(attachment_folders(data_dir)) == 2


def test_lmtp_refused_recipient_keeps_the_message_and_never_repeats_the_others(
    bob: Dovecot, data_dir: Path, state: State
) -> None:
    sent = mails(2)
    bob.deliver_many("alice", sent)
    acct = account(
        bob.pop3_port,
        lmtp=f"unix:{bob.lmtp_socket}",
        lmtp_recipient=["bob", "nobody-here"],
        delete_after_fetch=True,
    )
    result = poll(acct, data_dir, state)
    assert (result.stored, result.failed, result.deferred, result.deleted) == (0, 2, 0, 0)
    assert "nobody-here: 550" in " ".join(result.warnings)
    assert len(bob.messages("alice")) == 2, "a refused message was deleted"
    assert all(h.done == ("bob",) for h in state.handoffs("work").values())
    for _ in range(2):  # retried, refused again for nobody-here; bob never gets a second copy
        _make_due(state)
        assert poll(acct, data_dir, state).stored == 0
    assert message_ids(pop3_messages(bob, "bob", "secret2")) == message_ids(sent)


def test_lmtp_server_not_listening_defers(bob: Dovecot, data_dir: Path, state: State) -> None:
    bob.deliver_many("alice", mails(2))
    acct = account(
        bob.pop3_port,
        lmtp=f"unix:{data_dir.parent / 'no-such-socket'}",
        lmtp_recipient="bob",
        delete_after_fetch=True,
    )
    result = poll(acct, data_dir, state)
    assert (result.stored, result.failed, result.deferred, result.deleted) == (0, 2, 2, 0)
    assert "cannot reach the LMTP server" in " ".join(result.warnings)
    assert state.handoffs("work") == {}, "nothing was sent: no hand-off left open"
