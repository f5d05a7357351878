"""``replace_file``: a file rewritten whole, with its mode, or left as it was."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from fetchd.access import replace_file


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that would leave a new file writable by everyone."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("open_umask")
def test_replace_file_writes_all_of_it_with_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "grant.json"
    replace_file(path, b"first\n", 0o600)
    assert (path.read_bytes(), stat.S_IMODE(path.stat().st_mode)) == (b"first\n", 0o600)
    replace_file(path, b"second\n", 0o644)
    assert (path.read_bytes(), stat.S_IMODE(path.stat().st_mode)) == (b"second\n", 0o644)
    assert os.listdir(tmp_path) == ["grant.json"]  # no temporary file left


def test_a_failed_replace_keeps_what_was_there_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "fetchd.service"
    path.mkdir()  # a rename of a file over a folder fails
    (path / "inside").write_text("kept")
    with pytest.raises(IsADirectoryError):
        replace_file(path, b"[Unit]\n", 0o644)
    assert (path / "inside").read_text() == "kept"
    assert os.listdir(tmp_path) == ["fetchd.service"]


def test_a_missing_folder_is_an_error_not_made(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        replace_file(tmp_path / "absent" / "file", b"x", 0o600)
    assert not (tmp_path / "absent").exists()
