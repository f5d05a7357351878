"""One account's poll against real Dovecot and the scriptable server."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest

from fetchd.config import AccountConfig
from fetchd.errors import AccountLockedError, NetworkTimeout
from fetchd.poll import PollResult, poll_account
from fetchd.store.account import AccountStore
from fetchd.store.maildir import Maildir, message_key
from fetchd.store.state import State
from fetchd.testing.dovecot import Dovecot
from fetchd.testing.server import Mailbox, POP3TestServer
from tests.accounts import account
from tests.messages import make_message

Start = Callable[..., POP3TestServer]


def stored(data_dir: Path) -> list[bytes]:
    new = data_dir / "work" / "Maildir" / "new"
    return [path.read_bytes() for path in sorted(new.iterdir())]


def lf(message: bytes) -> bytes:
    return message.replace(b"\r\n", b"\n")


def subjects(data_dir: Path) -> list[str]:
    return sorted(
        str(message_from_bytes(m, policy=default_policy)["Subject"]) for m in stored(data_dir)
    )


def poll(acct: AccountConfig, data_dir: Path, state: State, **kw: Any) -> PollResult:
    return poll_account(acct, data_dir, state, **kw)


ATTACHMENTS = [
    ("report.pdf", os.urandom(3000), "application/pdf"),
    ("Übersicht März.xlsx", os.urandom(5000), "application/vnd.ms-excel"),
    ("photo.jpg", os.urandom(20000), "image/jpeg"),
]


def test_mixed_mailbox_is_stored_once_with_attachments(
    dovecot_alice: Dovecot, data_dir: Path, state: State
) -> None:
    messages = [make_message(f"plain {i}") for i in range(5)]
    messages.append(make_message("with files", attachments=ATTACHMENTS))
    dovecot_alice.deliver_many("alice", messages)
    acct = account(dovecot_alice.pop3_port)

    result = poll(acct, data_dir, state)
    assert (result.new, result.stored) == (6, 6)
    assert sorted(stored(data_dir)) == sorted(lf(m) for m in messages)
    assert all(p.name.endswith(".eml") for p in (data_dir / "work/Maildir/new").iterdir())
    [folder] = (data_dir / "work" / "attachments").iterdir()
    assert "with files" in folder.name
    for name, content, _ in ATTACHMENTS:
        assert (
            hashlib.sha256((folder / name).read_bytes()).digest()
            == hashlib.sha256(content).digest()
        )
    assert (folder / "message.eml").read_bytes() == lf(messages[-1])

    again = poll(acct, data_dir, state)
    assert (again.new, again.stored) == (0, 0)
    assert len(stored(data_dir)) == 6
    assert len(dovecot_alice.messages("alice")) == 6  # kept on the server


def test_new_mail_between_passes_is_fetched_once(
    dovecot_alice: Dovecot, data_dir: Path, state: State
) -> None:
    acct = account(dovecot_alice.pop3_port)
    dovecot_alice.deliver("alice", make_message("first"))
    poll(acct, data_dir, state)
    dovecot_alice.deliver("alice", make_message("second"))
    result = poll(acct, data_dir, state)
    assert result.stored == 1
    assert subjects(data_dir) == ["first", "second"]


def test_delete_after_fetch_empties_the_server(
    dovecot_alice: Dovecot, data_dir: Path, state: State
) -> None:
    dovecot_alice.deliver_many("alice", [make_message(f"m{i}") for i in range(4)])
    result = poll(account(dovecot_alice.pop3_port, delete_after_fetch=True), data_dir, state)
    assert (result.stored, result.deleted) == (4, 4)
    assert dovecot_alice.messages("alice") == []
    assert len(stored(data_dir)) == 4
    assert all(not known.on_server for known in state.known("work").values())


def test_mark_seen_downloads_nothing(dovecot_alice: Dovecot, data_dir: Path, state: State) -> None:
    dovecot_alice.deliver_many("alice", [make_message(f"old {i}") for i in range(3)])
    acct = account(dovecot_alice.pop3_port)
    result = poll(acct, data_dir, state, mark_seen=True)
    assert (result.new, result.stored) == (3, 0)
    dovecot_alice.deliver("alice", make_message("fresh"))
    poll(acct, data_dir, state)
    assert subjects(data_dir) == ["fresh"]


def test_malformed_mime_is_still_stored(
    dovecot_alice: Dovecot, data_dir: Path, state: State
) -> None:
    broken = (
        b"From: x@example.org\r\nSubject: broken\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="zz"\r\n\r\n--zz\r\n'
        b"Content-Type: application/pdf; name=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"JVBERi0x!!!not base64\r\n"  # and no closing boundary
    )
    dovecot_alice.deliver("alice", broken)
    result = poll(account(dovecot_alice.pop3_port), data_dir, state)
    assert result.stored == 1
    assert stored(data_dir) == [lf(broken)]


def test_oversized_messages_are_skipped_or_headers_only(
    dovecot_alice: Dovecot, data_dir: Path, state: State
) -> None:
    big = make_message("big", "x" * 50_000)
    dovecot_alice.deliver_many("alice", [make_message("small"), big])
    skip = poll(account(dovecot_alice.pop3_port, max_message_size=10_000), data_dir, state)
    assert (skip.stored, skip.skipped) == (1, 1)
    heads = poll(
        account(dovecot_alice.pop3_port, max_message_size=10_000, fetch_oversized="headers"),
        data_dir,
        state,
    )
    assert heads.stored == 1
    assert sorted(stored(data_dir), key=len)[-1] == lf(big.split(b"\r\n\r\n")[0] + b"\r\n\r\n")


def test_last_only_server(pop3_server: Start, data_dir: Path, state: State) -> None:
    mailbox = Mailbox([make_message(f"m{i}") for i in range(4)])
    server = pop3_server(mailbox, uidl=False, last=True, capa=False)
    acct = account(server.port)
    assert poll(acct, data_dir, state).stored == 4
    mailbox.add(make_message("m4"))
    again = poll(acct, data_dir, state)
    assert again.stored == 1
    assert any("LAST" in warning for warning in again.warnings)
    assert len(stored(data_dir)) == 5


def test_server_without_uidl_or_last(pop3_server: Start, data_dir: Path, state: State) -> None:
    mailbox = Mailbox([make_message(f"m{i}") for i in range(3)])
    server = pop3_server(mailbox, uidl=False, last=False)
    acct = account(server.port)
    first = poll(acct, data_dir, state)
    assert first.stored == 3
    assert any("digest" in warning for warning in first.warnings)
    assert poll(acct, data_dir, state).stored == 0


def test_popa3d_last(popa3d: Any, data_dir: Path, state: State) -> None:
    popa3d.deliver([make_message(f"p{i}") for i in range(3)])
    acct = account(popa3d.port, username=popa3d.user, password=popa3d.password)
    assert poll(acct, data_dir, state).stored == 3
    assert poll(acct, data_dir, state).stored == 0
    assert len(stored(data_dir)) == 3


def test_mailbox_in_slices_is_fetched_in_one_poll(
    pop3_server: Start, data_dir: Path, state: State
) -> None:
    server = pop3_server([make_message(f"m{i}") for i in range(10)], max_messages_per_session=4)
    result = poll(account(server.port), data_dir, state)
    assert result.stored == 10
    assert result.sessions >= 3
    assert all("were new" in reason for reason in result.session_reasons)


def test_new_mail_beside_old_mail_takes_one_session(
    pop3_server: Start, data_dir: Path, state: State
) -> None:
    mailbox = Mailbox([make_message(f"m{i}") for i in range(3)])
    server = pop3_server(mailbox)
    first = poll(account(server.port), data_dir, state)
    # All it listed was new: it might have been a slice, so a second session looked.
    assert (first.stored, first.sessions) == (3, 2)
    assert "all 3 messages listed were new" in first.session_reasons[0]
    mailbox.add(make_message("later"))
    again = poll(account(server.port), data_dir, state)
    # The server showed old mail too: the whole mailbox, so no second login.
    assert (again.stored, again.sessions, again.session_reasons) == (1, 1, [])


def test_duplicate_uidls_lose_nothing(pop3_server: Start, data_dir: Path, state: State) -> None:
    mailbox = Mailbox([make_message("a"), make_message("b")], uidls=["same", "same"])
    server = pop3_server(mailbox)
    result = poll(account(server.port), data_dir, state)
    assert result.stored == 2
    assert poll(account(server.port), data_dir, state).stored == 0


def test_broken_quit_keeps_messages_marked_on_server(
    pop3_server: Start, data_dir: Path, state: State
) -> None:
    mailbox = Mailbox([make_message(f"m{i}") for i in range(3)])
    server = pop3_server(mailbox, stall_on="QUIT")
    acct = account(server.port, delete_after_fetch=True, timeout=0.5)
    with pytest.raises(NetworkTimeout):
        poll(acct, data_dir, state)
    assert len(mailbox.messages) == 3  # no QUIT, no UPDATE
    assert all(known.on_server for known in state.known("work").values())
    server.stop()  # the stalled session would hold the maildrop lock
    acct = account(pop3_server(mailbox).port, delete_after_fetch=True)
    result = poll(acct, data_dir, state)
    assert (result.stored, result.deleted) == (0, 3)
    assert mailbox.messages == []
    assert len(stored(data_dir)) == 3


def test_concurrent_poll_of_one_account_is_refused(data_dir: Path, state: State) -> None:
    with AccountStore(account(1), data_dir, state).lock(), pytest.raises(AccountLockedError):
        poll(account(1), data_dir, state)


def test_expire_zero_warns_a_user_who_keeps_mail(
    pop3_server: Start, data_dir: Path, state: State
) -> None:
    server = pop3_server([make_message("m")], expire="0")
    result = poll(account(server.port), data_dir, state)
    assert any("EXPIRE 0" in warning for warning in result.warnings)
    deleting = poll(account(server.port, delete_after_fetch=True), data_dir, state)
    assert not any("EXPIRE 0" in warning for warning in deleting.warnings)


def test_message_stored_before_a_crash_is_recorded_not_refetched(
    pop3_server: Start, data_dir: Path, state: State
) -> None:
    messages = [make_message(f"m{i}") for i in range(3)]
    mailbox = Mailbox(messages)
    server = pop3_server(mailbox)
    # As if a crash hit between the rename into new/ and the commit of the UIDL.
    maildir = Maildir(data_dir / "work" / "Maildir")
    early = maildir.create(message_key("work", mailbox.ids[1]))
    early.write(messages[1])
    maildir.deliver([early])

    result = poll(account(server.port, delete_after_fetch=True), data_dir, state)
    assert result.stored == 2  # the other two; the early one is recorded, not fetched
    assert any("interruption" in warning for warning in result.warnings)
    assert result.deleted == 3
    assert sorted(stored(data_dir)) == sorted(lf(m) for m in messages)
    retrieved = [
        line for side, line in server.transcript if side == "C" and line.startswith("RETR")
    ]
    assert retrieved == ["RETR 1", "RETR 3"]


def test_headers_only_messages_are_never_deleted(
    dovecot_alice: Dovecot, data_dir: Path, state: State
) -> None:
    dovecot_alice.deliver_many("alice", [make_message("small"), make_message("big", "x" * 50_000)])
    acct = account(
        dovecot_alice.pop3_port,
        max_message_size=10_000,
        fetch_oversized="headers",
        delete_after_fetch=True,
    )
    first = poll(acct, data_dir, state)
    assert (first.stored, first.deleted) == (2, 1)
    poll(acct, data_dir, state)
    [left] = dovecot_alice.messages("alice")  # the big one: only its headers are on disk
    assert b"Subject: big" in left.read_bytes()


def test_legacy_headers_file_is_not_taken_for_the_whole_message(
    pop3_server: Start, data_dir: Path, state: State
) -> None:
    """Files written before the name told the kinds apart: the size tells them apart."""
    big = make_message("big", "z" * 30_000)
    mailbox = Mailbox([big])
    server = pop3_server(mailbox)
    maildir = Maildir(data_dir / "work" / "Maildir")
    legacy = maildir.create(message_key("work", mailbox.ids[0]))  # tagged "whole"
    legacy.write(big.split(b"\r\n\r\n")[0] + b"\r\n\r\n")
    maildir.deliver([legacy])

    result = poll(account(server.port, delete_after_fetch=True), data_dir, state)
    assert (result.stored, result.deleted) == (0, 0)
    assert state.known("work")[mailbox.ids[0]].status == "headers"
    assert [uid for uid, _ in mailbox.snapshot()] == mailbox.ids
