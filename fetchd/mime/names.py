"""Safe names for the attachment files and message folders people browse.

Every name here comes from a sender: an attachment's declared file name, a
subject line, a display name. A name must never leave its folder (``../x``,
``/etc/x``), hide itself (``.x``), lie about itself on screen (U+202E shows
``invoice<U+202E>fdp.exe`` as ``invoiceexe.pdf``), or be impossible to create or
copy elsewhere (over 255 bytes, ``CON.txt`` on a Windows share). The folders
are often reached over SMB, so the characters Windows refuses are replaced too.

Files and folders are created exclusively and never through a symlink: a name
that is taken gets `` (2)``, `` (3)``... as file managers do.
"""

from __future__ import annotations

import os
import re
import unicodedata
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from fetchd.access import PRIVATE, Access
from fetchd.errors import StorageError

#: Linux (ext4, xfs, btrfs) and NTFS both stop at 255: bytes there, UTF-16 units here.
MAX_NAME_BYTES = 255
#: A suffix longer than this is not an extension worth keeping through truncation.
_MAX_EXTENSION_BYTES = 32
#: Folder names stay short enough to read in a file manager column.
MAX_FOLDER_CHARS = 120
_MAX_SENDER_CHARS = 40
#: Collisions beyond this mean something is wrong with the folder, not bad luck.
MAX_COLLISIONS = 10_000

# Path separators, plus the characters Windows (and so SMB shares) cannot store.
_REPLACED = frozenset('/\\<>:"|?*')
# Names Windows reserves for devices, whatever the extension or case.
_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{dev}{n}" for dev in ("COM", "LPT") for n in "123456789\u00b9\u00b2\u00b3"]
)
_REPLACE = str.maketrans(dict.fromkeys(_REPLACED, "_"))
_ENDS = re.compile(r"^[\s.]+|[\s.]+$")
_TAR = ".tar"


def sanitize_filename(name: str, *, fallback: str = "attachment") -> str:
    """Turn any text into one safe path component (never empty, never '.' or '..')."""
    cleaned = _clean(name)
    if cleaned:
        return cleaned
    return _clean(fallback) or "attachment"


def _clean(name: str) -> str:
    text = unicodedata.normalize("NFC", name)
    if text.isprintable():  # no control, format or surrogate character: _map_char in C
        return _clean_mapped(text.translate(_REPLACE))
    return _clean_mapped("".join(_map_char(char) for char in text))


def _clean_mapped(text: str) -> str:
    """The rest of ``_clean``, once each character went through ``_map_char``."""
    # Removing format characters can leave a combining mark next to a new base.
    text = _ENDS.sub("", unicodedata.normalize("NFC", text))
    if not text:
        return ""
    if text.split(".", 1)[0].rstrip(" ").upper() in _RESERVED:
        text = "_" + text
    return _fit(text, MAX_NAME_BYTES)


def _map_char(char: str) -> str:
    """Replace what could escape, hide or mislead; drop invisible format characters."""
    if char in _REPLACED:
        return "_"
    category = unicodedata.category(char)
    if category in ("Cc", "Zl", "Zp"):
        return " "  # tabs and newlines in subjects read best as spaces
    if category == "Cf":
        return ""  # bidi overrides, zero-width characters, BOM
    if category == "Cs":
        return "_"  # lone surrogate: cannot be stored as UTF-8 at all
    return char


def split_extension(name: str) -> tuple[str, str]:
    """Split ``name`` into stem and extension (``.tar.gz`` counts as one)."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or " " in ext or len(("." + ext).encode()) > _MAX_EXTENSION_BYTES:
        return name, ""
    ext = "." + ext
    if stem.lower().endswith(_TAR) and len(stem) > len(_TAR):
        return stem[: -len(_TAR)], stem[-len(_TAR) :] + ext
    return stem, ext


def _fit(name: str, limit: int, suffix: str = "") -> str:
    """Cut the stem on a character boundary so that stem+suffix+extension fit ``limit`` bytes."""
    if len(name.encode()) + len(suffix.encode()) <= limit:
        return _with_suffix(name, suffix)
    stem, ext = split_extension(name)
    budget = limit - len(ext.encode()) - len(suffix.encode())
    cut = stem.encode()[:budget].decode("utf-8", "ignore")
    cut = _ENDS.sub("", unicodedata.normalize("NFC", cut))
    while len(cut.encode()) > budget:  # NFC of a cut string can, rarely, grow
        cut = _ENDS.sub("", cut[:-1])
    return cut + suffix + ext


def _with_suffix(name: str, suffix: str) -> str:
    if not suffix:
        return name
    stem, ext = split_extension(name)
    return stem + suffix + ext


def create_exclusive(directory: Path, name: str, access: Access = PRIVATE) -> tuple[Path, BinaryIO]:
    """Create a new file for writing: never overwrite, never follow a symlink.

    ``O_EXCL`` makes creation atomic (two writers cannot get the same file) and
    refuses an existing symlink at the name, dangling or not. The file gets
    ``access``'s group and mode, whatever the umask.
    """
    base = sanitize_filename(name)
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    for attempt in range(1, MAX_COLLISIONS + 1):
        candidate = _numbered(base, attempt)
        path = directory / candidate
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:
            continue
        except OSError as exc:
            raise StorageError(f"cannot create {path}: {exc.strerror}") from exc
        try:
            access.set_fd(fd, path)
        except StorageError:
            os.close(fd)
            path.unlink()
            raise
        return path, os.fdopen(fd, "wb")
    raise StorageError(f"cannot create {base!r} in {directory}: too many files of that name")


def create_unique_dir(parent: Path, name: str) -> Path:
    """Create a new directory ``parent/name``, numbered if the name is taken.

    ``mkdir`` fails on an existing symlink instead of following it, so a
    planted link cannot redirect the attachments.
    """
    base = sanitize_filename(name, fallback="message")
    for attempt in range(1, MAX_COLLISIONS + 1):
        path = parent / _numbered(base, attempt, keep_extension=False)
        try:
            path.mkdir(mode=0o755)
        except FileExistsError:
            continue
        except OSError as exc:
            raise StorageError(f"cannot create folder {path}: {exc.strerror}") from exc
        return path
    raise StorageError(f"cannot create folder {base!r} in {parent}: too many of that name")


def numbered(name: str, attempt: int) -> str:
    """The file name ``create_exclusive`` tries at ``attempt`` for a sanitized ``name``."""
    return _numbered(name, attempt)


def numbered_folder(name: str, attempt: int) -> str:
    """The folder name ``create_unique_dir`` tries at ``attempt`` (1, 2, ...)."""
    return _numbered(sanitize_filename(name, fallback="message"), attempt, keep_extension=False)


def _numbered(name: str, attempt: int, *, keep_extension: bool = True) -> str:
    """``name`` for the first attempt, then ``stem (n).ext``, still within 255 bytes."""
    if attempt == 1:
        return name
    suffix = f" ({attempt})"
    if keep_extension:
        return _fit(name, MAX_NAME_BYTES, suffix)
    cut = name.encode()[: MAX_NAME_BYTES - len(suffix)].decode("utf-8", "ignore")
    return _ENDS.sub("", cut) + suffix


def message_folder_name(date: datetime | None, sender: str, subject: str) -> str:
    """``2026-11-26 14.02 Alice Smith - Invoice 42``: sortable, readable, safe.

    The time is the one the message states, in its own zone: that is what the
    reader saw in their mail client. ``.`` replaces ``:``, which Windows refuses.
    """
    if date is None:
        stamp = "undated"
    else:
        stamp = f"{date.year:04d}-{date.month:02d}-{date.day:02d} {date.hour:02d}.{date.minute:02d}"
    who = _clip(_squash(sender) or "(unknown sender)", _MAX_SENDER_CHARS)
    head = f"{stamp} {who} - "
    what = _clip(_squash(subject) or "(no subject)", max(MAX_FOLDER_CHARS - len(head), 10))
    return sanitize_filename(head + what, fallback=stamp)


def _squash(text: str) -> str:
    """Collapse every run of whitespace and control characters into one space."""
    if text.isprintable():  # none of them but the space: nothing to map
        return " ".join(text.split())
    mapped = "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text)
    return " ".join(mapped.split())


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + "\u2026"
