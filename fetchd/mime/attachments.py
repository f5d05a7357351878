"""Attachment extraction: the files in a stored message, in a folder people browse.

``extract`` streams the stored ``.eml`` through the MIME walker once, writes
each attachment the policy lets through as it is decoded, and returns what it
did. The message's folder is created on the first file written, with a hard
link to the ``.eml`` beside the files, and removed again if in the end no file
was kept. Attachments can always be extracted again from the ``.eml``, so they
are not fsynced.

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
  multipart/related) only when the policy asks for them.

A TNEF ``winmail.dat`` is replaced by the files inside it; it is kept itself
only if it holds none.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import BinaryIO

from fetchd.errors import StorageError
from fetchd.mime.extraction import MESSAGE_FILE, Extraction, ExtractResult
from fetchd.mime.message_info import MessageInfo, info_from_headers
from fetchd.mime.parts import Part, PartStart
from fetchd.mime.selection import AttachmentPolicy, extension_for, is_attachment, is_inline
from fetchd.mime.walker import read_headers, walk

__all__ = [
    "MAX_FILES",
    "MESSAGE_FILE",
    "AttachmentPolicy",
    "ExtractResult",
    "MessageInfo",
    "extension_for",
    "extract",
    "info_from_headers",
    "is_attachment",
    "is_inline",
    "read_info",
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


def extract(eml_path: Path, attachments_root: Path, policy: AttachmentPolicy) -> ExtractResult:
    """Write the attachments of ``eml_path`` into a new folder under ``attachments_root``.

    Malformed content never raises (it becomes a warning); disk errors raise
    ``StorageError``, after removing a half-written file.
    """
    if not policy.extract:
        return ExtractResult(read_info(eml_path), None, (), ())
    job = Extraction(eml_path, attachments_root, policy, max_files=MAX_FILES)
    try:
        with eml_path.open("rb") as fp:
            events = walk(fp)
            top = next(events)
            job.handle(top)
            if isinstance(top, PartStart) and _single_text(top.part) and not _has_uu_begin(fp):
                return job.finish()  # most mail: nothing to extract, no need to walk it
            for event in events:
                job.handle(event)
        return job.finish()
    except OSError as exc:
        job.abort()
        raise StorageError(
            f"cannot extract the attachments of {eml_path.name}: {exc.strerror}"
        ) from exc
    except StorageError:
        job.abort()
        raise


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
