"""Attachment extraction end to end, and the streaming MIME walker beneath it.

Messages are built with the stdlib's EmailMessage where it can express them,
and by hand where the point is that they are malformed.
"""

from __future__ import annotations

import binascii
import email
import email.policy
import email.utils
import hashlib
import os
import random
import tempfile
import tracemalloc
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path
from typing import BinaryIO

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fetchd.access import Access
from fetchd.errors import StorageError
from fetchd.mime import frames
from fetchd.mime import walker as mime
from fetchd.mime.attachments import (
    MESSAGE_FILE,
    AttachmentPolicy,
    ExtractResult,
    extension_for,
    extract,
    read_info,
)
from fetchd.mime.selection import InlinePolicy
from tests.mime.test_tnef import TnefEntry, build_tnef

RNG = random.Random(20261126)
PDF = b"%PDF-1.7\n" + RNG.randbytes(300_000)
BLOB = RNG.randbytes(5_000)
UU_DATA = RNG.randbytes(1_000)
PNG = b"\x89PNG\r\n\x1a\n" + RNG.randbytes(2_000)
NOTES = "Grüße aus Köln\nzweite Zeile\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def uuencode(name: str, data: bytes) -> str:
    lines = [f"begin 644 {name}"]
    lines += [
        binascii.b2a_uu(data[i : i + 45]).decode().rstrip("\n") for i in range(0, len(data), 45)
    ]
    return "\n".join([*lines, "`", "end"]) + "\n"


def new_message(subject: str = "Invoice 42") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Alice Smith <alice@example.org>"
    msg["To"] = "bob@example.org"
    msg["Subject"] = subject
    msg["Date"] = "Thu, 26 Nov 2026 14:02:00 +0100"
    msg["Message-ID"] = "<inv42@example.org>"
    return msg


def mixed_message() -> bytes:
    """Base64, quoted-printable, 8bit and uuencoded attachments in one message."""
    msg = new_message()
    msg.set_content("Hello,\n\nsee attached.\n\n" + uuencode("old style.bin", UU_DATA) + "Bye\n")
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="invoice.pdf")
    msg.add_attachment(
        BLOB,
        maintype="application",
        subtype="octet-stream",
        filename="blob.bin",
        cte="quoted-printable",
    )
    msg.add_attachment(NOTES, subtype="plain", filename="notes.txt", cte="8bit")
    return msg.as_bytes()


def store(tmp_path: Path, raw: bytes, name: str = "message-1.eml") -> Path:
    maildir = tmp_path / "Maildir" / "new"
    maildir.mkdir(parents=True, exist_ok=True)
    path = maildir / name
    path.write_bytes(raw)
    return path


def run(tmp_path: Path, raw: bytes, policy: AttachmentPolicy | None = None) -> ExtractResult:
    return extract(store(tmp_path, raw), tmp_path / "attachments", policy or AttachmentPolicy())


def contents(result: ExtractResult) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in result.files}


# --- the happy path -------------------------------------------------------------------------------


@pytest.mark.parametrize("line_ending", [b"\n", b"\r\n"], ids=["LF", "CRLF"])
def test_mixed_message_is_extracted_byte_for_byte(tmp_path: Path, line_ending: bytes) -> None:
    raw = mixed_message().replace(b"\n", line_ending)
    result = run(tmp_path, raw)
    files = contents(result)
    assert set(files) == {"invoice.pdf", "blob.bin", "notes.txt", "old style.bin"}
    assert sha(files["invoice.pdf"]) == sha(PDF)  # base64
    assert sha(files["blob.bin"]) == sha(BLOB)  # quoted-printable
    assert sha(files["old style.bin"]) == sha(UU_DATA)  # uuencode
    # 8bit text keeps the line breaks of the stored file.
    assert files["notes.txt"] == NOTES.encode().replace(b"\n", line_ending)
    assert result.warnings == ()


def test_folder_is_named_after_the_message_and_holds_a_hard_link(tmp_path: Path) -> None:
    eml = store(tmp_path, mixed_message())
    result = extract(eml, tmp_path / "attachments", AttachmentPolicy())
    assert result.folder == tmp_path / "attachments" / "2026-11-26 14.02 Alice Smith - Invoice 42"
    linked = result.folder / MESSAGE_FILE
    assert linked.stat().st_ino == eml.stat().st_ino
    assert eml.stat().st_nlink == 2
    assert all(path.parent == result.folder for path in result.files)
    assert linked not in result.files


def test_info_is_returned_with_the_files(tmp_path: Path) -> None:
    info = run(tmp_path, mixed_message()).info
    assert info.sender == "Alice Smith"
    assert info.sender_address == "alice@example.org"
    assert info.subject == "Invoice 42"
    assert info.message_id == "<inv42@example.org>"
    assert info.date == datetime(2026, 11, 26, 14, 2, tzinfo=timezone(timedelta(hours=1)))


def test_a_message_without_attachments_creates_no_folder(tmp_path: Path) -> None:
    msg = new_message("Just text")
    msg.set_content("Plain words.\n")
    msg.add_alternative("<p>Plain words.</p>", subtype="html")
    result = run(tmp_path, msg.as_bytes())
    assert result.folder is None
    assert result.files == ()
    root = tmp_path / "attachments"
    assert not root.exists() or list(root.iterdir()) == []


def test_the_same_folder_name_twice_gets_numbered(tmp_path: Path) -> None:
    first = extract(store(tmp_path, mixed_message(), "a.eml"), tmp_path / "att", AttachmentPolicy())
    second = extract(
        store(tmp_path, mixed_message(), "b.eml"), tmp_path / "att", AttachmentPolicy()
    )
    assert first.folder is not None
    assert second.folder is not None
    assert second.folder.name == first.folder.name + " (2)"


def test_extract_false_only_reads_the_headers(tmp_path: Path) -> None:
    result = run(tmp_path, mixed_message(), AttachmentPolicy(extract=False))
    assert result.folder is None
    assert result.files == ()
    assert result.info.subject == "Invoice 42"
    assert not (tmp_path / "attachments").exists()


def test_the_link_falls_back_to_a_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(*_args: object, **_kwargs: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    eml = store(tmp_path, mixed_message())
    result = extract(eml, tmp_path / "attachments", AttachmentPolicy())
    assert result.folder is not None
    copied = result.folder / MESSAGE_FILE
    assert copied.read_bytes() == eml.read_bytes()
    assert copied.stat().st_ino != eml.stat().st_ino


def test_an_attachment_called_message_eml_does_not_replace_the_link(tmp_path: Path) -> None:
    msg = new_message()
    msg.set_content("x")
    msg.add_attachment(
        b"not the message", maintype="application", subtype="x", filename="message.eml"
    )
    result = run(tmp_path, msg.as_bytes())
    assert contents(result) == {"message (2).eml": b"not the message"}


def test_unnamed_parts_are_named_after_their_type(tmp_path: Path) -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\n\n"
        b"--b\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n\nJVBERg==\n"
        b"--b\nContent-Type: image/jpeg\n\n\xff\xd8\xff\n"
        b"--b\nContent-Type: text/plain\nContent-Disposition: attachment\n\nsome text\n"
        b"--b\nContent-Type: application/x-fetchd-unknown\n\n?\n"
        b"--b--\n"
    )
    files = contents(run(tmp_path, raw))
    assert files == {
        "attachment-1.pdf": b"%PDF",
        "attachment-2.jpg": b"\xff\xd8\xff",
        "attachment-3.txt": b"some text",
        "attachment-4.bin": b"?",
    }


def test_extension_overrides() -> None:
    assert extension_for("image/jpeg") == ".jpg"
    assert extension_for("text/plain") == ".txt"
    assert extension_for("application/pdf") == ".pdf"
    assert extension_for("application/x-nobody-knows") == ".bin"


def test_a_message_that_is_itself_an_attachment(tmp_path: Path) -> None:
    # Scanners send a bare PDF as the whole message.
    raw = (
        b"From: scanner@example.org\nSubject: Scan\nContent-Type: application/pdf; name=scan.pdf\n"
        b"Content-Transfer-Encoding: base64\n\n" + binascii.b2a_base64(PDF[:1000])
    )
    assert contents(run(tmp_path, raw)) == {"scan.pdf": PDF[:1000]}


# --- names ----------------------------------------------------------------------------------------


def test_non_ascii_names_rfc2231_from_the_stdlib(tmp_path: Path) -> None:
    msg = new_message()
    msg.set_content("x")
    msg.add_attachment(b"1", maintype="application", subtype="pdf", filename="Übersicht 2026.pdf")
    msg.add_attachment(b"2", maintype="application", subtype="pdf", filename="日本語の資料.pdf")
    raw = msg.as_bytes()
    assert b"filename*=" in raw
    assert contents(run(tmp_path, raw)) == {"Übersicht 2026.pdf": b"1", "日本語の資料.pdf": b"2"}


NAME_CASES = [
    ("filename*=utf-8''%C3%9Cbersicht.pdf", "Übersicht.pdf"),
    ("filename*=iso-8859-1'de'%FCber.txt", "über.txt"),
    # Continuations, with a multi-byte character split between two of them.
    ("filename*0*=utf-8''%E2%82; filename*1*=%AC%20price.txt", "€ price.txt"),
    ('filename*0="long name ";  filename*1="in parts.txt"', "long name in parts.txt"),
    # RFC 2047 in a quoted parameter: forbidden, and what many clients send.
    ('filename="=?UTF-8?B?w5xiZXJzaWNodC5wZGY=?="', "Übersicht.pdf"),
    ('filename="=?iso-8859-1?Q?K=F6ln_Plan.pdf?="', "Köln Plan.pdf"),
    ('filename="=?utf-8?q?Gr=C3=BC?= =?utf-8?q?=C3=9Fe.txt?="', "Grüße.txt"),
    # A character split across two encoded words.
    ('filename="=?utf-8?B?4oI=?= =?utf-8?B?rA==?=.txt"', "€.txt"),
    # Raw UTF-8 in the header (RFC 6532 style).
    ('filename="Résumé.pdf"', "Résumé.pdf"),
    # Unencoded continuations after an encoded one: ASCII, and raw UTF-8 beyond Latin-1.
    ("filename*0*=utf-8''%C3%A9t%C3%A9; filename*1=\" report.txt\"", "été report.txt"),
    ("filename*0*=utf-8''%C3%A9; filename*1=\"\u65e5\u672c.txt\"", "é\u65e5\u672c.txt"),
    # Both forms: RFC 2231 wins.
    ("filename=\"plain.txt\"; filename*=utf-8''%C3%A9t%C3%A9.txt", "été.txt"),
]


@pytest.mark.parametrize(("param", "expected"), NAME_CASES)
def test_non_ascii_names_by_hand(tmp_path: Path, param: str, expected: str) -> None:
    raw = (
        "Subject: names\nContent-Type: multipart/mixed; boundary=b\n\n--b\n"
        f"Content-Type: application/octet-stream\nContent-Disposition: attachment; {param}\n\n"
        "data\n--b--\n"
    ).encode()
    result = run(tmp_path, raw)
    assert [p.name for p in result.files] == [expected]
    assert result.warnings == ()


def test_the_content_type_name_parameter_is_used_too(tmp_path: Path) -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\n\n--b\n"
        b'Content-Type: application/pdf; name="=?utf-8?q?Pr=C3=BCfung?=.pdf"\n\n%PDF\n--b--\n'
    )
    assert [p.name for p in run(tmp_path, raw).files] == ["Prüfung.pdf"]


LYING_CHARSETS = [
    ("filename*=us-ascii''%C3%BCber.txt", "über.txt"),  # UTF-8 declared as ASCII
    ("filename*=utf-8''%FCber.txt", "über.txt"),  # Latin-1 declared as UTF-8
    ("filename*=x-no-such-charset''%C3%BCber.txt", "über.txt"),
    ('filename="=?utf-8?q?=FCber.txt?="', "über.txt"),
    ('filename="=?utf-8?b?/GJlci50eHQ=?="', "über.txt"),
    ('filename="=?base64_codec?q?x.txt?="', "x.txt"),  # not a text encoding
]


@pytest.mark.parametrize(("param", "expected"), LYING_CHARSETS)
def test_a_lying_charset_falls_back_with_a_warning(
    tmp_path: Path, param: str, expected: str
) -> None:
    raw = (
        "Content-Type: multipart/mixed; boundary=b\n\n--b\n"
        f"Content-Disposition: attachment; {param}\n\ndata\n--b--\n"
    ).encode()
    result = run(tmp_path, raw)
    assert [p.name for p in result.files] == [expected]
    assert any("charset" in w for w in result.warnings)


def test_hostile_names_stay_in_the_folder(tmp_path: Path) -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\n\n"
        b'--b\nContent-Disposition: attachment; filename="../../../../tmp/evil.sh"\n\n1\n'
        b'--b\nContent-Disposition: attachment; filename="invoice\xe2\x80\xaefdp.exe"\n\n2\n'
        b'--b\nContent-Disposition: attachment; filename=".."\n\n3\n'
        b'--b\nContent-Disposition: attachment; filename="CON.txt"\n\n4\n'
        b"--b--\n"
    )
    result = run(tmp_path, raw)
    assert result.folder is not None
    assert {p.name for p in result.files} == {
        "_.._.._.._tmp_evil.sh",
        "invoicefdp.exe",
        "attachment",
        "_CON.txt",
    }
    assert all(p.resolve().parent == result.folder.resolve() for p in result.files)


# --- forwarded messages ---------------------------------------------------------------------------


def inner_message() -> EmailMessage:
    inner = EmailMessage()
    inner["From"] = "Carol <carol@example.org>"
    inner["Subject"] = "Original: plans"
    inner.set_content("the plans are attached\n")
    inner.add_attachment(PNG, maintype="image", subtype="png", filename="diagram.png")
    return inner


def test_a_forwarded_message_is_walked_for_its_attachments(tmp_path: Path) -> None:
    outer = new_message("Fwd: plans")
    outer.set_content("see below")
    part = EmailMessage()
    part.set_content(inner_message())  # message/rfc822, no disposition, no name
    outer.make_mixed()
    outer.attach(part)
    result = run(tmp_path, outer.as_bytes())
    assert contents(result) == {"diagram.png": PNG}


def test_an_attached_message_is_saved_under_its_subject(tmp_path: Path) -> None:
    inner = inner_message()
    outer = new_message("Fwd: plans")
    outer.set_content("see attached")
    outer.add_attachment(inner)  # disposition attachment, no file name
    raw = outer.as_bytes()
    files = contents(run(tmp_path, raw))
    assert set(files) == {"Original_ plans.eml", "diagram.png"}
    assert files["diagram.png"] == PNG
    assert files["Original_ plans.eml"] == inner.as_bytes()
    reparsed = email.message_from_bytes(files["Original_ plans.eml"], policy=email.policy.default)
    assert reparsed["Subject"] == "Original: plans"


def test_a_named_forwarded_message_keeps_its_name(tmp_path: Path) -> None:
    outer = new_message()
    outer.set_content("x")
    outer.add_attachment(inner_message(), filename="forwarded")
    files = contents(run(tmp_path, outer.as_bytes()))
    assert set(files) == {"forwarded.eml", "diagram.png"}


def test_messages_nested_three_deep(tmp_path: Path) -> None:
    level2 = EmailMessage()
    level2["Subject"] = "level 2"
    level2.set_content("l2")
    level2.add_attachment(b"deepest", maintype="application", subtype="zip", filename="deep.zip")
    level1 = EmailMessage()
    level1["Subject"] = "level 1"
    level1.set_content("l1")
    wrapper = EmailMessage()
    wrapper.set_content(level2)
    level1.make_mixed()
    level1.attach(wrapper)
    outer = new_message()
    outer.set_content("l0")
    wrapper0 = EmailMessage()
    wrapper0.set_content(level1)
    outer.make_mixed()
    outer.attach(wrapper0)
    assert contents(run(tmp_path, outer.as_bytes())) == {"deep.zip": b"deepest"}


def test_a_base64_encoded_forwarded_message_is_kept_whole(tmp_path: Path) -> None:
    inner = inner_message().as_bytes()
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: message/rfc822\n"
        b"Content-Transfer-Encoding: base64\n\n" + binascii.b2a_base64(inner) + b"--b--\n"
    )
    assert contents(run(tmp_path, raw)) == {"attachment-1.eml": inner}


def test_a_large_forwarded_message_is_saved_exactly(tmp_path: Path) -> None:
    inner = inner_message()
    inner.add_attachment(PDF, maintype="application", subtype="pdf", filename="big.pdf")
    outer = new_message()
    outer.set_content("x")
    outer.add_attachment(inner, filename="fwd.eml")
    files = contents(run(tmp_path, outer.as_bytes()))
    assert files["fwd.eml"] == inner.as_bytes()
    assert sha(files["big.pdf"]) == sha(PDF)


def test_a_forwarded_message_with_huge_headers_gets_a_fallback_name(tmp_path: Path) -> None:
    junk = b"".join(b"X-Junk-%d: %s\n" % (i, b"j" * 200) for i in range(6000))  # 1.2 MB
    inner = b"Subject: buried\n" + junk + b"\nbody\n"
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\ntext\n--b\n"
        b"Content-Type: message/rfc822\nContent-Disposition: attachment\n\n" + inner + b"\n--b--\n"
    )
    result = run(tmp_path, raw)
    assert contents(result) == {"attachment-1.eml": inner}
    assert any("too large" in w for w in result.warnings)


def test_a_forwarded_message_with_long_headers_is_named_after_its_subject(
    tmp_path: Path,
) -> None:
    inner = b"".join(b"X-Long-%d: %s\n" % (i, b"l" * 200) for i in range(400))
    inner = b"Subject: after 80 kB of headers\n" + inner + b"\nbody\n"
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\n\n--b\n"
        b"Content-Type: message/rfc822\nContent-Disposition: attachment\n\n" + inner + b"\n--b--\n"
    )
    assert contents(run(tmp_path, raw)) == {"after 80 kB of headers.eml": inner}


def test_an_excluded_forwarded_message_is_still_walked(tmp_path: Path) -> None:
    outer = new_message()
    outer.set_content("x")
    outer.add_attachment(inner_message())
    result = run(tmp_path, outer.as_bytes(), AttachmentPolicy(exclude=("*.eml",)))
    assert contents(result) == {"diagram.png": PNG}


def test_a_message_rfc822_at_the_end_of_the_file_keeps_its_last_line_break(
    tmp_path: Path,
) -> None:
    inner = b"Subject: whole\n\nlast line\n"
    raw = b"Content-Type: message/rfc822\nContent-Disposition: attachment; filename=w.eml\n\n"
    assert contents(run(tmp_path, raw + inner)) == {"w.eml": inner}


def test_a_digest_defaults_its_parts_to_messages(tmp_path: Path) -> None:
    raw = (
        b"Subject: digest\nContent-Type: multipart/digest; boundary=d\n\n--d\n\n"
        b"Subject: first\nContent-Type: multipart/mixed; boundary=i\n\n--i\n\nbody\n"
        b"--i\nContent-Type: application/pdf; name=in-digest.pdf\n\n%PDF\n--i--\n--d--\n"
    )
    assert contents(run(tmp_path, raw)) == {"in-digest.pdf": b"%PDF"}


# --- inline parts, signatures, policy -------------------------------------------------------------


def related_message() -> bytes:
    msg = new_message("Newsletter")
    msg.set_content("text version")
    msg.add_alternative('<p><img src="cid:logo@x"></p>', subtype="html")
    (html,) = (part for part in msg.iter_parts() if part.get_content_type() == "text/html")
    html.add_related(PNG, maintype="image", subtype="png", cid="<logo@x>")
    msg.add_attachment(PDF[:100], maintype="application", subtype="pdf", filename="real.pdf")
    return msg.as_bytes()


def test_inline_images_are_skipped_by_default(tmp_path: Path) -> None:
    assert set(contents(run(tmp_path, related_message()))) == {"real.pdf"}


def test_inline_images_are_extracted_when_asked(tmp_path: Path) -> None:
    files = contents(run(tmp_path, related_message(), AttachmentPolicy(inline="all")))
    assert set(files) == {"real.pdf", "attachment-1.png"}
    assert files["attachment-1.png"] == PNG


def test_inline_disposition_counts_as_inline(tmp_path: Path) -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\nhi\n--b\n"
        b"Content-Type: image/jpeg\nContent-Disposition: inline\n\n"
        b"JPEG\n--b--\n"
    )
    assert run(tmp_path, raw).files == ()
    assert contents(run(tmp_path / "2", raw, AttachmentPolicy(inline="all"))) == {
        "attachment-1.jpg": b"JPEG"
    }


def apple_mail_message() -> bytes:
    """As Apple Mail sends them: files inline, with names, between pieces of text."""
    return (
        b"From: a@example.org\nSubject: photos\nMIME-Version: 1.0\n"
        b"Content-Type: multipart/mixed; boundary=b\n\n"
        b"--b\nContent-Type: text/plain\n\nHere they are:\n"
        b"--b\nContent-Type: image/jpeg; name=IMG_1234.jpeg\n"
        b"Content-Disposition: inline; filename=IMG_1234.jpeg\n"
        b"Content-Transfer-Encoding: base64\n\nSlBFRyBkYXRh\n"
        b"--b\nContent-Type: text/html\nContent-Disposition: inline\n\n<p>and the plan</p>\n"
        b"--b\nContent-Type: application/pdf; name=plan.pdf\n"
        b"Content-Disposition: inline; filename=plan.pdf\n\n%PDF-plan\n"
        b"--b\nContent-Type: image/png\nContent-Disposition: inline\n\nPNG\n"
        b"--b--\n"
    )


def test_named_inline_parts_are_extracted_by_default(tmp_path: Path) -> None:
    result = run(tmp_path, apple_mail_message())
    # The unnamed inline image and the inline HTML text stay in the message.
    assert contents(result) == {"IMG_1234.jpeg": b"JPEG data", "plan.pdf": b"%PDF-plan"}
    assert result.warnings == ()


@pytest.mark.parametrize(
    ("inline", "expected"),
    [
        ("named", {"IMG_1234.jpeg", "plan.pdf"}),
        ("all", {"IMG_1234.jpeg", "plan.pdf", "attachment-1.png"}),
        ("none", set()),
    ],
)
def test_the_inline_policy_modes(tmp_path: Path, inline: InlinePolicy, expected: set[str]) -> None:
    files = contents(run(tmp_path, apple_mail_message(), AttachmentPolicy(inline=inline)))
    assert set(files) == expected


def test_a_named_cid_image_in_multipart_related_is_decoration(tmp_path: Path) -> None:
    raw = (
        b"Content-Type: multipart/related; boundary=r\n\n--r\nContent-Type: text/html\n\n"
        b'<img src="cid:logo@x">\n--r\nContent-Type: image/png; name=logo.png\n'
        b"Content-Disposition: inline; filename=logo.png\nContent-ID: <logo@x>\n\nPNG\n--r--\n"
    )
    assert run(tmp_path, raw).files == ()
    assert contents(run(tmp_path / "2", raw, AttachmentPolicy(inline="all"))) == {
        "logo.png": b"PNG"
    }


def test_a_cid_image_is_inline_only_inside_multipart_related(tmp_path: Path) -> None:
    image = b"Content-Type: image/gif\nContent-ID: <logo@x>\n\nGIF\n"
    related = (
        b"Content-Type: multipart/related; boundary=r\n\n--r\nContent-Type: text/html\n\n"
        b'<img src="cid:logo@x">\n--r\n' + image + b"--r--\n"
    )
    assert run(tmp_path, related).files == ()
    assert len(run(tmp_path / "2", related, AttachmentPolicy(inline="all")).files) == 1
    mixed = b"Content-Type: multipart/mixed; boundary=m\n\n--m\n\nhi\n--m\n" + image + b"--m--\n"
    assert contents(run(tmp_path / "3", mixed)) == {"attachment-1.gif": b"GIF"}


def test_a_related_image_with_attachment_disposition_is_an_attachment(tmp_path: Path) -> None:
    raw = (
        b"Content-Type: multipart/related; boundary=r\n\n--r\nContent-Type: text/html\n\n<p>\n"
        b"--r\nContent-Type: image/gif\nContent-ID: <a@b>\n"
        b"Content-Disposition: attachment; filename=a.gif\n\nGIF\n--r--\n"
    )
    assert contents(run(tmp_path, raw)) == {"a.gif": b"GIF"}


def test_signatures_and_encryption_control_parts_are_not_attachments(tmp_path: Path) -> None:
    raw = (
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; boundary=s\n\n'
        b"--s\nContent-Type: multipart/mixed; boundary=m\n\n--m\n\ntext\n"
        b"--m\nContent-Disposition: attachment; filename=signed.pdf\n\n%PDF\n--m--\n"
        b"--s\nContent-Type: application/pkcs7-signature; name=smime.p7s\n"
        b"Content-Disposition: attachment; filename=smime.p7s\n\nSIG\n--s--\n"
    )
    assert contents(run(tmp_path, raw)) == {"signed.pdf": b"%PDF"}
    encrypted = (
        b'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary=e\n\n'
        b"--e\nContent-Type: application/pgp-encrypted\n\nVersion: 1\n"
        b"--e\nContent-Type: application/octet-stream; name=encrypted.asc\n\n"
        b"-----BEGIN PGP\n--e--\n"
    )
    assert [p.name for p in run(tmp_path / "2", encrypted).files] == ["encrypted.asc"]


def policy_message() -> bytes:
    msg = new_message()
    msg.set_content("x")
    msg.add_attachment(b"pdf", maintype="application", subtype="pdf", filename="Report.PDF")
    msg.add_attachment(b"png", maintype="image", subtype="png", filename="chart.png")
    msg.add_attachment(b"jpg", maintype="application", subtype="octet-stream", filename="ph.jpg")
    msg.add_attachment(b"doc", maintype="application", subtype="msword", filename="letter.doc")
    return msg.as_bytes()


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (AttachmentPolicy(), {"Report.PDF", "chart.png", "ph.jpg", "letter.doc"}),
        (AttachmentPolicy(include=("*.pdf",)), {"Report.PDF"}),
        (AttachmentPolicy(include=("application/pdf", "*.DOC")), {"Report.PDF", "letter.doc"}),
        # The type of an octet-stream part is also guessed from its name.
        (AttachmentPolicy(include=("image/*",)), {"chart.png", "ph.jpg"}),
        (AttachmentPolicy(exclude=("image/*",)), {"Report.PDF", "letter.doc"}),
        (AttachmentPolicy(include=("*.pdf", "*.png"), exclude=("chart*",)), {"Report.PDF"}),
        (AttachmentPolicy(exclude=("*",)), set()),
    ],
)
def test_include_and_exclude_globs(
    tmp_path: Path, policy: AttachmentPolicy, expected: set[str]
) -> None:
    result = run(tmp_path, policy_message(), policy)
    assert {p.name for p in result.files} == expected
    assert (result.folder is None) == (not expected)


def test_max_size_removes_larger_attachments_with_a_warning(tmp_path: Path) -> None:
    msg = new_message()
    msg.set_content("x")
    msg.add_attachment(b"s" * 1000, maintype="application", subtype="pdf", filename="small.pdf")
    msg.add_attachment(b"b" * 1001, maintype="application", subtype="pdf", filename="big.pdf")
    result = run(tmp_path, msg.as_bytes(), AttachmentPolicy(max_size=1000))
    assert result.folder is not None
    assert contents(result) == {"small.pdf": b"s" * 1000}
    assert not (result.folder / "big.pdf").exists()
    assert any("big.pdf" in w and "1001" in w and "1000" in w for w in result.warnings)


def test_max_size_applies_to_attached_messages(tmp_path: Path) -> None:
    outer = new_message()
    outer.set_content("x")
    outer.add_attachment(inner_message())
    result = run(tmp_path, outer.as_bytes(), AttachmentPolicy(max_size=len(PNG) + 10))
    assert contents(result) == {"diagram.png": PNG}
    assert any("Original_ plans.eml" in w for w in result.warnings)


def test_max_size_leaves_no_folder_when_nothing_is_kept(tmp_path: Path) -> None:
    msg = new_message()
    msg.set_content("x")
    msg.add_attachment(b"b" * 5000, maintype="application", subtype="pdf", filename="big.pdf")
    result = run(tmp_path, msg.as_bytes(), AttachmentPolicy(max_size=10))
    assert result.folder is None
    assert result.files == ()
    assert list((tmp_path / "attachments").iterdir()) == []


# --- TNEF -----------------------------------------------------------------------------------------


def tnef_message(stream: bytes, content_type: str = "application/ms-tnef") -> bytes:
    msg = new_message("From Outlook")
    msg.set_content("see attachments")
    maintype, subtype = content_type.split("/")
    msg.add_attachment(stream, maintype=maintype, subtype=subtype, filename="winmail.dat")
    return msg.as_bytes()


def test_winmail_dat_is_replaced_by_its_files(tmp_path: Path) -> None:
    stream = build_tnef(
        [
            TnefEntry(title="PLAN~1.PDF", data=PDF[:5000], long_name="Plan für 2026.pdf"),
            TnefEntry(title="photo.jpg", data=PNG),
        ]
    )
    files = contents(run(tmp_path, tnef_message(stream)))
    assert files == {"Plan für 2026.pdf": PDF[:5000], "photo.jpg": PNG}


def test_winmail_dat_sent_as_octet_stream_is_recognised_by_name(tmp_path: Path) -> None:
    stream = build_tnef([TnefEntry(title="a.txt", data=b"a")])
    files = contents(run(tmp_path, tnef_message(stream, "application/octet-stream")))
    assert files == {"a.txt": b"a"}


def test_winmail_dat_with_truncated_data_keeps_what_is_there(tmp_path: Path) -> None:
    stream = build_tnef([TnefEntry(title="cut.bin", data=b"c" * 1000)])
    stream = stream[: stream.index(b"c" * 1000) + 300]
    result = run(tmp_path, tnef_message(stream))
    assert contents(result) == {"cut.bin": b"c" * 300}
    assert any("truncated" in w for w in result.warnings)


def test_winmail_dat_without_files_is_kept(tmp_path: Path) -> None:
    stream = build_tnef([])
    assert contents(run(tmp_path, tnef_message(stream))) == {"winmail.dat": stream}


def test_files_inside_winmail_dat_follow_the_policy(tmp_path: Path) -> None:
    stream = build_tnef(
        [TnefEntry(title="keep.pdf", data=b"k"), TnefEntry(title="skip.jpg", data=b"s" * 50)]
    )
    result = run(tmp_path, tnef_message(stream), AttachmentPolicy(exclude=("*.jpg",)))
    assert contents(result) == {"keep.pdf": b"k"}
    small = run(tmp_path / "2", tnef_message(stream), AttachmentPolicy(max_size=10))
    assert contents(small) == {"keep.pdf": b"k"}
    assert any("skip.jpg" in w for w in small.warnings)


def test_a_broken_winmail_dat_is_kept_with_a_warning(tmp_path: Path) -> None:
    result = run(tmp_path, tnef_message(b"not tnef at all"))
    assert contents(result) == {"winmail.dat": b"not tnef at all"}
    assert any("TNEF" in w for w in result.warnings)


def test_tnef_warnings_say_which_winmail_dat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fetchd.mime import attachments

    where = "part 2 (application/ms-tnef 'winmail.dat')"
    broken = run(tmp_path, tnef_message(b"not tnef at all"))
    assert broken.warnings == (f"{where}: winmail.dat is not a TNEF stream",)
    stream = build_tnef([TnefEntry(title="cut.bin", data=b"c" * 1000)])
    cut = run(tmp_path / "2", tnef_message(stream[: stream.index(b"c" * 1000) + 300]))
    assert cut.warnings == (f"{where}: TNEF: stream is truncated",)
    # Files inside a winmail.dat count towards the limit, and the skipped ones are counted.
    monkeypatch.setattr(attachments, "MAX_FILES", 2)
    many = build_tnef([TnefEntry(title=f"{n}.bin", data=b"n") for n in range(5)])
    result = run(tmp_path / "3", tnef_message(many))
    assert [path.name for path in result.files] == ["0.bin", "1.bin"]
    assert result.warnings == (
        "3 more attachments not extracted: at most 2 files are kept per message",
    )


# --- malformed messages ---------------------------------------------------------------------------


def test_missing_closing_boundary(tmp_path: Path) -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\ntext\n"
        b"--b\nContent-Type: application/pdf; name=a.pdf\nContent-Transfer-Encoding: base64\n\n"
        + binascii.b2a_base64(PDF[:3000])
    )
    result = run(tmp_path, raw)
    assert contents(result) == {"a.pdf": PDF[:3000]}
    assert any("closing boundary" in w for w in result.warnings)


def test_a_message_cut_off_inside_base64(tmp_path: Path) -> None:
    encoded = binascii.b2a_base64(PDF[:3000])
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\n\n--b\n"
        b"Content-Type: application/pdf; name=a.pdf\nContent-Transfer-Encoding: base64\n\n"
        + encoded[:1001]
    )
    result = run(tmp_path, raw)
    data = contents(result)["a.pdf"]
    assert data == PDF[:750]  # 1000 characters are 750 bytes; the 1001st cannot decode
    assert any("stray character" in w for w in result.warnings)


def test_bad_base64_characters_are_ignored_with_a_warning(tmp_path: Path) -> None:
    good = binascii.b2a_base64(BLOB).decode()
    noisy = "".join(c + ("!" if i % 50 == 0 else "") for i, c in enumerate(good))
    raw = (
        "Content-Type: multipart/mixed; boundary=b\n\n--b\n"
        "Content-Type: application/octet-stream; name=a.bin\nContent-Transfer-Encoding: base64\n\n"
        f"{noisy}\n--b--\n"
    ).encode()
    result = run(tmp_path, raw)
    assert contents(result) == {"a.bin": BLOB}
    assert any("base64 alphabet" in w for w in result.warnings)


@pytest.mark.parametrize("width", [61, 75, 1001, 70_001])
def test_base64_wrapped_at_any_width_is_decoded(tmp_path: Path, width: int) -> None:
    # Line lengths that are not multiples of 4 make quanta straddle lines and chunks.
    encoded = binascii.b2a_base64(PDF, newline=False)
    lines = b"\n".join(encoded[i : i + width] for i in range(0, len(encoded), width))
    raw = (
        b"Content-Type: application/pdf; name=a.pdf\nContent-Transfer-Encoding: base64\n\n"
        + lines
        + b"\n"
    )
    result = run(tmp_path, raw)
    assert sha(contents(result)["a.pdf"]) == sha(PDF)
    assert result.warnings == ()


def test_concatenated_base64_blocks_are_all_decoded(tmp_path: Path) -> None:
    raw = (
        b"Content-Type: application/octet-stream; name=a.bin\nContent-Transfer-Encoding: base64\n\n"
        b"YQ==\nYmM=\nZGVm\n"
    )
    assert contents(run(tmp_path, raw)) == {"a.bin": b"abcdef"}


def test_garbage_headers_do_not_stop_extraction(tmp_path: Path) -> None:
    raw = (
        b"From: \x00\xff\xfe junk <<<@>>>\nSubject: =?utf-8?b?!!!?= =?x?q?=ZZ?=\n"
        b"Date: not a date at all\nX-Binary: \x01\x02\x03\x80\n"
        b'Content-Type: multipart/mixed; boundary="b"; ;;; ===\n'
        b"this line is not a header\n\n--b\nContent-Type: ;;/;\n\ntext\n"
        b'--b\nContent-Type: application/pdf; name="unterminated.pdf\n'
        b"Content-Disposition: attachment; filename*=bogus''%ZZ%\n\n%PDF\n--b--\n"
    )
    result = run(tmp_path, raw)
    assert len(result.files) == 1
    assert result.files[0].read_bytes() == b"%PDF"
    assert result.info.date is None
    assert any("blank line" in w for w in result.warnings)


def test_a_multipart_without_boundary(tmp_path: Path) -> None:
    raw = b"Content-Type: multipart/mixed\n\n--x\nContent-Type: application/pdf\n\n%PDF\n--x--\n"
    result = run(tmp_path, raw)
    assert result.files == ()
    assert any("without a boundary" in w for w in result.warnings)


def test_no_delimiter_found(tmp_path: Path) -> None:
    raw = b"Content-Type: multipart/mixed; boundary=expected\n\n--other\n\nx\n--other--\n"
    result = run(tmp_path, raw)
    assert result.files == ()
    assert any("no part delimiter" in w for w in result.warnings)


def test_unknown_transfer_encoding_keeps_the_bytes(tmp_path: Path) -> None:
    raw = (
        b"Content-Type: application/pdf; name=a.pdf\nContent-Transfer-Encoding: x-fancy\n\n"
        b"%PDF raw\n"
    )
    result = run(tmp_path, raw)
    assert contents(result) == {"a.pdf": b"%PDF raw\n"}
    assert any("x-fancy" in w for w in result.warnings)


def test_uuencode_transfer_encoding(tmp_path: Path) -> None:
    raw = (
        b"Content-Type: application/octet-stream; name=u.bin\n"
        b"Content-Transfer-Encoding: x-uuencode\n\n" + uuencode("u.bin", UU_DATA).encode()
    )
    result = run(tmp_path, raw)
    assert contents(result) == {"u.bin": UU_DATA}
    assert result.warnings == ()


def test_broken_uuencoding_is_reported(tmp_path: Path) -> None:
    body = uuencode("u.bin", UU_DATA).replace("\nend\n", "\n")
    lines = body.splitlines()
    lines[3] = "M!!!!" + "\x7f" * 10  # not uuencoded
    raw = (
        b"Content-Type: application/octet-stream; name=u.bin\n"
        b"Content-Transfer-Encoding: x-uuencode\n\n" + "\n".join(lines).encode() + b"\n"
    )
    result = run(tmp_path, raw)
    assert len(contents(result)["u.bin"]) == len(UU_DATA) - 45
    assert any("no begin or no end" in w for w in result.warnings)
    assert any("1 uuencoded lines could not be decoded" in w for w in result.warnings)


def test_a_large_uuencoded_file_in_a_body_with_a_bad_line(tmp_path: Path) -> None:
    data = RNG.randbytes(100_000)
    lines = uuencode("large.bin", data).splitlines()
    lines.insert(5, "\x01 garbage")
    result = run(tmp_path, ("Subject: uu\n\n" + "\n".join(lines) + "\n").encode())
    assert sha(contents(result)["large.bin"]) == sha(data)
    assert any("1 lines could not be decoded" in w for w in result.warnings)


def test_prose_starting_with_begin_is_not_a_file(tmp_path: Path) -> None:
    raw = b"Subject: x\n\nbegin 644 is how it starts\nand then it is just text.\n"
    assert run(tmp_path, raw).files == ()


def test_a_uuencoded_file_without_end(tmp_path: Path) -> None:
    block = uuencode("cut.bin", UU_DATA).rsplit("`", 1)[0]
    result = run(tmp_path, b"Subject: x\n\n" + block.encode())
    assert contents(result) == {"cut.bin": UU_DATA}
    assert any("no 'end' line" in w for w in result.warnings)


def nested(depth: int, line_ending: bytes = b"\n") -> bytes:
    head = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (i, i) for i in range(depth)
    )
    tail = b"".join(b"--b%d--\n" % i for i in reversed(range(depth)))
    leaf = b"Content-Type: application/pdf; name=deep.pdf\nContent-Transfer-Encoding: base64\n\n"
    raw = head + leaf + binascii.b2a_base64(b"%PDF deep") + tail
    return raw.replace(b"\n", line_ending)


def test_nesting_deeper_than_the_old_limit_is_opened(tmp_path: Path) -> None:
    result = run(tmp_path, nested(40))
    assert contents(result) == {"deep.pdf": b"%PDF deep"}
    assert result.warnings == ()


@pytest.mark.parametrize("line_ending", [b"\n", b"\r\n"], ids=["LF", "CRLF"])
def test_nesting_beyond_the_limit_is_saved_unopened(tmp_path: Path, line_ending: bytes) -> None:
    depth = mime.MAX_DEPTH + 5
    raw = nested(depth, line_ending)
    result = run(tmp_path, raw)
    name = f"nested-part-{mime.MAX_DEPTH}.eml"
    (saved,) = contents(result).items()
    assert saved[0] == name
    # The unopened subtree, byte for byte from its header block on: a message of its own.
    start = raw.index(b"Content-Type: multipart/mixed; boundary=b%d" % mime.MAX_DEPTH)
    end = raw.index(b"--b%d--" % mime.MAX_DEPTH) + len(b"--b%d--" % mime.MAX_DEPTH)
    end = raw.index(line_ending + b"--b%d" % (mime.MAX_DEPTH - 1), end)
    assert saved[1] == raw[start:end]
    inner = email.message_from_bytes(saved[1], policy=email.policy.default)
    pdfs = [p for p in inner.walk() if p.get_filename() == "deep.pdf"]
    assert [p.get_payload(decode=True) for p in pdfs] == [b"%PDF deep"]
    assert result.warnings == (
        f"part {mime.MAX_DEPTH} (multipart/mixed): nested more than {mime.MAX_DEPTH} levels "
        f"deep; saved unopened as {name}, so the attachments inside it are not extracted "
        "on their own",
    )


def test_an_unopened_part_the_policy_excludes_is_reported(tmp_path: Path) -> None:
    result = run(tmp_path, nested(mime.MAX_DEPTH + 1), AttachmentPolicy(exclude=("*.eml",)))
    assert result.files == ()
    assert len(result.warnings) == 1
    assert "nested more than" in result.warnings[0]
    assert "not saved" in result.warnings[0]


def test_too_many_warnings_are_summarised(tmp_path: Path) -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\n\n"
        + b"--b\nContent-Type: multipart/mixed\n\n" * 200
    )
    result = run(tmp_path, raw)
    assert len(result.warnings) == mime.MAX_DEFECTS + 1
    assert result.warnings[-1] == "further problems with this message were not listed"


def test_an_oversized_header_block_is_cut(tmp_path: Path) -> None:
    junk = b"".join(b"X-Junk-%d: %s\n" % (i, b"j" * 200) for i in range(3000))  # 600 kB
    raw = b"Subject: big headers\n" + junk + b"Content-Type: application/pdf\n\n%PDF\n"
    result = run(tmp_path, raw)
    assert result.info.subject == "big headers"
    # The Content-Type came after the cut: the body reads as plain text.
    assert result.files == ()
    assert any("header block is too large" in w for w in result.warnings)


def test_a_header_block_the_stdlib_cannot_parse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(block: bytes) -> object:
        raise IndexError("parser bug")

    monkeypatch.setattr(mime, "_parse_block", explode)
    result = run(tmp_path, mixed_message())
    # Everything reads as one plain-text body, in which the uuencoded file is still found.
    assert [p.name for p in result.files] == ["old style.bin"]
    assert any("could not be parsed" in w for w in result.warnings)


def test_more_attachments_than_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fetchd.mime import attachments

    monkeypatch.setattr(attachments, "MAX_FILES", 2)
    result = run(tmp_path, policy_message())
    assert len(result.files) == 2
    assert result.warnings == (
        "2 more attachments not extracted: at most 2 files are kept per message",
    )


def test_a_very_long_line_is_kept_exactly(tmp_path: Path) -> None:
    line = RNG.randbytes(200_000).replace(b"\n", b"x").replace(b"\r", b"y")
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\n\n--b\n"
        b"Content-Type: application/octet-stream; name=long.bin\n"
        b"Content-Transfer-Encoding: binary\n\n"
        + line
        + b"\n--b\nContent-Type: application/octet-stream; name=one.b64\n"
        b"Content-Transfer-Encoding: base64\n\n"
        + binascii.b2a_base64(PDF, newline=False)
        + b"\n--b--\n"
    )
    files = contents(run(tmp_path, raw))
    assert files["long.bin"] == line
    assert sha(files["one.b64"]) == sha(PDF)


def test_a_long_quoted_printable_line_is_decoded(tmp_path: Path) -> None:
    body = ("caf=C3=A9 " * 20_000).encode()  # 200 kB without a line break
    raw = (
        b"Content-Type: text/plain; name=qp.txt\nContent-Transfer-Encoding: quoted-printable\n\n"
        + body
        + b"=\nend  \n"
    )
    # At the end of the file no delimiter claims the last line break: it is content.
    assert contents(run(tmp_path, raw)) == {"qp.txt": "café ".encode() * 20_000 + b"end\n"}


def test_an_mbox_from_line_is_skipped(tmp_path: Path) -> None:
    raw = b"From alice@example.org Thu Nov 26 14:02:00 2026\n" + mixed_message()
    result = run(tmp_path, raw)
    assert result.info.subject == "Invoice 42"
    assert len(result.files) == 4


def mutations() -> st.SearchStrategy[bytes]:
    """Valid messages, then truncated, with bytes flipped, or with lines shuffled in."""
    base = st.sampled_from([mixed_message(), related_message(), policy_message()])
    junk = st.sampled_from(
        [b"--", b"\n", b"\r\n", b"=", b"=?utf-8?b?", b"Content-Type: multipart/mixed\n", b"\x00"]
    )

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        raw = bytearray(draw(base)[:60_000])
        for _ in range(draw(st.integers(0, 6))):
            at = draw(st.integers(0, len(raw)))
            if draw(st.booleans()):
                raw[at:at] = draw(junk | st.binary(max_size=20))
            else:
                del raw[at : at + draw(st.integers(1, 200))]
        return bytes(raw[: draw(st.integers(0, len(raw)))])

    return mutate()


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=60)
@given(mutations())
def test_malformed_messages_never_raise(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        result = run(root, raw)
        for path in result.files:
            assert path.parent == result.folder
            assert path.is_file()
        assert all(isinstance(w, str) for w in result.warnings)


@settings(max_examples=60)
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        result = run(root, raw)  # no exception, whatever the bytes
        assert all(isinstance(w, str) for w in result.warnings)
        if result.folder is None:
            assert result.files == ()
        else:
            assert result.files
            assert all(path.parent == result.folder and path.is_file() for path in result.files)
        # Whatever came out, asking again gives the same and leaves no debris.
        assert run(root, raw) == result
        assert not list((root / "attachments").glob(".partial-*"))


# --- errors ---------------------------------------------------------------------------------------


def test_a_missing_message_file_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"nope\.eml"):
        extract(tmp_path / "nope.eml", tmp_path / "att", AttachmentPolicy())
    with pytest.raises(StorageError):
        read_info(tmp_path / "nope.eml")


def test_an_unusable_attachments_root_is_a_storage_error(tmp_path: Path) -> None:
    blocked = tmp_path / "attachments"
    blocked.write_text("a file where the folder should be")
    with pytest.raises(StorageError):
        extract(store(tmp_path, mixed_message()), blocked, AttachmentPolicy())


def test_a_storage_error_while_writing_is_passed_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fetchd.mime import names

    def refuse(directory: Path, name: str, *_access: object) -> tuple[Path, BinaryIO]:
        raise StorageError(f"cannot create {name}")

    monkeypatch.setattr(names, "create_exclusive", refuse)
    with pytest.raises(StorageError, match="cannot create"):
        run(tmp_path, mixed_message())


def test_a_write_error_removes_the_half_written_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fetchd.mime import names

    real = names.create_exclusive
    opened: list[Path] = []

    class Full:
        def __init__(self, fp: object) -> None:
            self._fp = fp

        def write(self, data: bytes) -> int:
            raise OSError(28, "No space left on device")

        def close(self) -> None:
            self._fp.close()  # type: ignore[attr-defined]

    def failing(directory: Path, name: str, access: Access) -> tuple[Path, Full]:
        path, fp = real(directory, name, access)
        opened.append(path)
        return path, Full(fp)

    monkeypatch.setattr(names, "create_exclusive", failing)
    with pytest.raises(StorageError, match="No space left"):
        run(tmp_path, mixed_message())
    assert opened
    assert not any(path.exists() for path in opened)


def test_a_write_error_inside_winmail_dat_removes_the_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fetchd.mime import tnef

    def failing(fp: object, item: object, out: BinaryIO, **_kwargs: object) -> int:
        out.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tnef, "copy_data", failing)
    stream = build_tnef([TnefEntry(title="a.pdf", data=b"a" * 100)])
    with pytest.raises(StorageError):
        run(tmp_path, tnef_message(stream))
    assert not list((tmp_path / "attachments").rglob("a*.pdf"))


# --- read_info ------------------------------------------------------------------------------------


def test_read_info_decodes_rfc2047(tmp_path: Path) -> None:
    raw = (
        b"From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <joerg@example.org>\n"
        b"Subject: =?iso-8859-1?q?R=E9sum=E9?=\n =?utf-8?b?IOKCrCAxMDA=?=\n"
        b"Date: Mon, 1 Jan 2024 09:30:00 -0500\nMessage-ID:\n <abc@example.org>\n\nbody\n"
    )
    info = read_info(store(tmp_path, raw))
    assert info.sender == "Jörg Müller"
    assert info.sender_address == "joerg@example.org"
    assert info.subject == "Résumé € 100"
    assert info.date == datetime(2024, 1, 1, 9, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert info.message_id == "<abc@example.org>"


def test_read_info_with_an_encoded_comma_in_the_name(tmp_path: Path) -> None:
    raw = b"From: =?utf-8?q?Smith=2C_John?= <john@example.org>\n\n"
    info = read_info(store(tmp_path, raw))
    assert (info.sender, info.sender_address) == ("Smith, John", "john@example.org")


def test_read_info_survives_an_address_parser_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(value: str) -> tuple[str, str]:
        raise IndexError("parser bug")

    monkeypatch.setattr(email.utils, "parseaddr", explode)
    # A comment: not one of the forms read without the stdlib's parser.
    info = read_info(store(tmp_path, b"From: a@example.org (A)\nSubject: s\n\n"))
    assert (info.sender, info.subject) == ("", "s")


def test_read_info_falls_back_to_the_address(tmp_path: Path) -> None:
    info = read_info(store(tmp_path, b"From: bob@example.org\nSubject: hi\n\n"))
    assert (info.sender, info.sender_address) == ("bob@example.org", "bob@example.org")


def test_read_info_on_a_message_without_headers(tmp_path: Path) -> None:
    info = read_info(store(tmp_path, b""))
    assert info.sender == info.sender_address == info.subject == ""
    assert info.date is None
    assert info.message_id is None


def test_read_info_reads_only_the_header_block(tmp_path: Path) -> None:
    raw = b"Subject: quick\n\n" + b"x" * 10_000_000
    eml = store(tmp_path, raw)
    tracemalloc.start()
    try:
        info = read_info(eml)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.subject == "quick"
    assert peak < 1_000_000


# --- bounded memory -------------------------------------------------------------------------------


def test_a_30_mb_attachment_is_extracted_in_bounded_memory(tmp_path: Path) -> None:
    eml = tmp_path / "big.eml"
    digest = hashlib.sha256()
    rng = random.Random(7)
    with eml.open("wb") as fp:
        fp.write(
            b"From: a@example.org\nSubject: big\nMIME-Version: 1.0\n"
            b'Content-Type: multipart/mixed; boundary="XX"\n\n--XX\n\nbig file\n--XX\n'
            b'Content-Type: application/octet-stream; name="big.bin"\n'
            b"Content-Transfer-Encoding: base64\n\n"
        )
        for _ in range(30 * 1024 * 1024 // (57 * 1024)):
            chunk = rng.randbytes(57 * 1024)
            digest.update(chunk)
            fp.writelines(binascii.b2a_base64(chunk[i : i + 57]) for i in range(0, len(chunk), 57))
        fp.write(b"--XX--\n")
    assert eml.stat().st_size > 40_000_000
    tracemalloc.start()
    try:
        result = extract(eml, tmp_path / "attachments", AttachmentPolicy())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024
    (big,) = result.files
    with big.open("rb") as fp:
        assert hashlib.file_digest(fp, "sha256").hexdigest() == digest.hexdigest()


# --- the walker and header decoding, directly -----------------------------------------------------


def fragments(raw: bytes, limit: int) -> Iterator[bytes]:
    """What ``readline(limit)`` would return for ``raw``."""
    for line in raw.splitlines(keepends=True):
        for start in range(0, len(line), limit):
            yield line[start : start + limit]


def walk_bytes(
    raw: bytes, limit: int = mime.LINE_LIMIT
) -> tuple[list[mime.Part], dict[int, bytes]]:
    walker = mime.MimeWalker()
    events: list[mime.Event] = []
    for fragment in fragments(raw, limit):
        events += walker.feed(fragment)
    events += walker.close()
    parts = [e.part for e in events if isinstance(e, mime.PartStart)]
    bodies: dict[int, bytes] = {}
    for event in events:
        if isinstance(event, mime.Body):
            bodies[event.part_id] = bodies.get(event.part_id, b"") + event.data
    starts = [e.part.id for e in events if isinstance(e, mime.PartStart)]
    ends = [e.part_id for e in events if isinstance(e, mime.PartEnd)]
    assert sorted(starts) == sorted(ends)  # every part that starts also ends
    return parts, bodies


@pytest.mark.parametrize("limit", [80, 81, 997, 4096])
def test_the_walker_gives_the_same_result_for_any_fragment_size(limit: int) -> None:
    raw = mixed_message().replace(b"\n", b"\r\n")
    assert walk_bytes(raw, limit) == walk_bytes(raw)


def test_the_walker_reports_structure() -> None:
    parts, _ = walk_bytes(related_message())
    shape = [(p.kind, p.content_type, p.parents, p.index) for p in parts]
    assert shape == [
        ("multipart", "multipart/mixed", (), 0),
        ("multipart", "multipart/alternative", ("multipart/mixed",), 0),
        ("leaf", "text/plain", ("multipart/mixed", "multipart/alternative"), 0),
        ("multipart", "multipart/related", ("multipart/mixed", "multipart/alternative"), 1),
        ("leaf", "text/html", ("multipart/mixed", "multipart/alternative", "multipart/related"), 0),
        ("leaf", "image/png", ("multipart/mixed", "multipart/alternative", "multipart/related"), 1),
        ("leaf", "application/pdf", ("multipart/mixed",), 1),
    ]
    assert parts[5].content_id == "<logo@x>"
    assert [p.parent_id for p in parts] == [None, 0, 1, 1, 3, 3, 0]


def test_parent_ids_name_the_enclosing_message_and_text() -> None:
    outer = new_message("Fwd")
    outer.set_content("see below\n" + uuencode("a.bin", b"abc"))
    outer.add_attachment(inner_message())
    parts, _ = walk_bytes(outer.as_bytes())
    by_type = {(p.kind, p.content_type): p for p in parts}
    message = by_type[("message", "message/rfc822")]
    enclosed = [p for p in parts if p.parent_id == message.id]
    assert len(enclosed) == 1  # a message/rfc822 part holds exactly one entity
    assert enclosed[0].headers is not None
    assert enclosed[0].headers["Subject"] == inner_message()["Subject"]
    uu = by_type[("uuencode", "application/octet-stream")]
    text = next(p for p in parts if p.content_type == "text/plain")
    assert uu.parent_id == text.id


class FakeWalker:
    """The ``frames.Walker`` protocol and nothing else: frames need no MimeWalker."""

    def __init__(self) -> None:

        self.events: list[mime.Event] = []
        self.stack: list[frames.Frame] = []
        self.ids = 0
        self.at_eof = False

    def emit(self, event: mime.Event) -> None:
        self.events.append(event)

    def defect(self, message: str) -> None:
        self.events.append(mime.Defect(message))

    def new_id(self) -> int:
        self.ids += 1
        return self.ids

    def push(self, frame: frames.Frame) -> None:
        self.stack.append(frame)

    def top(self) -> frames.Frame:
        return self.stack[-1]

    def headers_done(self, head: frames.HeaderFrame) -> None:
        self.stack.remove(head)

    def open_entity(self, head: frames.HeaderFrame) -> None:
        self.stack.remove(head)

    def untap(self, tap: frames.MessageFrame) -> None:
        pass


def test_frames_run_against_any_walker_protocol() -> None:
    from fetchd.mime.decoders import decoder_for

    fake = FakeWalker()
    walker: frames.Walker = fake  # mypy checks that the fake is enough
    text = mime.Part(7, "leaf", "text/plain", parent_id=3)
    leaf = frames.LeafFrame(text, decoder_for("7bit", fake.defect), frames.UUScanner(text))
    for line in (b"hi", b"begin 644 x.bin", b"#86)C", b"`", b"end"):
        leaf.line(walker, line, b"\n", False)
    leaf.close(walker)
    starts = [e.part for e in fake.events if isinstance(e, mime.PartStart)]
    assert [(p.id, p.kind, p.filename, p.parent_id) for p in starts] == [
        (1, "uuencode", "x.bin", 7)
    ]
    bodies = {e.part_id: e.data for e in fake.events if isinstance(e, mime.Body)}
    assert bodies == {1: b"abc", 7: b"hi\nbegin 644 x.bin\n#86)C\n`\nend"}


def test_the_frames_do_not_import_the_walker() -> None:
    import ast

    tree = ast.parse(Path(frames.__file__).read_text())
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert "fetchd.mime.walker" not in imported
    assert "MimeWalker" not in Path(frames.__file__).read_text()


def test_the_line_break_before_a_boundary_belongs_to_the_boundary() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\nline one\nline two\n\n--b--\n"
    _, bodies = walk_bytes(raw)
    assert bodies[1] == b"line one\nline two\n"


def test_boundaries_with_transport_padding_and_lookalikes() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\n\n--b   \n\n"
        b"--bb is not a boundary\n--b-- neither\n--b \t\n\nsecond\n--b--  \n"
    )
    parts, bodies = walk_bytes(raw)
    assert [p.index for p in parts[1:]] == [0, 1]
    assert bodies[1] == b"--bb is not a boundary\n--b-- neither"
    assert bodies[2] == b"second"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain text", "plain text"),
        ("=?utf-8?q?a?= =?utf-8?q?b?=", "ab"),
        ("=?utf-8?q?a?=  x  =?utf-8?q?b?=", "a  x  b"),
        ("=?UTF-8*en?Q?English?=", "English"),
        ("=?utf-8?q?with space?=", "with space"),
        ("=?utf-8?b?w6k?=", "é"),  # padding missing
        ("=?utf-8?b?!?=", "=?utf-8?b?!?="),  # cannot decode: kept as written
        ("=?utf-8?b?w6k!?=", "=?utf-8?b?w6k!?="),  # junk hides a padding error
        ("=?iso-2022-jp?b?GyRCRnxLXDhsGyhC?=", "日本語"),
        ("pre =?utf-8?q?=E2=82=AC?= post", "pre € post"),
    ],
)
def test_decode_words(text: str, expected: str) -> None:
    assert mime.decode_words(text, []) == expected


def test_decode_bytes_fallbacks_are_reported() -> None:
    defects: list[str] = []
    assert mime.decode_bytes(b"\xfc", "utf-8", defects, what="x") == "ü"
    assert mime.decode_bytes("ü".encode(), "ascii", defects, what="x") == "ü"
    assert mime.decode_bytes(b"ok", "utf-8", defects, what="x") == "ok"
    assert mime.decode_bytes("ü".encode(), None, defects, what="x") == "ü"
    assert len(defects) == 2
