"""One extraction in progress: the folder, the attachment files being written.

``Extraction`` consumes the MIME walker's events for one stored message (see
``fetchd.mime.attachments.extract``): it opens a file for each attachment the
policy lets through, writes the decoded content as it arrives, unpacks TNEF
containers, and creates the message's folder only when the first file needs it:
under its partial name, renamed when complete (see ``fetchd.mime.folders``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import BinaryIO, cast

from fetchd.access import PRIVATE, Access
from fetchd.errors import StorageError
from fetchd.mime import folders, names, tnef
from fetchd.mime.folders import MESSAGE_FILE
from fetchd.mime.headers import header_text
from fetchd.mime.message_info import MessageInfo
from fetchd.mime.parts import MAX_DEPTH, Body, Defect, Event, Part, PartEnd, PartStart, label
from fetchd.mime.selection import (
    AttachmentPolicy,
    extension_for,
    is_attachment,
    is_inline,
    is_tnef,
    keeps_inline,
    mime_types,
)

__all__ = ["MESSAGE_FILE", "ExtractResult", "Extraction"]
#: How much of an unnamed forwarded message is held while waiting for its subject.
_MAX_WAITING = 1024 * 1024


@dataclass(frozen=True)
class ExtractResult:
    info: MessageInfo
    folder: Path | None  # None when no attachment was written
    files: tuple[Path, ...]  # attachment files written (not message.eml)
    warnings: tuple[str, ...]


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


class _Counter:
    """Stands in for an attachment file when checking a folder: counts, keeps nothing."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)

    def close(self) -> None:
        pass

    def __enter__(self) -> _Counter:
        return self

    def __exit__(self, *_exc: object) -> None:
        pass


class Extraction:
    """The state of one ``extract`` call: folder, open outputs, results.

    With ``checking`` (an existing folder of this message) nothing is written:
    the walk names the files as a real extraction would and counts their
    sizes, and ``intact`` says whether the folder holds exactly those.
    """

    def __init__(
        self,
        eml_path: Path,
        root: Path,
        policy: AttachmentPolicy,
        *,
        max_files: int,
        partial: Path,
        info: MessageInfo,
        info_warnings: tuple[str, ...] = (),
        checking: Path | None = None,
        replacing: Path | None = None,
        access: Access = PRIVATE,
    ) -> None:
        self._eml = eml_path
        self._access = access
        self._root = root
        self._policy = policy
        # Decoded once from the top header block by the caller; its warnings come
        # where the walk meets that block.
        self._info = info
        self._info_warnings = info_warnings
        self._partial = partial  # the folder being built; renamed by ``finish``
        self._checking = checking
        self._counted: dict[Path, _Counter] = {}  # when checking: what each file would hold
        self._taken = {MESSAGE_FILE}  # when checking: the names a real run would have used
        self._replacing = replacing  # an incomplete folder of this message, replaced by ``finish``
        self._started = False
        self._files: list[Path] = []
        self._warnings: list[str] = []
        self._outputs: dict[int, _Output] = {}
        self._unfinished: list[_Output] = []  # have a file, not yet kept: abort removes them
        self._tnef: dict[int, tuple[Part, BinaryIO]] = {}  # winmail.dat in a temporary file
        self._naming: set[int] = set()  # unnamed message parts waiting for their subject
        self._unnamed = 0
        self._skipped = 0  # attachments over ``max_files``
        self._max_files = max_files

    def handle(self, event: Event) -> None:
        if isinstance(event, Body):
            self._body(event.part_id, event.data)
        elif isinstance(event, PartStart):
            self._start(event.part)
        elif isinstance(event, PartEnd):
            self._end(event.part_id)
        elif isinstance(event, Defect):
            self._warnings.append(event.message)

    def _start(self, part: Part) -> None:
        if part.id == 0:
            self._warnings.extend(self._info_warnings)
        if part.parent_id in self._naming and part.headers is not None:
            # The one part inside a message/rfc822 part is the enclosed message.
            self._naming.discard(part.parent_id)
            self._name_message(part.parent_id, part.headers)
        if not self._wanted(part):
            return
        if len(self._files) + len(self._outputs) + len(self._tnef) >= self._max_files:
            self._skipped += 1
            return
        if is_tnef(part):
            self._tnef[part.id] = (part, self._temporary())
        elif part.kind == "message" and not part.filename:
            self._outputs[part.id] = _Output(part, self._policy.max_size)
            self._naming.add(part.id)  # named when the enclosed message's headers arrive
        else:
            output = _Output(part, self._policy.max_size)
            if self._open(output, self._name(part)):
                self._outputs[part.id] = output
            else:
                self._not_opened(part, None)

    def _wanted(self, part: Part) -> bool:
        """Whether ``part`` is an attachment the policy's inline mode lets through."""
        if part.kind == "unopened":
            return True  # whatever it holds, it is all there is of it
        if not is_attachment(part):
            return False
        return not is_inline(part) or keeps_inline(part, self._policy.inline)

    def _body(self, part_id: int, data: bytes) -> None:
        if part_id in self._tnef:
            self._tnef[part_id][1].write(data)
            return
        output = self._outputs.get(part_id)
        if output is None:
            return
        output.write(data)
        if output.waiting and output.early_bytes > _MAX_WAITING:
            self._naming.discard(part_id)
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
            self._naming.discard(part_id)
            if not self._open(output, self._name(output.part)):
                self._not_opened(output.part, None)
                return
        output.close()
        self._keep(output)

    def _keep(self, output: _Output) -> None:
        assert output.path is not None
        self._unfinished.remove(output)
        if not output.oversize:
            self._files.append(output.path)
            self._not_opened(output.part, output.path.name)
            return
        self._not_opened(output.part, None)
        self._remove(output.path)
        self._warnings.append(
            f"{output.path.name}: skipped, {output.size} bytes is over the "
            f"{self._policy.max_size}-byte limit"
        )

    def _not_opened(self, part: Part, saved_as: str | None) -> None:
        """Say where a part too deep to walk went: its attachments are in there."""
        if part.kind != "unopened":
            return
        where = f"saved unopened as {saved_as}" if saved_as else "not saved"
        self._warnings.append(
            f"{label(part)}: nested more than {MAX_DEPTH} levels deep; {where}, "
            "so the attachments inside it are not extracted on their own"
        )

    def _name(self, part: Part) -> str:
        if part.kind == "unopened" and not part.filename:
            return f"nested-part-{part.id}.eml"
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
        subject = " ".join(header_text(headers, "subject", self._warnings).split())
        name = f"{subject}.eml" if subject else self._unnamed_name("message/rfc822")
        if not self._open(output, name):
            del self._outputs[output_id]

    def _open(self, output: _Output, name: str) -> bool:
        """Give ``output`` its file, if the policy lets ``name`` through."""
        name = names.sanitize_filename(name)
        if not self._policy.allows(name, mime_types(output.part.content_type, name)):
            return False
        path, fp = self._create(name)
        output.path = path
        self._unfinished.append(output)
        output.attach(fp)
        return True

    def _create(self, name: str) -> tuple[Path, BinaryIO]:
        """A new file for an attachment, named as ``names.create_exclusive`` does."""
        if self._checking is None:
            return names.create_exclusive(self._ensure_folder(), name, self._access)
        base = names.sanitize_filename(name)
        for attempt in range(1, names.MAX_COLLISIONS + 1):
            candidate = names.numbered(base, attempt)
            if candidate not in self._taken:
                self._taken.add(candidate)
                path = self._checking / candidate
                counter = self._counted[path] = _Counter()
                return path, cast(BinaryIO, counter)
        raise StorageError(f"cannot create {base!r}: too many files of that name")

    def _remove(self, path: Path) -> None:
        if self._checking is None:
            path.unlink()
        else:
            self._taken.discard(path.name)
            del self._counted[path]

    @property
    def intact(self) -> bool:
        """When checking: the folder holds every file the message gives, at its size."""
        return bool(self._files) and all(
            folders.size_of(path) == self._counted[path].size for path in self._files
        )

    def _ensure_folder(self) -> Path:
        """The partial folder, made with the message's link on the first file."""
        if not self._started:
            self._started = True  # from here on, ``abort`` removes the partial folder
            self._access.make_missing(self._root)
            folders.discard(self._partial)  # an earlier attempt's: we hold the account lock
            self._access.make_dir(self._partial)
            _link_or_copy(self._eml, self._partial, self._access)
        return self._partial

    def _temporary(self) -> BinaryIO:
        # Beside the folders, on the same disk: a winmail.dat may be as big as the message.
        self._access.make_missing(self._root)
        return tempfile.TemporaryFile(dir=self._root)

    def _unpack(self, part: Part, container: BinaryIO) -> None:
        """Replace a winmail.dat by the files inside it (or keep it if there are none)."""
        with container:
            found, defects = tnef.scan(container)
            # Which winmail.dat: a message may hold several.
            self._warnings.extend(f"{label(part)}: {text}" for text in defects)
            if not found:
                size = container.seek(0, os.SEEK_END)
                name = part.filename or "winmail.dat"
                self._write_copy(tnef.TnefFile(name, part.content_type, 0, size), container)
            for item in found:
                if len(self._files) >= self._max_files:
                    self._skipped += 1
                    continue
                self._write_copy(item, container)

    def _write_copy(self, item: tnef.TnefFile, container: BinaryIO) -> None:
        mime_type = item.mime_type or "application/octet-stream"
        name = names.sanitize_filename(item.name or self._unnamed_name(mime_type))
        if not self._policy.allows(name, mime_types(mime_type, name)):
            return
        limit = self._policy.max_size
        if limit is not None and item.length > limit:
            self._warnings.append(
                f"{name}: skipped, {item.length} bytes is over the {limit}-byte limit"
            )
            return
        path, fp = self._create(name)
        try:
            with fp:
                copied = tnef.copy_data(container, item, fp)
        except OSError:
            with contextlib.suppress(OSError):  # the error being raised matters more
                self._remove(path)
            raise
        if copied < item.length:
            self._warnings.append(f"{path.name}: cut short, the TNEF data is truncated")
        self._files.append(path)

    def finish(self) -> ExtractResult:
        """Give the complete folder its name; no folder if no file was kept."""
        # The walker ends every part it starts, so nothing can be left open here.
        assert not self._outputs
        assert not self._tnef
        assert not self._unfinished
        if self._skipped:
            self._warnings.append(
                f"{self._skipped} more attachments not extracted: at most "
                f"{self._max_files} files are kept per message"
            )
        if self._replacing is not None:
            self._warnings.append(
                f"the folder {self._replacing.name!r} did not hold all the attachments "
                "(a power failure, a changed policy, files removed); extracted again"
            )
        warnings = tuple(self._warnings)
        if self._checking is not None:
            return ExtractResult(self._info, self._checking, tuple(self._files), warnings)
        if not self._files:
            if self._started:  # every file written was removed again (max_size)
                folders.discard(self._partial)
            if self._replacing is not None:  # nothing to put in its place
                folders.discard(self._replacing)
            return ExtractResult(self._info, None, (), warnings)
        info = self._info
        title = names.message_folder_name(info.date, info.sender, info.subject)
        folder = folders.publish(self._partial, title, replacing=self._replacing)
        files = tuple(folder / path.name for path in self._files)
        return ExtractResult(info, folder, files, warnings)

    def abort(self) -> None:
        """After a disk error: close everything, remove the partial folder."""
        for output in self._unfinished:
            with contextlib.suppress(OSError):
                output.close()
            with contextlib.suppress(OSError, KeyError):  # the error being raised matters more
                if output.path is not None:
                    self._remove(output.path)
        self._unfinished.clear()
        for _part, container in self._tnef.values():
            with contextlib.suppress(OSError):
                container.close()
        self._outputs.clear()
        self._tnef.clear()
        if self._started:
            with contextlib.suppress(OSError):  # the error being raised matters more
                folders.discard(self._partial)


def _link_or_copy(source: Path, folder: Path, access: Access) -> None:
    """A hard link costs no space; a copy is the fallback (other filesystem, no links).

    A copy is no longer the stored file, so the folder also gets a marker
    naming the stored message: that is how ``folders.find_linked`` knows it.
    """
    target = folder / MESSAGE_FILE
    try:
        os.link(source, target)
        return
    except OSError:
        pass
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    with source.open("rb") as src, os.fdopen(os.open(target, flags, 0o600), "wb") as dst:
        access.set_fd(dst.fileno(), target)
        shutil.copyfileobj(src, dst)
    folders.write_marker(folder, source, access)
