"""Both flush strategies work: syncfs(2) for a batch, and fsync per file."""

from __future__ import annotations

from pathlib import Path

import pytest

from fetchd.store import durable
from fetchd.store.maildir import Maildir, message_key


@pytest.mark.parametrize("mode", ["syncfs", "file"])
def test_delivery_in_each_flush_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    monkeypatch.setenv("FETCHD_FSYNC_MODE", mode)
    durable._syncfs.cache_clear()
    try:
        assert (durable._syncfs() is None) == (mode == "file")
        maildir = Maildir(tmp_path / "Maildir")
        files = []
        for uid in ("a", "b"):
            message = maildir.create(message_key("acct", uid))
            message.write(b"Subject: x\r\n\r\nbody\r")
            message.write(b"\nend\r\n")
            files.append(message)
        maildir.deliver(files)
    finally:
        durable._syncfs.cache_clear()
    delivered = sorted(path.read_bytes() for path in maildir.new.iterdir())
    assert delivered == [b"Subject: x\n\nbody\nend\n"] * 2
    assert list(maildir.tmp.iterdir()) == []
    assert set(maildir.stored_keys()) == {message_key("acct", "a"), message_key("acct", "b")}


def test_a_crash_leftover_in_tmp_is_cleaned(tmp_path: Path) -> None:
    maildir = Maildir(tmp_path / "Maildir")
    leftover = maildir.create(message_key("acct", "x"))
    leftover.write(b"partial")
    leftover.close()
    assert maildir.clean_tmp() == 1
    assert list(maildir.tmp.iterdir()) == []
    assert list(maildir.new.iterdir()) == []
