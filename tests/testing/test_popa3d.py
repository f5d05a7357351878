"""popa3d, the real server fetchd's LAST fallback is tested against."""

from __future__ import annotations

from tests.conftest import Popa3d
from tests.messages import make_message
from tests.testing.rawpop import RawPOP3


def test_last_follows_retr_and_rset(popa3d: Popa3d) -> None:
    popa3d.deliver([make_message("one"), make_message("two"), make_message("three")])
    with RawPOP3(popa3d.host, popa3d.port) as client:
        assert client.status().startswith("+OK")
        assert client.cmd("CAPA").startswith("-ERR")  # an old server: no RFC 2449
        assert client.login(popa3d.user, popa3d.password).startswith("+OK")
        assert client.cmd("STAT").startswith("+OK 3 ")
        assert client.cmd("LAST") == "+OK 0"
        assert client.cmd("RETR 2").startswith("+OK")
        assert b"Subject: two" in client.body()
        assert client.cmd("LAST") == "+OK 2"
        assert client.cmd("RSET").startswith("+OK")
        assert client.cmd("LAST") == "+OK 0"
        assert client.cmd("QUIT").startswith("+OK")


def test_dele_removes_from_the_mbox_at_quit(popa3d: Popa3d) -> None:
    popa3d.deliver([make_message("keep"), make_message("drop")])
    with RawPOP3(popa3d.host, popa3d.port) as client:
        client.status()
        assert client.login(popa3d.user, popa3d.password).startswith("+OK")
        assert client.cmd("DELE 2").startswith("+OK")
        assert client.cmd("QUIT").startswith("+OK")
    content = popa3d.mbox.read_bytes()
    assert b"Subject: keep" in content
    assert b"Subject: drop" not in content


def test_wrong_password_is_refused(popa3d: Popa3d) -> None:
    with RawPOP3(popa3d.host, popa3d.port) as client:
        client.status()
        assert client.login(popa3d.user, "wrong").startswith("-ERR")
