"""Attachment extraction: the files in a stored message, in a folder people browse.

``extract`` streams the stored ``.eml`` through the MIME walker once, writes
each attachment the policy lets through as it is decoded, and returns what it
did. The message's folder is created on the first file written, with a hard
link to the ``.eml`` beside the files (a marked copy on another filesystem),
and removed again if in the end no file was kept. Files and folders get the
account's ``fetchd.access.Access`` (private, or shared with a group).
Attachments can always be extracted again from the ``.eml``, so they are not
fsynced.

``extract`` is idempotent and safe to interrupt (see ``fetchd.mime.folders``):
the folder is built under a hidden partial name and renamed when complete, and
a message whose complete folder exists gets that folder's result again,
without anything being written. ``remove_partial`` clears what an interrupted
extraction left.

What counts as an attachment:

- a leaf with ``Content-Disposition: attachment``, or with a file name, or a
  leaf that is not text (application/*, image/*, audio/*, video/* ...);
- a uuencoded file in a plain-text body;
- a forwarded message (message/rfc822) only when it has a file name or an
  ``attachment`` disposition; it is saved as ``.eml``, named after its subject
  if it has no file name. Its own attachments are extracted either way;
- not: plain text or HTML bodies without a file name, the signature of a
  multipart/signed and the control part of a multipart/encrypted (RFC 1847
  protocol data such as ``smime.p7s``, not something anyone attached);
- inline parts (disposition ``inline``, or an image with a Content-ID inside
  multipart/related) as the policy's ``inline`` says: "named" (the default)
  keeps those with a file name, except the parts an HTML body shows by cid:
  inside multipart/related; "all" keeps every one, "none" none;
- a multipart or message nested deeper than the walker opens: kept whole as
  ``nested-part-N.eml``, with a warning.

A TNEF ``winmail.dat`` is replaced by the files inside it; it is kept itself
only if it holds none.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from fetchd.access import PRIVATE, Access
from fetchd.errors import StorageError
from fetchd.mime import folders, names
from fetchd.mime.extraction import MESSAGE_FILE, Extraction, ExtractResult
from fetchd.mime.folders import remove_partial
from fetchd.mime.message_info import MessageInfo, info_from_headers
from fetchd.mime.parts import Event, Part, PartStart
from fetchd.mime.selection import (
    AttachmentPolicy,
    InlinePolicy,
    extension_for,
    is_attachment,
    is_inline,
)
from fetchd.mime.walker import read_headers, walk

__all__ = [
    "MAX_FILES",
    "MESSAGE_FILE",
    "AttachmentPolicy",
    "ExtractResult",
    "InlinePolicy",
    "MessageInfo",
    "extension_for",
    "extract",
    "info_from_headers",
    "is_attachment",
    "is_inline",
    "read_info",
    "remove_partial",
]

#: A message with more attachments than this is hostile; the rest are skipped.
MAX_FILES = 1000


def read_info(eml_path: Path) -> MessageInfo:
    """Date, sender, subject and Message-ID of a stored message (reads its headers only)."""
    try:
        with eml_path.open("rb") as fp:
            headers = read_headers(fp)
    except OSError as exc:
        raise StorageError(f"cannot read {eml_path}: {exc.strerror}") from exc
    return info_from_headers(headers, [])


def extract(
    eml_path: Path, attachments_root: Path, policy: AttachmentPolicy, access: Access = PRIVATE
) -> ExtractResult:
    """Write the attachments of ``eml_path`` into a new folder under ``attachments_root``.

    If this stored message has its folder already (an earlier call whose
    result was lost), the message is walked again without writing anything:
    when the folder holds every file at its size, the same result comes back;
    when it does not (see ``fetchd.mime.folders``) it is made again in place.
    Malformed content never raises (it becomes a warning); disk errors raise
    ``StorageError``, after removing the partial folder. The caller holds the
    account lock: one extraction at a time per attachments root. What is
    written gets ``access``'s group and modes.
    """
    try:
        fp = eml_path.open("rb")
    except OSError as exc:
        raise StorageError(f"cannot read {eml_path}: {exc.strerror}") from exc
    with fp:
        return _extract(fp, eml_path, attachments_root, policy, access)


def _extract(
    fp: BinaryIO, eml_path: Path, attachments_root: Path, policy: AttachmentPolicy, access: Access
) -> ExtractResult:
    # One walk, one parse of the top header block: it names the folder, tells
    # whether the folder exists already, and starts the extraction.
    walked = _open_walk(fp, eml_path)
    assert walked.top.headers is not None  # every entity but a uuencoded file has them
    found: list[str] = []
    info = info_from_headers(walked.top.headers, found)
    if not policy.extract:
        return ExtractResult(info, None, (), ())
    try:
        stored = os.fstat(fp.fileno())
    except OSError as exc:
        raise StorageError(f"cannot read {eml_path}: {exc.strerror}") from exc
    title = names.message_folder_name(info.date, info.sender, info.subject)
    partial = folders.partial_path(attachments_root, stored)
    existing = folders.find_linked(attachments_root, title, eml_path, stored)
    if existing is not None:
        check = Extraction(
            eml_path,
            attachments_root,
            policy,
            max_files=MAX_FILES,
            partial=partial,
            info=info,
            info_warnings=tuple(found),
            checking=existing,
        )
        result = _run(fp, walked, eml_path, attachments_root, check)
        if check.intact and folders.size_of(existing / MESSAGE_FILE) == stored.st_size:
            return result  # (a copied message.eml may have been cut short too)
        fp.seek(0)  # made again: walked again from the start
        walked = _open_walk(fp, eml_path)
    job = Extraction(
        eml_path,
        attachments_root,
        policy,
        max_files=MAX_FILES,
        partial=partial,
        info=info,
        info_warnings=tuple(found),
        replacing=existing,
        access=access,
    )
    return _run(fp, walked, eml_path, attachments_root, job)


@dataclass
class _Walk:
    """A walk of the stored message, started: the events up to the message's own start."""

    events: Iterator[Event]
    before: list[Event]  # defects of the top header block
    top: Part


def _open_walk(fp: BinaryIO, eml_path: Path) -> _Walk:
    """Start the walk of ``fp``, up to the start of the message itself."""
    events = walk(fp)
    before: list[Event] = []
    try:
        for event in events:
            if isinstance(event, PartStart):
                return _Walk(events, before, event.part)
            before.append(event)
    except OSError as exc:
        raise StorageError(f"cannot read {eml_path}: {exc.strerror}") from exc
    raise AssertionError("walk() always starts the top-level entity")  # pragma: no cover


def _run(
    fp: BinaryIO, walked: _Walk, eml_path: Path, attachments_root: Path, job: Extraction
) -> ExtractResult:
    """Go on with the walk through ``job``; disk errors leave nothing behind."""
    try:
        for event in walked.before:
            job.handle(event)
        job.handle(PartStart(walked.top))
        if not walked.before and _single_text(walked.top) and not _has_uu_begin(fp):
            return job.finish()  # most mail: nothing to extract, no need to walk it
        for event in walked.events:
            job.handle(event)
        return job.finish()
    except OSError as exc:
        job.abort()
        raise StorageError(_failure(eml_path, attachments_root, exc)) from exc
    except StorageError:
        job.abort()
        raise


def _failure(eml_path: Path, root: Path, exc: OSError) -> str:
    """Why extraction failed, and that nothing of it was left behind."""
    text = f"cannot extract the attachments of {eml_path.name} into {root}: {exc.strerror}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"{text} (the attachments need more space than is free; nothing was kept, "
            "the message itself is stored and its attachments are extracted on a "
            "later poll once there is room)"
        )
    return f"{text}; nothing was kept, the message itself is stored"


def _single_text(part: Part) -> bool:
    """A message that is one text part: it can only hold files as uuencode."""
    return part.kind == "leaf" and part.content_type.startswith("text/") and not is_attachment(part)


def _has_uu_begin(fp: BinaryIO) -> bool:
    """Whether ``fp`` has a line starting with "begin " (maybe uuencode).

    One regular expression over large reads instead of the line-by-line walk;
    a match only means the full walk decides. The whole file is read again,
    because the walk may have read past the header block already.
    """
    position = fp.tell()
    fp.seek(0)
    tail = b""
    while chunk := fp.read(1 << 20):
        window = tail + chunk
        # The substring test first: far cheaper than the regular expression.
        if b"begin" in window and _UU_BEGIN.search(window):
            fp.seek(position)
            return True
        tail = chunk[-16:]
    return False


_UU_BEGIN = re.compile(rb"(?m)^begin[ \t]")
