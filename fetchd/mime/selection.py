"""Which parts of a message are attachments, and which of them a policy keeps.

The rules are listed in the docstring of ``fetchd.mime.attachments``.
"""

from __future__ import annotations

import fnmatch
import mimetypes
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from fetchd.mime.parts import Part

#: Which inline parts are extracted: "named" those with a file name (but not the
#: images an HTML body shows by cid:), "all" every one, "none" none.
InlinePolicy = Literal["named", "all", "none"]

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
    inline: InlinePolicy = "named"
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


def is_attachment(part: Part) -> bool:
    """Whether ``part`` is a file someone attached (inline or not)."""
    if part.kind in ("uuencode", "unopened"):
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
    return part.content_type.startswith("image/") and _is_related_resource(part)


def keeps_inline(part: Part, inline: InlinePolicy) -> bool:
    """Whether an inline attachment is extracted under the policy's ``inline`` mode.

    "named": a file the sender named is a file they meant to send, even shown
    inline (Apple Mail sends photos and PDFs as ``inline; filename=...``); a
    part the HTML body refers to by cid: inside multipart/related is page
    decoration (logos, signature images), named or not, and stays out.
    """
    if inline == "all":
        return True
    if inline == "none":
        return False
    return bool(part.filename) and not _is_related_resource(part)


def _is_related_resource(part: Part) -> bool:
    return part.content_id is not None and part.parents[-1:] == ("multipart/related",)


def _is_protocol_part(part: Part) -> bool:
    # RFC 1847 sections 2.1 and 2.2: the signature of multipart/signed is its second
    # part, the control information of multipart/encrypted its first.
    parent = part.parents[-1] if part.parents else ""
    return (parent == "multipart/signed" and part.index == 1) or (
        parent == "multipart/encrypted" and part.index == 0
    )


def is_tnef(part: Part) -> bool:
    """Whether ``part`` is a winmail.dat, which holds files of its own."""
    return part.content_type in _TNEF_TYPES or (part.filename or "").lower() == "winmail.dat"


def extension_for(mime_type: str) -> str:
    """A file extension for an unnamed part of this type (``.bin`` if unknown)."""
    return _EXTENSIONS.get(mime_type) or _TYPES.guess_extension(mime_type) or ".bin"


def mime_types(declared: str, name: str) -> tuple[str, ...]:
    """The declared type and, if there is one, the type the file name suggests."""
    guessed, _encoding = _TYPES.guess_type(name, strict=False)
    return (declared,) if guessed is None else (declared, guessed)
