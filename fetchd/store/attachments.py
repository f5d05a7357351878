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

import contextlib
import email.utils
import fnmatch
import mimetypes
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from email.message import Message
from pathlib import Path
from typing import BinaryIO

from fetchd.errors import StorageError
from fetchd.store import mime, names, tnef
from fetchd.store.mime import Body, Defect, Part, PartEnd, PartStart

#: The hard link (or copy) of the stored message inside its folder.
MESSAGE_FILE = "message.eml"
#: A message with more attachments than this is hostile; the rest are skipped.
MAX_FILES = 1000
#: How much of an unnamed forwarded message is held while waiting for its subject.
_MAX_WAITING = 1024 * 1024

_TNEF_TYPES = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})
_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global"})
# Extensions for unnamed parts where the stdlib table has none or an odd one.
_EXTENSIONS = {
    "image/jpeg": ".jpg",
    "text/plain": ".txt",
    "text/html": ".html",
    "text/calendar": ".ics",
    "message/rfc822": ".eml",
    "message/global": ".eml",
    "application/octet-stream": ".bin",
    "application/ms-tnef": ".dat",
    "application/vnd.ms-tnef": ".dat",
}
# The built-in table only, so that names do not depend on the host's /etc/mime.types.
_TYPES = mimetypes.MimeTypes()


@dataclass(frozen=True)
class AttachmentPolicy:
    """Which attachments to extract (validated by the config layer)."""

    extract: bool = True
    inline: bool = False
    #: fnmatch globs, case-insensitive, matched against the file name or the MIME type.
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    #: Bytes; a larger decoded attachment is removed again and a warning recorded.
    max_size: int | None = None

    def allows(self, name: str, mime_types: Iterable[str]) -> bool:
        """Whether the include and exclude globs let a file of this name and type through."""
        subjects = [name.lower(), *(kind.lower() for kind in mime_types)]

        def hit(globs: tuple[str, ...]) -> bool:
            return any(fnmatch.fnmatchcase(s, g.lower()) for g in globs for s in subjects)

        if self.include and not hit(self.include):
            return False
        return not hit(self.exclude)


@dataclass(frozen=True)
class MessageInfo:
    """The message's own description of itself, decoded (RFC 2047) and never raising."""

    date: datetime | None
    sender: str  # display name if any, else the address
    sender_address: str
    subject: str
    message_id: str | None


@dataclass(frozen=True)
class ExtractResult:
    info: MessageInfo
    folder: Path | None  # None when no attachment was written
    files: tuple[Path, ...]  # attachment files written (not message.eml)
    warnings: tuple[str, ...]


def read_info(eml_path: Path) -> MessageInfo:
    """Date, sender, subject and Message-ID of a stored message (reads its headers only)."""
    try:
        with eml_path.open("rb") as fp:
            headers = mime.read_headers(fp)
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
    job = _Extraction(eml_path, attachments_root, policy)
    try:
        with eml_path.open("rb") as fp:
            events = mime.walk(fp)
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
        if _UU_BEGIN.search(tail + chunk):
            fp.seek(position)
            return True
        tail = chunk[-16:]
    return False


_UU_BEGIN = re.compile(rb"(?m)^begin[ \t]")


# --- what is an attachment ------------------------------------------------------------------


def is_attachment(part: Part) -> bool:
    """Whether ``part`` is a file someone attached (inline or not)."""
    if part.kind == "uuencode":
        return True
    if part.kind == "multipart" or _is_protocol_part(part):
        return False
    if part.disposition == "attachment" or part.filename:
        return True
    if part.kind == "message":
        return False  # walked for its own attachments, not saved
    if part.content_type in _MESSAGE_TYPES:
        return True  # a forwarded message that could not be opened: keep it whole
    return part.content_type.split("/")[0] not in ("text", "multipart", "message")


def is_inline(part: Part) -> bool:
    """Whether ``part`` is meant to be shown inside the message text."""
    if part.disposition == "attachment":
        return False
    if part.disposition == "inline":
        return True
    # RFC 2387: an image that an HTML body in multipart/related refers to by cid:.
    return (
        part.content_type.startswith("image/")
        and part.content_id is not None
        and part.parents[-1:] == ("multipart/related",)
    )


def _is_protocol_part(part: Part) -> bool:
    # RFC 1847 sections 2.1 and 2.2: the signature of multipart/signed is its second
    # part, the control information of multipart/encrypted its first.
    parent = part.parents[-1] if part.parents else ""
    return (parent == "multipart/signed" and part.index == 1) or (
        parent == "multipart/encrypted" and part.index == 0
    )


def _is_tnef(part: Part) -> bool:
    return part.content_type in _TNEF_TYPES or (part.filename or "").lower() == "winmail.dat"


def extension_for(mime_type: str) -> str:
    """A file extension for an unnamed part of this type (``.bin`` if unknown)."""
    return _EXTENSIONS.get(mime_type) or _TYPES.guess_extension(mime_type) or ".bin"


def _mime_types(declared: str, name: str) -> tuple[str, ...]:
    guessed, _encoding = _TYPES.guess_type(name, strict=False)
    return (declared,) if guessed is None else (declared, guessed)


# --- message info ---------------------------------------------------------------------------


def info_from_headers(headers: Message, warnings: list[str]) -> MessageInfo:
    """Decode the describing headers of a message; junk yields empty fields, not errors."""
    name, address = _sender(headers, warnings)
    message_id = " ".join(mime.unfold(str(headers.get("message-id") or "")).split())
    return MessageInfo(
        date=_date(headers.get("date")),
        sender=name or address,
        sender_address=address,
        subject=" ".join(mime.header_text(headers, "subject", warnings).split()),
        message_id=message_id or None,
    )


def _date(value: object) -> datetime | None:
    if value is None:
        return None
    try:
        return email.utils.parsedate_to_datetime(mime.unfold(str(value)))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _sender(headers: Message, warnings: list[str]) -> tuple[str, str]:
    raw = headers.get("from") or headers.get("sender")
    if raw is None:
        return "", ""
    try:
        name, address = email.utils.parseaddr(mime.unfold(str(raw)))
    except Exception:  # address parsing is not hardened against hostile input
        name, address = "", ""
    # Encoded words are decoded after parsing: a decoded name may contain ',' or '<'.
    name = " ".join(mime.decode_words(name, warnings).split())
    return name, " ".join(address.split())


# --- the extraction -------------------------------------------------------------------------


class _Output:
    """One attachment being written; it may wait (bounded) for its name."""

    def __init__(self, part: Part, limit: int | None) -> None:
        self.part = part
        self.path: Path | None = None
        self.size = 0
        self.oversize = False
        self._limit = limit
        self._fp: BinaryIO | None = None
        self._early = bytearray()

    @property
    def waiting(self) -> bool:
        return self._fp is None

    @property
    def early_bytes(self) -> int:
        return len(self._early)

    def attach(self, fp: BinaryIO) -> None:
        self._fp = fp
        if self._early:
            fp.write(self._early)
            self._early = bytearray()

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self._limit is not None and self.size > self._limit:
            self.oversize = True  # keep counting, stop writing
        elif self._fp is None:
            self._early += data
        else:
            self._fp.write(data)

    def close(self) -> None:
        if self._fp is not None:
            self._fp.close()


class _Extraction:
    """The state of one ``extract`` call: folder, open outputs, results."""

    def __init__(self, eml_path: Path, root: Path, policy: AttachmentPolicy) -> None:
        self._eml = eml_path
        self._root = root
        self._policy = policy
        self._info = MessageInfo(None, "", "", "", None)
        self._folder: Path | None = None
        self._files: list[Path] = []
        self._warnings: list[str] = []
        self._outputs: dict[int, _Output] = {}
        self._unfinished: list[_Output] = []  # have a file, not yet kept: abort removes them
        self._tnef: dict[int, tuple[Part, BinaryIO]] = {}  # winmail.dat in a temporary file
        self._naming: dict[int, int] = {}  # inner message id -> id of the waiting output
        self._unnamed = 0
        self._skipped_many = False

    def handle(self, event: mime.Event) -> None:
        if isinstance(event, Body):
            self._body(event.part_id, event.data)
        elif isinstance(event, PartStart):
            self._start(event.part)
        elif isinstance(event, PartEnd):
            self._end(event.part_id)
        elif isinstance(event, Defect):
            self._warnings.append(event.message)

    def _start(self, part: Part) -> None:
        if part.id == 0 and part.headers is not None:
            self._info = info_from_headers(part.headers, self._warnings)
        if part.id in self._naming and part.headers is not None:
            self._name_message(self._naming.pop(part.id), part.headers)
        if not is_attachment(part) or (is_inline(part) and not self._policy.inline):
            return
        if len(self._files) + len(self._outputs) + len(self._tnef) >= MAX_FILES:
            if not self._skipped_many:
                self._warnings.append(f"more than {MAX_FILES} attachments; the rest skipped")
            self._skipped_many = True
            return
        if _is_tnef(part):
            self._tnef[part.id] = (part, self._temporary())
        elif part.kind == "message" and not part.filename:
            self._outputs[part.id] = _Output(part, self._policy.max_size)
            self._naming[part.id + 1] = part.id  # the enclosed message's headers come next
        else:
            output = _Output(part, self._policy.max_size)
            if self._open(output, self._name(part)):
                self._outputs[part.id] = output

    def _body(self, part_id: int, data: bytes) -> None:
        if part_id in self._tnef:
            self._tnef[part_id][1].write(data)
            return
        output = self._outputs.get(part_id)
        if output is None:
            return
        output.write(data)
        if output.waiting and output.early_bytes > _MAX_WAITING:
            self._naming = {k: v for k, v in self._naming.items() if v != part_id}
            if not self._open(output, self._name(output.part)):
                del self._outputs[part_id]

    def _end(self, part_id: int) -> None:
        if part_id in self._tnef:
            self._unpack(*self._tnef.pop(part_id))
            return
        output = self._outputs.pop(part_id, None)
        if output is None:
            return
        if output.waiting:  # an unnamed message whose headers never ended
            self._naming = {k: v for k, v in self._naming.items() if v != part_id}
            if not self._open(output, self._name(output.part)):
                return
        output.close()
        self._keep(output)

    def _keep(self, output: _Output) -> None:
        assert output.path is not None
        self._unfinished.remove(output)
        if not output.oversize:
            self._files.append(output.path)
            return
        output.path.unlink()
        self._warnings.append(
            f"{output.path.name}: skipped, {output.size} bytes is over the "
            f"{self._policy.max_size}-byte limit"
        )

    def _name(self, part: Part) -> str:
        if part.filename:
            name = part.filename
            if part.kind == "message" and not names.split_extension(name)[1]:
                name += ".eml"
            return names.sanitize_filename(name)
        return self._unnamed_name(part.content_type)

    def _unnamed_name(self, mime_type: str) -> str:
        self._unnamed += 1
        return f"attachment-{self._unnamed}{extension_for(mime_type)}"

    def _name_message(self, output_id: int, headers: Message) -> None:
        """An unnamed forwarded message is named after its subject, once that is known."""
        output = self._outputs.get(output_id)
        if output is None or not output.waiting:
            return
        subject = " ".join(mime.header_text(headers, "subject", self._warnings).split())
        name = f"{subject}.eml" if subject else self._unnamed_name("message/rfc822")
        if not self._open(output, name):
            del self._outputs[output_id]

    def _open(self, output: _Output, name: str) -> bool:
        """Give ``output`` its file, if the policy lets ``name`` through."""
        name = names.sanitize_filename(name)
        if not self._policy.allows(name, _mime_types(output.part.content_type, name)):
            return False
        path, fp = names.create_exclusive(self._ensure_folder(), name)
        output.path = path
        self._unfinished.append(output)
        output.attach(fp)
        return True

    def _ensure_folder(self) -> Path:
        if self._folder is None:
            self._root.mkdir(parents=True, exist_ok=True)
            info = self._info
            title = names.message_folder_name(info.date, info.sender, info.subject)
            folder = names.create_unique_dir(self._root, title)
            self._folder = folder
            _link_or_copy(self._eml, folder / MESSAGE_FILE)
        return self._folder

    def _temporary(self) -> BinaryIO:
        # Beside the folders, on the same disk: a winmail.dat may be as big as the message.
        self._root.mkdir(parents=True, exist_ok=True)
        return tempfile.TemporaryFile(dir=self._root)

    def _unpack(self, part: Part, container: BinaryIO) -> None:
        """Replace a winmail.dat by the files inside it (or keep it if there are none)."""
        with container:
            found, defects = tnef.scan(container)
            self._warnings.extend(defects)
            if not found:
                size = container.seek(0, os.SEEK_END)
                name = part.filename or "winmail.dat"
                self._write_copy(tnef.TnefFile(name, part.content_type, 0, size), container)
            for item in found:
                if len(self._files) >= MAX_FILES:
                    break
                self._write_copy(item, container)

    def _write_copy(self, item: tnef.TnefFile, container: BinaryIO) -> None:
        mime_type = item.mime_type or "application/octet-stream"
        name = names.sanitize_filename(item.name or self._unnamed_name(mime_type))
        if not self._policy.allows(name, _mime_types(mime_type, name)):
            return
        limit = self._policy.max_size
        if limit is not None and item.length > limit:
            self._warnings.append(
                f"{name}: skipped, {item.length} bytes is over the {limit}-byte limit"
            )
            return
        path, fp = names.create_exclusive(self._ensure_folder(), name)
        try:
            with fp:
                copied = tnef.copy_data(container, item, fp)
        except OSError:
            path.unlink(missing_ok=True)
            raise
        if copied < item.length:
            self._warnings.append(f"{path.name}: cut short, the TNEF data is truncated")
        self._files.append(path)

    def finish(self) -> ExtractResult:
        # The walker ends every part it starts, so nothing can be left open here.
        assert not self._outputs
        assert not self._tnef
        assert not self._unfinished
        folder = self._folder
        if folder is not None and not self._files:
            # Every file written was removed again (max_size): no folder for nothing.
            (folder / MESSAGE_FILE).unlink()
            with contextlib.suppress(OSError):  # something else is in it: leave it be
                folder.rmdir()
            folder = None
        return ExtractResult(self._info, folder, tuple(self._files), tuple(self._warnings))

    def abort(self) -> None:
        """After a disk error: close everything, remove the half-written files."""
        for output in self._unfinished:
            with contextlib.suppress(OSError):
                output.close()
            with contextlib.suppress(OSError):  # the error being raised matters more
                if output.path is not None:
                    output.path.unlink()
        self._unfinished.clear()
        for _part, container in self._tnef.values():
            with contextlib.suppress(OSError):
                container.close()
        self._outputs.clear()
        self._tnef.clear()


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link costs no space; a copy is the fallback (other filesystem, no links)."""
    try:
        os.link(source, target)
    except OSError:
        flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        with source.open("rb") as src, os.fdopen(os.open(target, flags, 0o644), "wb") as dst:
            shutil.copyfileobj(src, dst)
