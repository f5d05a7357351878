"""Whole polls against a scripted hostile server: nothing lost, nothing misfiled.

Every test ends with the same check (``assert_faithful``): each message the
state records as stored is on disk under its own UID with exactly the content
the server holds for that UID, nothing was stored twice, and nothing the
server deleted was left unstored.
"""

from __future__ import annotations

import contextlib
import random
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fetchd.errors import NetworkTimeout, ProtocolError, ReplyTooLongError
from fetchd.poll import PollResult, poll_account
from fetchd.store.state import State
from fetchd.testing.server import Mailbox, POP3TestServer
from tests.accounts import account
from tests.messages import make_message

Start = Callable[..., POP3TestServer]
Hook = Callable[[Any, str], bool]


def poll(server: POP3TestServer, data_dir: Path, state: State, **settings: Any) -> PollResult:
    return poll_account(account(server.port, **{"timeout": 2, **settings}), data_dir, state)


def messages(count: int, body: str = "hello\n") -> list[bytes]:
    return [make_message(f"m{i}", body * (i + 1), message_id=f"<m{i}@test>") for i in range(count)]


def assert_faithful(data_dir: Path, state: State, originals: dict[str, bytes]) -> None:
    """Every recorded message is on disk under its own UID, exactly as the server had it."""
    new = data_dir / "work" / "Maildir" / "new"
    on_disk = sorted(p.read_bytes() for p in new.iterdir()) if new.exists() else []
    rows = {row.uid: row for row in state.listing("work")}
    assert len(on_disk) == len(set(on_disk)), "a message was stored twice"
    for uid, row in rows.items():
        assert row.path is not None
        content = (data_dir / row.path).read_bytes()
        assert content == originals[uid].replace(b"\r\n", b"\n"), f"{uid!r} holds another message"
    assert len(rows) == len(on_disk)


UIDS = [f"uid-{i}" for i in range(10)]


def server_with(
    start: Start, mail: list[bytes], **hooks: Hook
) -> tuple[POP3TestServer, dict[str, bytes]]:
    """A server holding ``mail`` under the UIDs ``UIDS[0]``, ``UIDS[1]`` ..."""
    server = start(Mailbox(mail, uidls=UIDS[: len(mail)]), hooks=hooks)
    return server, dict(zip(UIDS, mail, strict=False))


# -- replies paired with the wrong command -----------------------------------


def target(session: Any, arg: str, uid: str) -> bool:
    """Whether ``arg`` names the message ``uid`` (numbers shift as messages go)."""
    found = session.message(arg) if arg.isdigit() else None
    return found is not None and found.uidl == uid


def reply_twice(uid: str) -> Hook:
    """The server answers RETR of ``uid`` twice (one reply too many)."""

    def hook(session: Any, arg: str) -> bool:
        if not target(session, arg, uid):
            return False
        session.cmd_retr(arg)
        session.cmd_retr(arg)
        return True

    return hook


@pytest.mark.parametrize("pipelining", [True, False])
@pytest.mark.parametrize("delete", [True, False])
def test_a_reply_too_many_never_misfiles_or_deletes(
    pop3_server: Start, data_dir: Path, state: State, pipelining: bool, delete: bool
) -> None:
    mail = messages(6)
    server, originals = server_with(pop3_server, mail, RETR=reply_twice(UIDS[1]))
    server.options.pipelining = pipelining
    for _ in range(3):
        with contextlib.suppress(ProtocolError):
            poll(server, data_dir, state, delete_after_fetch=delete)
        assert_faithful(data_dir, state, originals)
    culprit = UIDS[1]
    assert set(state.failing("work")) == {culprit}  # blamed exactly, the others through
    assert len(state.listing("work")) == 5
    server.options.hooks = {}
    state.clear_failures("work", [culprit])  # as if its backoff had passed
    poll(server, data_dir, state, delete_after_fetch=delete)
    assert_faithful(data_dir, state, originals)
    assert len(state.listing("work")) == 6
    if delete:
        assert server.mailbox.snapshot() == []


def test_same_size_replies_shifted_are_caught_by_the_batch_check(
    pop3_server: Start, data_dir: Path, state: State
) -> None:
    """Equal sizes defeat the size check; LIST n before the commit does not."""
    mail = [make_message("same", "x" * 100, message_id=f"<same-{i}@t>") for i in range(4)]
    server, _ = server_with(pop3_server, mail, RETR=reply_twice(UIDS[0]))
    with pytest.raises(ProtocolError):
        poll(server, data_dir, state, delete_after_fetch=True)
    assert state.listing("work") == []
    assert len(server.mailbox.snapshot()) == 4


# -- one bad message among good ones -------------------------------------------


def refuse(uid: str) -> Hook:
    def hook(session: Any, arg: str) -> bool:
        if not target(session, arg, uid):
            return False
        session.reply("-ERR cannot read this message")
        return True

    return hook


def test_a_message_the_server_cannot_send_does_not_block_the_rest(
    pop3_server: Start, data_dir: Path, state: State
) -> None:
    mail = messages(5)
    server, originals = server_with(pop3_server, mail, RETR=refuse(UIDS[1]))
    bad = UIDS[1]
    first = poll(server, data_dir, state, delete_after_fetch=True)
    assert first.stored == 4
    assert first.failed_uids == {bad}
    failure = state.failing("work")[bad]
    assert failure.count == 2  # the second session of the poll tried it once more
    assert "cannot read this message" in failure.error
    assert failure.next_attempt > time.time() + 600  # then it backs off
    second = poll(server, data_dir, state, delete_after_fetch=True)
    assert (second.stored, second.failed) == (0, 0)  # not even tried while backing off
    assert [uid for uid, _ in server.mailbox.snapshot()] == [bad]  # never deleted
    assert_faithful(data_dir, state, originals)


def lie_about_size(uid: str, sent: int) -> Hook:
    """LIST says the real size; RETR of ``uid`` sends ``sent`` octets of body and more."""

    def hook(session: Any, arg: str) -> bool:
        if not target(session, arg, uid):
            return False
        session.reply("+OK")
        line = b"X" * 998 + b"\r\n"
        for _ in range(sent // len(line) + 1):
            session.conn.sendall(line)
        session.conn.sendall(b".\r\n")
        return True

    return hook


def test_a_body_far_longer_than_listed_is_cut_off_and_the_rest_stored(
    pop3_server: Start, data_dir: Path, state: State
) -> None:
    mail = messages(4)
    server, originals = server_with(pop3_server, mail, RETR=lie_about_size(UIDS[1], 8 << 20))
    bad = UIDS[1]
    result = poll(server, data_dir, state, delete_after_fetch=True)
    assert result.stored == 3
    assert bad in state.failing("work")
    assert "octets" in state.failing("work")[bad].error
    maildir = data_dir / "work" / "Maildir"
    assert all(p.stat().st_size < 2 << 20 for p in maildir.rglob("*") if p.is_file())
    assert list((maildir / "tmp").iterdir()) == []
    assert [uid for uid, _ in server.mailbox.snapshot()] == [bad]
    assert_faithful(data_dir, state, originals)


def test_a_body_of_another_size_is_kept_only_as_its_own_retr_reply(
    pop3_server: Start, data_dir: Path, state: State
) -> None:
    """The server answers RETR 3 with another body each time: that is its message 3.

    The pipelined session drops its batch at the surprise; the careful one
    reads each reply alone and proves it RETR's own with UIDL 3.
    """
    mail = messages(3)
    server, originals = server_with(pop3_server, mail, RETR=lie_about_size(UIDS[2], 5000))
    result = poll(server, data_dir, state, delete_after_fetch=True)
    assert (result.stored, result.careful) == (3, True)
    assert any("sizes are not exact" in warning for warning in result.warnings)
    assert state.failing("work") == {}
    served = (b"X" * 998 + b"\r\n") * (5000 // 1000 + 1)
    assert_faithful(data_dir, state, {**originals, UIDS[2]: served})
    assert server.mailbox.snapshot() == []


@pytest.mark.parametrize("uidl", [True, False])
@pytest.mark.parametrize("off_by", [300, -300])
def test_listed_sizes_that_are_not_exact_still_fetch_everything_once(
    pop3_server: Start, data_dir: Path, state: State, uidl: bool, off_by: int
) -> None:
    """Every size STAT and LIST say is off: each message is proven its own reply
    (UIDL n, or LIST n without UIDL), stored once, and deleted only then."""
    mail = messages(4, body="a line of text long enough to count\n" * 20)
    server, originals = server_with(pop3_server, mail)
    server.options.listed_sizes_off_by = off_by
    server.options.uidl = uidl
    result = poll(server, data_dir, state, delete_after_fetch=True)
    assert result.stored == 4
    assert sum("sizes are not exact" in warning for warning in result.warnings) == 4
    assert server.mailbox.snapshot() == []
    if uidl:
        assert_faithful(data_dir, state, originals)
    stored = data_dir / "work" / "Maildir" / "new"
    assert sorted(p.read_bytes() for p in stored.iterdir()) == sorted(
        m.replace(b"\r\n", b"\n") for m in mail
    )
    assert poll(server, data_dir, state).stored == 0


def test_a_server_with_loose_sizes_is_polled_carefully_at_once_until_mended(
    pop3_server: Start, data_dir: Path, state: State
) -> None:
    """The pipelined batch that met a loose size is paid for once, not at every poll:
    later polls start careful (one session each), and a careful poll whose messages
    all came in their listed size gives the server its pipelining back."""
    body = "a line of text long enough to count\n" * 20
    server = pop3_server(Mailbox(messages(3, body=body)))
    server.options.listed_sizes_off_by = 300

    first = poll(server, data_dir, state)
    assert (first.stored, first.careful) == (3, True)
    assert any("ended the session" in reason for reason in first.session_reasons)
    assert state.careful_since("work") is not None

    server.mailbox.add(make_message("m3", body, message_id="<m3@test>"))
    second = poll(server, data_dir, state)
    assert (second.stored, second.sessions, second.loose_sizes) == (1, 1, True)
    assert state.careful_since("work") is not None

    assert poll(server, data_dir, state).stored == 0  # nothing fetched: nothing learnt
    assert state.careful_since("work") is not None

    server.options.listed_sizes_off_by = 0
    server.mailbox.add(make_message("m4", body, message_id="<m4@test>"))
    mended = poll(server, data_dir, state)
    assert (mended.stored, mended.sessions, mended.loose_sizes) == (1, 1, False)
    assert state.careful_since("work") is None

    server.mailbox.add(make_message("m5", body, message_id="<m5@test>"))
    assert (poll(server, data_dir, state).careful, len(state.known("work"))) == (False, 6)


def stray_status_line(uid: str) -> Hook:
    """Before its reply to RETR of ``uid``, the server sends a stray status line."""

    def hook(session: Any, arg: str) -> bool:
        if not target(session, arg, uid):
            return False
        session.reply("+OK")
        session.cmd_retr(arg)
        return True

    return hook


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_stray_status_line_never_ends_up_in_a_message(
    pop3_server: Start, data_dir: Path, state: State, pipelining: bool
) -> None:
    """Read as RETR's status, a stray "+OK" leaves the real status line as the
    body's first line; the body may still be within LIST's size give or take
    its line ends, so the size check alone would let it through."""
    mail = messages(3, body="short line\n" * 40)
    server, originals = server_with(pop3_server, mail, RETR=stray_status_line(UIDS[1]))
    server.options.pipelining = pipelining
    result = poll(server, data_dir, state, delete_after_fetch=True)
    assert UIDS[1] in state.failing("work")
    assert "starts like a status line" in state.failing("work")[UIDS[1]].error
    assert result.stored == 2
    assert [uid for uid, _ in server.mailbox.snapshot()] == [UIDS[1]]
    assert_faithful(data_dir, state, originals)


def test_repeated_ids_are_fetched_and_proven_under_their_new_names(
    pop3_server: Start, data_dir: Path, state: State
) -> None:
    """Two messages under one id: the second is listed as "id#2", and the batch
    check's UIDL n, which says "id", still names it."""
    mail = messages(3)
    server = pop3_server(Mailbox(mail, uidls=["same", "same", "other"]))
    result = poll(server, data_dir, state, delete_after_fetch=True)
    assert result.stored == 3
    assert set(state.known("work")) == {"same", "same#2", "other"}
    assert server.mailbox.snapshot() == []


def list_leaves_out(number: str) -> Hook:
    """LIST (the whole listing) leaves message ``number`` out; UIDL lists it."""

    def hook(session: Any, arg: str) -> bool:
        if arg:
            return False
        lines = [f"{m.number} {m.size}" for m in session.live() if str(m.number) != number]
        session.reply_lines(f"+OK {len(lines)} messages", lines)
        return True

    return hook


def test_a_message_list_leaves_out_is_still_fetched_once(
    pop3_server: Start, data_dir: Path, state: State
) -> None:
    """Its size is unknown (0): the body is proven its own and the batch checked by UIDL n."""
    mail = messages(3)
    server, originals = server_with(pop3_server, mail, LIST=list_leaves_out("3"))
    result = poll(server, data_dir, state, delete_after_fetch=True)
    assert result.stored == 3
    assert any("different message numbers" in warning for warning in result.warnings)
    assert server.mailbox.snapshot() == []
    assert_faithful(data_dir, state, originals)


def _scenarios(count: int) -> list[tuple[int, str, int, bool, bool]]:
    """Loose sizes (none, too big, too small) with one fault on one message, drawn
    once from a fixed seed: (off_by, fault, victim, pipelining, delete)."""
    draw = random.Random(1939)
    faults = ["reply_twice", "stray_status_line", "refuse"]
    return [
        (
            draw.choice([0, 300, -300]),
            draw.choice(faults),
            draw.randrange(5),
            draw.random() < 0.5,
            draw.random() < 0.5,
        )
        for _ in range(count)
    ]


@pytest.mark.parametrize(("off_by", "fault", "victim", "pipelining", "delete"), _scenarios(12))
def test_loose_sizes_and_a_fault_never_misfile_lose_or_delete_unstored(
    pop3_server: Start,
    data_dir: Path,
    state: State,
    off_by: int,
    fault: str,
    victim: int,
    pipelining: bool,
    delete: bool,
) -> None:
    """A server whose sizes are off, and which also misbehaves on one message:
    every poll leaves each stored message under its own id and nothing deleted
    unstored; once the fault is gone, everything is fetched exactly once."""
    mail = messages(5, body="a line of text, forty octets or so long\n" * 12)
    hook = {"reply_twice": reply_twice, "stray_status_line": stray_status_line}.get(fault, refuse)
    server, originals = server_with(pop3_server, mail, RETR=hook(UIDS[victim]))
    server.options.listed_sizes_off_by = off_by
    server.options.pipelining = pipelining
    for _ in range(3):
        with contextlib.suppress(ProtocolError):
            poll(server, data_dir, state, delete_after_fetch=delete)
        assert_faithful(data_dir, state, originals)
        left = {uid for uid, _ in server.mailbox.snapshot()}
        assert all(uid in left or uid in state.known("work") for uid in originals)
    server.options.hooks = {}
    state.clear_failures("work", list(originals))
    poll(server, data_dir, state, delete_after_fetch=delete)
    assert_faithful(data_dir, state, originals)
    assert set(state.known("work")) == set(originals)
    assert server.mailbox.snapshot() == ([] if delete else list(zip(UIDS, mail, strict=False)))


# -- hostile listings ------------------------------------------------------------


def test_uids_differing_in_one_octet_stay_distinct(
    pop3_server: Start, data_dir: Path, state: State
) -> None:
    mail = messages(3)
    server = pop3_server(Mailbox(mail, uidls=["u\xff", "u\xfe", "u\x0bv"]))
    result = poll(server, data_dir, state)
    assert result.stored == 3
    # The octets 0xFF and 0xFE, kept apart (surrogateescape), and VT inside a UID.
    assert set(state.known("work")) == {"u" + chr(0xDCFF), "u" + chr(0xDCFE), "u\x0bv"}
    assert poll(server, data_dir, state).stored == 0


def endless(status: str) -> Hook:
    def hook(session: Any, arg: str) -> bool:
        if arg:
            return False
        session.reply(status)
        line = b"1 " + b"z" * 60 + b"\r\n"
        try:
            for _ in range(400_000):  # 25 MB, far past any cap for three messages
                session.conn.sendall(line)
        except OSError:
            pass  # the client hung up, as it should
        return True

    return hook


@pytest.mark.parametrize("verb", ["UIDL", "LIST", "CAPA"])
def test_an_endless_listing_ends_in_a_clear_error(
    pop3_server: Start, data_dir: Path, state: State, verb: str
) -> None:
    server, _ = server_with(pop3_server, messages(3), **{verb: endless("+OK here it comes")})
    with pytest.raises(ReplyTooLongError):
        poll(server, data_dir, state, delete_after_fetch=True)
    assert state.listing("work") == []
    assert len(server.mailbox.snapshot()) == 3


def trickle(uid: str, delay: float) -> Hook:
    """RETR of ``uid`` sends its body one octet every ``delay`` seconds."""

    def hook(session: Any, arg: str) -> bool:
        if not target(session, arg, uid):
            return False
        session.reply("+OK")
        try:
            for _ in range(100_000):
                session.conn.sendall(b"x")
                time.sleep(delay)
        except OSError:
            pass
        return True

    return hook


def test_a_trickling_server_cannot_hold_a_poll(
    pop3_server: Start, data_dir: Path, state: State
) -> None:
    mail = messages(3, body="y" * 2000 + "\n")
    server, originals = server_with(pop3_server, mail, RETR=trickle(UIDS[1], 0.2))
    started = time.monotonic()
    with contextlib.suppress(NetworkTimeout):
        poll(server, data_dir, state, timeout=1)
    assert time.monotonic() - started < 30
    assert UIDS[1] in state.failing("work")
    assert_faithful(data_dir, state, originals)


def test_garbage_after_a_reply_stops_the_session_before_any_dele(
    pop3_server: Start, data_dir: Path, state: State
) -> None:
    def noise(session: Any, arg: str) -> bool:
        session.cmd_retr(arg)
        if arg == "3":
            session.conn.sendall(b"+OK surprise\r\n")
        return True

    server, originals = server_with(pop3_server, messages(3), RETR=noise)
    server.options.pipelining = False
    with pytest.raises(ProtocolError):
        poll(server, data_dir, state, delete_after_fetch=True)
    assert len(server.mailbox.snapshot()) == 3
    assert_faithful(data_dir, state, originals)


def test_a_dropped_connection_mid_body_keeps_what_came_before(
    pop3_server: Start, data_dir: Path, state: State
) -> None:
    mail = messages(4, body="z" * 500 + "\n")
    server, originals = server_with(pop3_server, mail)
    server.options.drop_during_retr = 3
    result = poll(server, data_dir, state, delete_after_fetch=True)
    assert result.stored >= 2
    server.options.drop_during_retr = None
    poll(server, data_dir, state, delete_after_fetch=True)
    poll(server, data_dir, state, delete_after_fetch=True)
    assert_faithful(data_dir, state, originals)
    assert len(state.listing("work")) + len(server.mailbox.snapshot()) >= 4


def test_nothing_is_read_from_a_port_that_never_answers(data_dir: Path, state: State) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(NetworkTimeout):
            poll_account(account(port, timeout=1), data_dir, state)
        assert time.monotonic() - started < 10
