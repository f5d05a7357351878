"""Safe file and folder names: each rule by example, then properties over hostile text."""

from __future__ import annotations

import grp
import os
import stat
import tempfile
import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fetchd.access import Access
from fetchd.errors import StorageError
from fetchd.mime import names
from fetchd.mime.names import (
    MAX_FOLDER_CHARS,
    MAX_NAME_BYTES,
    create_exclusive,
    create_unique_dir,
    message_folder_name,
    sanitize_filename,
    split_extension,
)
from tests.strategies import header_text, nasty_names

# --- sanitize_filename, rule by rule ----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("a/b.pdf", "a_b.pdf"),
        ("a\\b.pdf", "a_b.pdf"),
        ("../../etc/passwd", "_.._etc_passwd"),
        ("..\\..\\boot.ini", "_.._boot.ini"),
        ("C:\\Users\\x\\file.txt", "C__Users_x_file.txt"),
        ("/etc/shadow", "_etc_shadow"),
    ],
)
def test_separators_are_replaced(raw: str, expected: str) -> None:
    assert sanitize_filename(raw) == expected


@pytest.mark.parametrize("raw", ["", ".", "..", "...", " ", " . . ", "\u202e", "\x00", "\u200b"])
def test_names_with_nothing_left_get_the_fallback(raw: str) -> None:
    assert sanitize_filename(raw) == "attachment"
    assert sanitize_filename(raw, fallback="part.bin") == "part.bin"


def test_a_hopeless_fallback_falls_back_once_more() -> None:
    assert sanitize_filename("..", fallback="..") == "attachment"


def test_bidi_override_and_other_format_characters_are_dropped() -> None:
    # Shown as "invoiceexe.pdf" by a file manager if the override stayed.
    assert sanitize_filename("invoice\u202efdp.exe") == "invoicefdp.exe"
    assert sanitize_filename("a\u200bb\ufeff.txt") == "ab.txt"


def test_control_characters_become_spaces() -> None:
    assert sanitize_filename("a\tb\nc\x00d\x7f.txt") == "a b c d .txt"
    assert sanitize_filename("line\u2028break.txt") == "line break.txt"


def test_lone_surrogates_cannot_reach_the_filesystem() -> None:
    result = sanitize_filename("bad\udcff.txt")
    assert result == "bad_.txt"
    result.encode("utf-8")


def test_no_leading_dot_and_no_trailing_dots_or_spaces() -> None:
    assert sanitize_filename(".bashrc") == "bashrc"
    assert sanitize_filename("..hidden.txt") == "hidden.txt"
    assert sanitize_filename("  name.pdf. . .  ") == "name.pdf"
    assert sanitize_filename("name\u3000") == "name"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("CON", "_CON"),
        ("con.txt", "_con.txt"),
        ("Nul.tar.gz", "_Nul.tar.gz"),
        ("AUX", "_AUX"),
        ("prn.pdf", "_prn.pdf"),
        ("COM1.log", "_COM1.log"),
        ("lpt9", "_lpt9"),
        ("CONIN$", "_CONIN$"),
        ("COM\u00b9.txt", "_COM\u00b9.txt"),
        ("nul .txt", "_nul .txt"),
    ],
)
def test_windows_device_names_get_a_prefix(raw: str, expected: str) -> None:
    assert sanitize_filename(raw) == expected


@pytest.mark.parametrize("raw", ["COM10", "CONSOLE.txt", "icon.png", "LPT", "COM0", "nullable"])
def test_names_that_only_look_like_devices_stay(raw: str) -> None:
    assert sanitize_filename(raw) == raw


def test_characters_windows_refuses_are_replaced() -> None:
    assert sanitize_filename('Re: what? <a>|"b"*.txt') == "Re_ what_ _a___b__.txt"


def test_names_are_nfc_normalised() -> None:
    assert sanitize_filename("cafe\u0301.txt") == "caf\u00e9.txt"
    # Removing a format character must not leave a decomposed pair behind.
    assert sanitize_filename("cafe\u200b\u0301.txt") == "caf\u00e9.txt"


def test_long_names_are_cut_to_255_bytes_keeping_the_extension() -> None:
    result = sanitize_filename("a" * 300 + ".pdf")
    assert len(result.encode()) == MAX_NAME_BYTES
    assert result == "a" * 251 + ".pdf"


def test_long_multibyte_names_are_cut_on_a_character_boundary() -> None:
    result = sanitize_filename("\u65e5" * 100 + ".txt")  # 3 bytes each
    assert len(result.encode()) <= MAX_NAME_BYTES
    assert result == "\u65e5" * 83 + ".txt"
    emoji = sanitize_filename("\U0001f600" * 70 + ".jpeg")  # 4 bytes each
    assert emoji == "\U0001f600" * 62 + ".jpeg"


def test_a_long_double_extension_is_kept_whole() -> None:
    result = sanitize_filename("b" * 300 + ".tar.gz")
    assert result.endswith("b.tar.gz")
    assert len(result.encode()) == MAX_NAME_BYTES


def test_a_huge_suffix_is_not_treated_as_an_extension() -> None:
    result = sanitize_filename("x." + "y" * 300)
    assert result == ("x." + "y" * 300)[:MAX_NAME_BYTES]


def test_a_cut_does_not_leave_trailing_dots_or_spaces() -> None:
    result = sanitize_filename("a" * 250 + "   " + "b" * 50 + ".pdf")
    assert result == "a" * 250 + ".pdf"


@pytest.mark.parametrize(
    ("name", "stem", "ext"),
    [
        ("a.pdf", "a", ".pdf"),
        ("a.b.c", "a.b", ".c"),
        ("x.tar.gz", "x", ".tar.gz"),
        (".tar.gz", ".tar", ".gz"),
        ("noext", "noext", ""),
        ("odd. name", "odd. name", ""),
    ],
)
def test_split_extension(name: str, stem: str, ext: str) -> None:
    assert split_extension(name) == (stem, ext)


# --- properties ---------------------------------------------------------------------------------


def assert_safe(name: str) -> None:
    assert name
    assert name not in (".", "..")
    assert not {"/", "\\", "\x00"} & set(name)
    assert not any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in name)
    assert len(name.encode("utf-8")) <= MAX_NAME_BYTES
    assert not name.startswith(".")
    assert name.rstrip(" .") == name
    assert unicodedata.is_normalized("NFC", name)


@given(nasty_names())
def test_any_text_becomes_a_safe_name(raw: str) -> None:
    result = sanitize_filename(raw)
    assert_safe(result)
    assert result.split(".", 1)[0].rstrip(" ").upper() not in ("CON", "NUL", "AUX", "PRN")


@given(nasty_names())
def test_sanitising_is_idempotent(raw: str) -> None:
    once = sanitize_filename(raw)
    assert sanitize_filename(once) == once


@given(nasty_names())
def test_create_exclusive_always_lands_inside_its_folder(raw: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp).resolve()
        path, fp = create_exclusive(folder, raw)
        with fp:
            fp.write(b"x")
        assert path.parent == folder
        assert path.resolve().parent == folder
        assert path.is_file()
        assert not path.is_symlink()


@given(nasty_names())
def test_a_planted_symlink_is_never_followed(raw: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp).resolve()
        folder = base / "folder"
        folder.mkdir()
        outside = base / "outside"
        (folder / sanitize_filename(raw)).symlink_to(outside)
        path, fp = create_exclusive(folder, raw)
        with fp:
            fp.write(b"attack")
        assert not outside.exists()
        assert path.resolve().parent == folder
        assert not path.is_symlink()


@given(nasty_names(), nasty_names())
def test_numbered_names_stay_safe(raw: str, other: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = []
        for _ in range(3):
            path, fp = create_exclusive(folder, raw + other)
            fp.close()
            paths.append(path)
        assert len(set(paths)) == 3
        for path in paths:
            assert_safe(path.name)
            assert path.parent == folder


@given(header_text(), header_text())
def test_folder_names_are_safe_and_short(sender: str, subject: str) -> None:
    date = datetime(2026, 11, 26, 14, 2, tzinfo=UTC)
    name = message_folder_name(date, sender, subject)
    assert_safe(name)
    assert len(name) <= MAX_FOLDER_CHARS
    assert name.startswith("2026-11-26 14.02 ")


@given(st.text() | nasty_names() | header_text())
def test_names_are_mapped_as_character_by_character(text: str) -> None:
    """The fast path for printable text maps exactly as the per-character rules do."""
    nfc = unicodedata.normalize("NFC", text)
    assert names._clean(text) == names._clean_mapped("".join(map(names._map_char, nfc)))
    squashed = "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text)
    assert names._squash(text) == " ".join(squashed.split())


# --- create_exclusive ---------------------------------------------------------------------------


def test_create_exclusive_numbers_collisions_like_a_file_manager(tmp_path: Path) -> None:
    created = []
    for content in (b"one", b"two", b"three"):
        path, fp = create_exclusive(tmp_path, "report.pdf")
        with fp:
            fp.write(content)
        created.append(path.name)
    assert created == ["report.pdf", "report (2).pdf", "report (3).pdf"]
    assert (tmp_path / "report.pdf").read_bytes() == b"one"
    assert (tmp_path / "report (3).pdf").read_bytes() == b"three"


def test_create_exclusive_numbers_before_a_double_extension(tmp_path: Path) -> None:
    for _ in range(2):
        create_exclusive(tmp_path, "backup.tar.gz")[1].close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup (2).tar.gz", "backup.tar.gz"]


def test_numbered_long_names_stay_within_255_bytes(tmp_path: Path) -> None:
    name = "\u00e9" * 200 + ".pdf"
    first, fp1 = create_exclusive(tmp_path, name)
    second, fp2 = create_exclusive(tmp_path, name)
    fp1.close()
    fp2.close()
    assert len(first.name.encode()) <= MAX_NAME_BYTES
    assert len(second.name.encode()) <= MAX_NAME_BYTES
    assert second.name.endswith(" (2).pdf")
    assert first != second


def test_create_exclusive_sanitises(tmp_path: Path) -> None:
    path, fp = create_exclusive(tmp_path, "../../escape.txt")
    fp.close()
    assert path == tmp_path / "_.._escape.txt"


def test_create_exclusive_skips_a_dangling_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.txt"
    (tmp_path / "a.txt").symlink_to(target)
    path, fp = create_exclusive(tmp_path, "a.txt")
    with fp:
        fp.write(b"data")
    assert path.name == "a (2).txt"
    assert not target.exists()


@pytest.mark.parametrize("umask", [0, 0o022, 0o077])
def test_created_files_are_private_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        path, fp = create_exclusive(tmp_path, "x.bin")
        fp.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("umask", [0, 0o077])
def test_created_files_are_shared_with_the_group_whatever_the_umask(
    tmp_path: Path, umask: int
) -> None:
    group = grp.getgrgid(os.getegid()).gr_name
    old = os.umask(umask)
    try:
        path, fp = create_exclusive(tmp_path, "x.bin", Access.for_group(group))
        fp.close()
    finally:
        os.umask(old)
    st = path.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o640, os.getegid())


def test_endless_collisions_end_in_a_storage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(names, "MAX_COLLISIONS", 3)
    for _ in range(3):
        create_exclusive(tmp_path, "x.txt")[1].close()
        create_unique_dir(tmp_path, "d")
    with pytest.raises(StorageError, match="too many"):
        create_exclusive(tmp_path, "x.txt")
    with pytest.raises(StorageError, match="too many"):
        create_unique_dir(tmp_path, "d")


def test_create_exclusive_maps_os_errors(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot create"):
        create_exclusive(tmp_path / "missing", "x.txt")


# --- create_unique_dir --------------------------------------------------------------------------


def test_create_unique_dir_numbers_collisions(tmp_path: Path) -> None:
    first = create_unique_dir(tmp_path, "2026-11-26 14.02 Alice - Hi")
    second = create_unique_dir(tmp_path, "2026-11-26 14.02 Alice - Hi")
    assert first.name == "2026-11-26 14.02 Alice - Hi"
    assert second.name == "2026-11-26 14.02 Alice - Hi (2)"
    assert first.is_dir()
    assert second.is_dir()


def test_create_unique_dir_does_not_follow_a_planted_symlink(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "folder").symlink_to(elsewhere)
    made = create_unique_dir(tmp_path, "folder")
    assert made == tmp_path / "folder (2)"
    assert not made.is_symlink()


def test_create_unique_dir_sanitises(tmp_path: Path) -> None:
    made = create_unique_dir(tmp_path, "../up")
    assert made.parent == tmp_path
    assert made.name == "_up"


def test_create_unique_dir_maps_os_errors(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot create folder"):
        create_unique_dir(tmp_path / "missing", "x")


# --- message_folder_name ------------------------------------------------------------------------


def test_folder_name_reads_date_sender_subject() -> None:
    date = datetime(2026, 11, 26, 14, 2, tzinfo=UTC)
    assert message_folder_name(date, "Alice Smith", "Invoice 42") == (
        "2026-11-26 14.02 Alice Smith - Invoice 42"
    )


def test_folder_name_keeps_the_message_time_zone() -> None:
    date = datetime(2026, 11, 26, 23, 59, tzinfo=timezone(timedelta(hours=9)))
    assert message_folder_name(date, "a@example.org", "x").startswith("2026-11-26 23.59 ")


def test_folder_name_without_date_subject_or_sender() -> None:
    assert message_folder_name(None, "", "") == "undated (unknown sender) - (no subject)"
    assert message_folder_name(None, "bob@example.org", "  ") == (
        "undated bob@example.org - (no subject)"
    )


def test_folder_name_collapses_whitespace_and_replaces_colons() -> None:
    name = message_folder_name(None, "Alice\n Smith", "Re:\tInvoice\r\n 42")
    assert name == "undated Alice Smith - Re_ Invoice 42"


def test_folder_name_is_clipped() -> None:
    date = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    name = message_folder_name(date, "S" * 100, "subject " * 50)
    assert len(name) <= MAX_FOLDER_CHARS
    assert name.startswith("2026-01-02 03.04 " + "S" * 39 + "\u2026 - subject")
    assert name.endswith("\u2026")


def test_folder_name_is_safe_with_hostile_subject() -> None:
    name = message_folder_name(None, "\u202eevil", "../../../etc")
    assert "/" not in name
    assert "\u202e" not in name
