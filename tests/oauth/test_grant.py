"""The grant file: replaced whole, private, and a failed write said as such."""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

import pytest

from fetchd.errors import StorageError
from fetchd.oauth import Grant, GrantFile

GRANT = Grant(
    access_token="access-canary",
    refresh_token="refresh-canary",
    expires_at=2000.0,
    obtained_at=1000.0,
    token_url="https://t.example/token",
    client_id="app",
)


def test_a_saved_grant_is_private_and_reads_back(tmp_path: Path) -> None:
    grants = GrantFile("work", tmp_path / "oauth" / "work.json")
    grants.save(GRANT)
    assert grants.load() == GRANT
    assert stat.S_IMODE(grants.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(grants.path.parent.stat().st_mode) == 0o700
    assert os.listdir(grants.path.parent) == ["work.json"]


def test_a_failed_save_keeps_the_old_grant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    grants = GrantFile("work", tmp_path / "oauth" / "work.json")
    grants.save(GRANT)

    def failing(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", failing)
    full = f"cannot write {grants.path}: {os.strerror(errno.ENOSPC)}"
    with pytest.raises(StorageError, match=f"^{re.escape(full)}$"):
        grants.save(Grant(**{**GRANT.__dict__, "refresh_token": "rotated"}))
    monkeypatch.undo()
    assert grants.load() == GRANT
    assert os.listdir(grants.path.parent) == ["work.json"]
