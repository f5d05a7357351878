"""Extraction is idempotent and safe to interrupt: one folder per message, never debris.

A pass may extract the same stored message again (killed between the state
commit and the index, a full disk, a rebuilt state). These tests kill real
processes at the points that matter, fill real and simulated disks, and check
that the attachments root ends up with exactly one complete folder.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fetchd.errors import StorageError
from fetchd.mime import extraction, folders
from fetchd.mime.attachments import (
    MESSAGE_FILE,
    AttachmentPolicy,
    ExtractResult,
    extract,
    remove_partial,
)
from fetchd.mime.parts import MAX_DEPTH
from tests.mime.test_attachments import (
    PDF,
    inner_message,
    mixed_message,
    nested,
    new_message,
    store,
    tnef_message,
)
from tests.mime.test_tnef import TnefEntry, build_tnef

ROOT = "attachments"


def snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under ``root`` with its inode, size and modification time."""
    found = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        found[str(path.relative_to(root))] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return found


def folders_in(root: Path) -> list[str]:
    return sorted(entry.name for entry in root.iterdir()) if root.exists() else []


def extract_at(eml: Path, tmp_path: Path, policy: AttachmentPolicy | None = None) -> ExtractResult:
    return extract(eml, tmp_path / ROOT, policy or AttachmentPolicy())


# --- the same message again ---------------------------------------------------------------------


def test_extracting_again_returns_the_same_result_and_writes_nothing(tmp_path: Path) -> None:
    eml = store(tmp_path, mixed_message())
    first = extract_at(eml, tmp_path)
    assert first.folder is not None
    before = snapshot(tmp_path / ROOT)
    for _ in range(3):
        assert extract_at(eml, tmp_path) == first
    assert snapshot(tmp_path / ROOT) == before
    assert folders_in(tmp_path / ROOT) == [first.folder.name]


def test_warnings_come_back_with_the_folder(tmp_path: Path) -> None:
    msg = new_message()
    msg.set_content("x")
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="big.pdf")
    msg.add_attachment(b"small", maintype="application", subtype="pdf", filename="small.pdf")
    eml = store(tmp_path, msg.as_bytes())
    policy = AttachmentPolicy(max_size=1000)
    first = extract_at(eml, tmp_path, policy)
    assert [path.name for path in first.files] == ["small.pdf"]
    assert first.warnings == ("big.pdf: skipped, 300009 bytes is over the 1000-byte limit",)
    assert extract_at(eml, tmp_path, policy) == first


@pytest.mark.parametrize("kind", ["winmail.dat", "nested", "forwarded", "uuencode"])
def test_every_kind_of_attachment_comes_back_the_same(tmp_path: Path, kind: str) -> None:
    if kind == "winmail.dat":
        entries = [TnefEntry(title="a.pdf", data=b"a" * 100), TnefEntry(title="a.pdf", data=b"b")]
        raw = tnef_message(build_tnef(entries))
    elif kind == "nested":
        raw = nested(MAX_DEPTH + 3)
    elif kind == "forwarded":
        outer = new_message("Fwd")
        outer.set_content("below")
        outer.add_attachment(inner_message())
        raw = outer.as_bytes()
    else:
        raw = mixed_message()
    eml = store(tmp_path, raw)
    first = extract_at(eml, tmp_path, AttachmentPolicy(max_size=200_000))
    assert first.files
    before = snapshot(tmp_path / ROOT)
    assert extract_at(eml, tmp_path, AttachmentPolicy(max_size=200_000)) == first
    assert snapshot(tmp_path / ROOT) == before


def test_each_message_finds_its_own_folder_among_same_titles(tmp_path: Path) -> None:
    emls = [store(tmp_path, mixed_message(), f"{n}.eml") for n in range(3)]
    results = [extract_at(eml, tmp_path) for eml in emls]
    names = [r.folder.name for r in results if r.folder]
    base = "2026-11-26 14.02 Alice Smith - Invoice 42"
    assert names == [base, f"{base} (2)", f"{base} (3)"]
    for eml, result in reversed(list(zip(emls, results, strict=True))):
        assert extract_at(eml, tmp_path) == result
    assert folders_in(tmp_path / ROOT) == sorted(names)


def test_the_folder_is_still_found_after_the_message_is_read(tmp_path: Path) -> None:
    """A mail client moves new/ to cur/ and adds flags: the inode stays."""
    eml = store(tmp_path, mixed_message())
    first = extract_at(eml, tmp_path)
    read = eml.parent.parent / "cur" / (eml.name + ":2,S")
    read.parent.mkdir()
    eml.rename(read)
    assert extract_at(read, tmp_path) == first


def test_a_copied_message_is_recognised_by_its_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    eml = store(tmp_path, mixed_message())
    first = extract_at(eml, tmp_path)
    assert first.folder is not None
    assert (first.folder / MESSAGE_FILE).stat().st_ino != eml.stat().st_ino
    before = snapshot(tmp_path / ROOT)
    assert extract_at(eml, tmp_path) == first
    assert snapshot(tmp_path / ROOT) == before


def test_a_copy_of_another_message_with_the_same_title_is_not_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "link", lambda *_a, **_k: (_ for _ in ()).throw(OSError(18, "no")))
    one = store(tmp_path, mixed_message(), "one.eml")
    other = store(tmp_path, mixed_message().replace(b"see attached", b"see ATTACHED"), "2.eml")
    first = extract_at(one, tmp_path)
    second = extract_at(other, tmp_path)
    assert first.folder != second.folder
    assert extract_at(other, tmp_path) == second


def _no_links(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on another filesystem than the Maildir: every hard link fails with EXDEV."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    monkeypatch.setattr(os, "link", refuse)


def test_a_copy_is_marked_with_the_name_of_its_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_links(monkeypatch)
    eml = store(tmp_path, mixed_message())
    first = extract_at(eml, tmp_path)
    assert first.folder is not None
    assert (first.folder / folders.MARKER_FILE).read_text() == eml.name + "\n"
    assert folders.MARKER_FILE not in {path.name for path in first.files}


def test_a_moved_copy_is_found_by_its_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Moved to cur/ with flags, and the copy no longer byte-identical (edited by someone)."""
    _no_links(monkeypatch)
    eml = store(tmp_path, mixed_message())
    first = extract_at(eml, tmp_path)
    assert first.folder is not None
    read = eml.parent.parent / "cur" / (eml.name + ":2,RS")
    read.parent.mkdir()
    eml.rename(read)
    copy = first.folder / MESSAGE_FILE
    copy.write_bytes(copy.read_bytes().upper())  # same size, other bytes
    assert extract_at(read, tmp_path) == first
    assert folders_in(tmp_path / ROOT) == [first.folder.name]


def test_a_copy_cut_short_is_made_again_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A power failure may leave a copy that was never flushed shorter than the message."""
    _no_links(monkeypatch)
    eml = store(tmp_path, mixed_message())
    first = extract_at(eml, tmp_path)
    assert first.folder is not None
    copy = first.folder / MESSAGE_FILE
    copy.write_bytes(copy.read_bytes()[:100])
    again = extract_at(eml, tmp_path)
    assert again.folder == first.folder
    assert copy.read_bytes() == eml.read_bytes()
    assert folders_in(tmp_path / ROOT) == [first.folder.name]


def test_a_marker_naming_another_message_is_not_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_links(monkeypatch)
    one = store(tmp_path, mixed_message(), "one.eml")
    first = extract_at(one, tmp_path)
    assert first.folder is not None
    two = store(tmp_path, mixed_message(), "two.eml")  # the same bytes, another message
    second = extract_at(two, tmp_path)
    assert second.folder is not None
    assert second.folder != first.folder


@given(
    base=st.text(st.characters(blacklist_characters=":/\0"), min_size=1, max_size=40).filter(
        lambda name: name not in (".", "..")
    ),
    flags=st.text(st.characters(min_codepoint=ord("A"), max_codepoint=ord("z")), max_size=10),
)
def test_the_maildir_name_ignores_what_a_mail_client_appends(base: str, flags: str) -> None:
    assert folders.maildir_name(Path(base)) == base
    assert folders.maildir_name(Path(f"{base}:2,{flags}")) == base


def test_a_folder_holds_the_message_and_its_files_only(tmp_path: Path) -> None:
    eml = store(tmp_path, mixed_message())
    result = extract_at(eml, tmp_path)
    assert result.folder is not None
    held = sorted(path.name for path in result.folder.iterdir())
    assert held == sorted([MESSAGE_FILE, *(path.name for path in result.files)])
    assert folders_in(tmp_path / ROOT) == [result.folder.name]


def test_files_someone_added_to_the_folder_do_not_matter(tmp_path: Path) -> None:
    eml = store(tmp_path, mixed_message())
    first = extract_at(eml, tmp_path)
    assert first.folder is not None
    (first.folder / "my notes.txt").write_text("mine")
    assert extract_at(eml, tmp_path) == first
    assert (first.folder / "my notes.txt").read_text() == "mine"


def test_a_message_without_attachments_still_creates_nothing(tmp_path: Path) -> None:
    msg = new_message("Just text")
    msg.set_content("Plain words.\n")
    eml = store(tmp_path, msg.as_bytes())
    for _ in range(2):
        assert extract_at(eml, tmp_path).folder is None
    assert folders_in(tmp_path / ROOT) == []


# --- interrupted ----------------------------------------------------------------------------------

KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from fetchd.mime import extraction, folders
    from fetchd.mime.attachments import AttachmentPolicy, extract

    point = sys.argv[3]
    def die(*_args, **_kwargs):
        os.kill(os.getpid(), signal.SIGKILL)
    if point == "before-rename":
        folders.publish = die
    elif point == "while-writing":
        real = extraction._Output.write
        def write(self, data):
            real(self, data)
            if self.size > 100_000:
                die()
        extraction._Output.write = write
    extract(Path(sys.argv[1]), Path(sys.argv[2]), AttachmentPolicy())
    """
)


def killed_extraction(eml: Path, root: Path, point: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    done = subprocess.run(
        [sys.executable, "-c", KILLER, str(eml), str(root), point], env=env, check=False
    )
    assert done.returncode == -signal.SIGKILL


@pytest.mark.parametrize("point", ["before-rename", "while-writing"])
def test_a_killed_extraction_leaves_only_a_partial_folder(tmp_path: Path, point: str) -> None:
    eml = store(tmp_path, mixed_message())
    root = tmp_path / ROOT
    killed_extraction(eml, root, point)
    (left,) = folders_in(root)
    assert left.startswith(".partial-")  # nobody browsing sees a half folder
    assert remove_partial(root) == 1
    assert folders_in(root) == []
    result = extract_at(eml, tmp_path)
    assert result.folder is not None
    assert folders_in(root) == [result.folder.name]
    assert len(result.files) == 4


def test_an_extraction_replaces_its_own_leftover(tmp_path: Path) -> None:
    """Even without remove_partial, a retry makes one folder and leaves no debris."""
    eml = store(tmp_path, mixed_message())
    root = tmp_path / ROOT
    for _ in range(3):
        killed_extraction(eml, root, "while-writing")
    result = extract_at(eml, tmp_path)
    assert result.folder is not None
    assert folders_in(root) == [result.folder.name]
    assert (result.folder / "invoice.pdf").read_bytes() == PDF


def test_many_crashed_mailboxes_make_one_folder_each(tmp_path: Path) -> None:
    emls = [store(tmp_path, mixed_message(), f"{n}.eml") for n in range(5)]
    root = tmp_path / ROOT
    extract_at(emls[0], tmp_path)
    killed_extraction(emls[1], root, "before-rename")  # a pass killed on its second message
    killed_extraction(emls[1], root, "while-writing")  # and the next one, without cleaning up
    killed_extraction(emls[1], root, "before-rename")
    for _ in range(2):  # two more passes that redo them all
        assert remove_partial(root) in (0, 1)
        for eml in emls:
            extract_at(eml, tmp_path)
    assert len(folders_in(root)) == 5
    assert not [name for name in folders_in(root) if name.startswith(".")]


def test_remove_partial_leaves_everything_else(tmp_path: Path) -> None:
    root = tmp_path / ROOT
    assert remove_partial(root) == 0  # no root yet
    (root / ".partial-1-2" / "sub").mkdir(parents=True)
    (root / ".partial-1-2" / "sub" / "f").write_bytes(b"x")
    (root / ".partial-3-4").write_bytes(b"stray file")
    (root / "a folder").mkdir()
    (root / ".hidden").mkdir()
    assert remove_partial(root) == 2
    assert folders_in(root) == [".hidden", "a folder"]
    assert remove_partial(root) == 0


# --- a full disk ----------------------------------------------------------------------------------


def big_message() -> bytes:
    msg = new_message("Scans")
    msg.set_content("x")
    msg.add_attachment(
        os.urandom(2_000_000), maintype="application", subtype="pdf", filename="a.pdf"
    )
    msg.add_attachment(b"b", maintype="application", subtype="pdf", filename="b.pdf")
    return msg.as_bytes()


def test_a_full_disk_removes_the_partial_folder_and_a_retry_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    eml = store(tmp_path, big_message())
    root = tmp_path / ROOT
    real = extraction._Output.write

    def full(self: extraction._Output, data: bytes) -> None:
        if self.size + len(data) > 500_000:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(self, data)

    monkeypatch.setattr(extraction._Output, "write", full)
    for _ in range(2):
        with pytest.raises(StorageError) as caught:
            extract_at(eml, tmp_path)
        assert "No space left on device" in str(caught.value)
        assert "nothing was kept" in str(caught.value)
        assert eml.name in str(caught.value)
        assert folders_in(root) == []
        assert eml.stat().st_nlink == 1  # the link in the partial folder went with it
    monkeypatch.undo()
    result = extract_at(eml, tmp_path)
    assert [path.name for path in result.files] == ["a.pdf", "b.pdf"]
    assert folders_in(root) == [result.folder.name if result.folder else ""]


def test_a_full_disk_while_copying_the_message_into_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    eml = store(tmp_path, mixed_message())

    def no_links(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    def full(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "link", no_links)
    monkeypatch.setattr(shutil, "copyfileobj", full)
    with pytest.raises(StorageError, match="No space left"):
        extract_at(eml, tmp_path)
    assert folders_in(tmp_path / ROOT) == []


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs, if this machine lets us mount one (root, no container limits)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_really_full_disk(small_disk: Path) -> None:
    """The message fits (2.7 MB of base64), its decoded attachment (2 MB more) does not."""
    eml = store(small_disk, big_message())
    root = small_disk / ROOT
    for _ in range(2):
        with pytest.raises(StorageError, match="No space left on device"):
            extract(eml, root, AttachmentPolicy())
        assert folders_in(root) == []
    # Room again (a smaller policy): the same message extracts into one folder.
    result = extract(eml, root, AttachmentPolicy(max_size=1000))
    assert [path.name for path in result.files] == ["b.pdf"]
    assert folders_in(root) == [result.folder.name if result.folder else ""]
    assert extract(eml, root, AttachmentPolicy(max_size=1000)) == result


def test_partial_names_are_derived_from_the_stored_message(tmp_path: Path) -> None:
    eml = store(tmp_path, mixed_message())
    st = eml.stat()
    assert folders.partial_path(tmp_path, st) == folders.partial_path(tmp_path, eml.stat())
    other = store(tmp_path, mixed_message(), "other.eml")
    assert folders.partial_path(tmp_path, st) != folders.partial_path(tmp_path, other.stat())


# --- damaged by a power failure -------------------------------------------------------------------


def test_a_folder_with_a_file_cut_short_is_extracted_again_in_place(tmp_path: Path) -> None:
    """Attachments are not fsynced: a power failure may leave a named folder short."""
    eml = store(tmp_path, mixed_message())
    first = extract_at(eml, tmp_path)
    assert first.folder is not None
    (first.folder / "invoice.pdf").write_bytes(PDF[:4096])
    again = extract_at(eml, tmp_path)
    assert again.folder == first.folder
    assert again.files == first.files
    assert (first.folder / "invoice.pdf").read_bytes() == PDF
    assert again.warnings == (
        f"the folder {first.folder.name!r} did not hold all the attachments (a power "
        "failure, a changed policy, files removed); extracted again",
    )
    assert folders_in(tmp_path / ROOT) == [first.folder.name]
    assert extract_at(eml, tmp_path) == first  # complete again


def test_a_folder_missing_a_file_is_made_again(tmp_path: Path) -> None:
    eml = store(tmp_path, mixed_message())
    first = extract_at(eml, tmp_path)
    assert first.folder is not None
    (first.folder / "blob.bin").unlink()
    again = extract_at(eml, tmp_path)
    assert (again.folder, again.files) == (first.folder, first.files)
    assert all(path.is_file() for path in again.files)
    assert folders_in(tmp_path / ROOT) == [first.folder.name]


def test_a_folder_made_under_another_policy_is_made_again(tmp_path: Path) -> None:
    eml = store(tmp_path, mixed_message())
    first = extract_at(eml, tmp_path, AttachmentPolicy(include=("*.pdf",)))
    assert [path.name for path in first.files] == ["invoice.pdf"]
    again = extract_at(eml, tmp_path)
    assert again.folder == first.folder
    assert len(again.files) == 4
    # Nothing left to extract under the new policy: the folder goes.
    assert extract_at(eml, tmp_path, AttachmentPolicy(include=("*.none",))).folder is None
    assert folders_in(tmp_path / ROOT) == []
