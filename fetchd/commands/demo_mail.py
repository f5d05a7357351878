"""The sample mailbox of ``fetchd demo``: a dozen messages that show what fetchd does.

Each message shows one thing people meet in real mail: a PDF invoice, file
names in German, Russian and Japanese (RFC 2231 parameters), an HTML mail
whose logo is shown inline and so not extracted, a forwarded message with a
file of its own, a quoted-printable text file, two files of the same name, a
name that tries to leave its folder or to disguise an ``.exe``, a uuencoded
file in a plain-text body, and a message whose MIME structure is cut short.

The messages are deterministic (fixed dates, Message-IDs and MIME boundaries;
the files are generated, not random), so a second run finds exactly the same
mailbox and tests can compare stored bytes with these. Every address uses the
reserved ``example`` names (RFC 2606).
"""

from __future__ import annotations

import binascii
import struct
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

__all__ = ["RECIPIENT", "Sample", "SampleFile", "samples"]

RECIPIENT = Address("Demo User", addr_spec="you@example.net")


@dataclass(frozen=True)
class SampleFile:
    """A file inside a sample message: the name its sender gave it, and its bytes."""

    name: str
    content: bytes


@dataclass(frozen=True)
class Sample:
    """One message of the demo mailbox, as the server holds it (CRLF line endings)."""

    uid: str
    subject: str
    raw: bytes
    #: The files fetchd extracts with the default attachment policy.
    files: tuple[SampleFile, ...] = ()
    #: Parts shown inside the message text; extracted only with ``inline = true``.
    inline: tuple[SampleFile, ...] = ()


def samples() -> tuple[Sample, ...]:
    """The demo mailbox, oldest message first."""
    return (
        _plain_text(),
        _invoice(),
        _german_offer(),
        _russian_report(),
        _japanese_quote(),
        _html_newsletter(),
        _forwarded(),
        _quoted_printable(),
        _same_names(),
        _dangerous_names(),
        _uuencoded(),
        _cut_short(),
    )


# --- the messages ---------------------------------------------------------------------------


def _plain_text() -> Sample:
    msg = _message(
        1,
        Address("Alice Smith", addr_spec="alice@example.com"),
        "Lunch on Thursday?",
        (10, 5, 12, 31, 2),
    )
    msg.set_content(
        "Hi,\n\nare you free for lunch on Thursday? The new place by the station\n"
        "opens at noon. No attachment here: fetchd stores this message as an\n"
        ".eml file and makes no folder for it.\n\nAlice\n"
    )
    return _sample(1, msg)


def _invoice() -> Sample:
    msg = _message(
        2,
        Address("Northwind Billing", addr_spec="billing@northwind.example"),
        "Invoice 2026-1142",
        (10, 19, 8, 0, 0),
    )
    msg.set_content("Dear customer,\n\nplease find invoice 2026-1142 attached.\n\nNorthwind\n")
    pdf = SampleFile(
        "invoice-2026-1142.pdf",
        _pdf("Northwind Ltd.", "Invoice 2026-1142", "Amount due: EUR 1,240.00"),
    )
    return _sample(2, msg, _attach(msg, pdf))


def _german_offer() -> Sample:
    msg = _message(
        3,
        Address("Jürgen Weiß", addr_spec="j.weiss@beispiel.example"),
        "Angebot für Müller",
        (10, 27, 16, 45, 1),
    )
    msg.set_content("Guten Tag,\n\nanbei unser Angebot.\n\nMit freundlichen Grüßen\nJürgen Weiß\n")
    offer = SampleFile("Angebot für Müller.pdf", _pdf("Angebot Nr. 77", "Summe: EUR 980,00"))
    return _sample(3, msg, _attach(msg, offer))


# Russian on purpose: the sample shows Cyrillic text and names surviving intact.
_RUSSIAN_BODY = "Добрый день!\n\nОтчёт во вложении.\n\nОльга\n"  # noqa: RUF001
_RUSSIAN_CSV = "месяц;выручка\nавгуст;1200\nсентябрь;1350\nоктябрь;1410\n"  # noqa: RUF001


def _russian_report() -> Sample:
    msg = _message(
        4,
        Address("Ольга Петрова", addr_spec="olga@primer.example"),
        "Отчёт за октябрь",
        (11, 3, 9, 20, 3),
    )
    msg.set_content(_RUSSIAN_BODY)
    report = SampleFile("отчёт.csv", _RUSSIAN_CSV.encode())
    return _sample(4, msg, _attach(msg, report))


def _japanese_quote() -> Sample:
    msg = _message(
        5,
        Address("田中 一郎", addr_spec="tanaka@rei.example"),
        "見積書の送付について",
        (11, 10, 10, 5, 9),
    )
    msg.set_content("いつもお世話になっております。\n見積書を添付いたします。\n\n田中\n")
    quote = SampleFile("見積書.pdf", _pdf("Quotation Q-2026-088", "Total: JPY 154,000"))
    return _sample(5, msg, _attach(msg, quote))


def _html_newsletter() -> Sample:
    msg = _message(
        6,
        Address("Contoso News", addr_spec="news@contoso.example"),
        "November news from Contoso",
        (11, 14, 7, 30, 0),
    )
    msg.set_content("Our November news. Read this mail as HTML to see our logo.\n")
    msg.add_alternative(
        '<html><body><img src="cid:logo.demo@contoso.example" alt="Contoso">'
        "<p>Our November news.</p></body></html>\n",
        subtype="html",
    )
    logo = SampleFile("logo.png", _png((0, 90, 160)))
    html = msg.get_body(("html",))
    assert html is not None
    # RFC 2387: the image the HTML refers to by cid: sits beside it in multipart/related.
    html.add_related(
        logo.content,
        "image",
        "png",
        cid="<logo.demo@contoso.example>",
        disposition="inline",
        filename=logo.name,
    )
    return Sample("demo-06", str(msg["Subject"]), _serialize(msg, 6), inline=(logo,))


def _forwarded() -> Sample:
    inner = _message(
        70,
        Address("Swiss Air Lines", addr_spec="checkin@airline.example"),
        "Boarding pass LX 2086 Zurich-Lisbon",
        (11, 17, 18, 2, 1),
    )
    inner.set_content("Your boarding pass is attached. Have a good flight.\n")
    boarding = SampleFile("boarding-pass.pdf", _pdf("LX 2086 ZRH-LIS", "Seat 14A, Gate B32"))
    _attach(inner, boarding)
    msg = _message(
        7,
        Address("Bob Jones", addr_spec="bob@example.org"),
        "Fwd: Boarding pass",
        (11, 18, 9, 12, 0),
    )
    msg.set_content("Forwarding my boarding pass, as promised.\n\nBob\n")
    msg.add_attachment(inner)
    # Unnamed, the forwarded message is saved under its own subject (see the extractor).
    whole = SampleFile(f"{inner['Subject']}.eml", _serialize(inner, 70).replace(b"\r\n", b"\n"))
    return _sample(7, msg, (whole, boarding))


def _quoted_printable() -> Sample:
    msg = _message(
        8,
        Address("Chloé Martin", addr_spec="chloe@exemple.example"),
        "Notes from the Zürich workshop",
        (11, 21, 15, 40, 1),
    )
    msg.set_content("Hello,\n\nmy notes are attached as a text file.\n\nChloé\n")
    text = (
        "Workshop in Zürich, 20 November 2026\n"
        "- café at 10:00, déjà vu of last year's agenda\n"
        "- next meeting: Malmö, February\n"
    )
    notes = SampleFile("notes.txt", text.encode())
    msg.add_attachment(text, subtype="plain", cte="quoted-printable", filename=notes.name)
    return _sample(8, msg, (notes,))


def _same_names() -> Sample:
    msg = _message(
        9,
        Address("Dana Lee", addr_spec="dana@example.com"),
        "Photos from the offsite",
        (11, 26, 14, 2, -5),
    )
    msg.set_content("Two photos (both called photo.png, sorry) and the agenda.\n")
    files = (
        SampleFile("photo.png", _png((30, 140, 60))),
        SampleFile("photo.png", _png((40, 70, 200))),
        SampleFile("agenda.pdf", _pdf("Offsite agenda", "09:00 Welcome", "12:30 Lunch")),
    )
    return _sample(9, msg, _attach(msg, *files))


def _dangerous_names() -> Sample:
    msg = _message(
        10,
        Address("Unknown Sender", addr_spec="no-reply@suspicious.example"),
        "Your invoice is overdue",
        (12, 1, 3, 17, 0),
    )
    msg.set_content("Open the attachment now.\n")
    files = (
        # U+202E (right-to-left override) shows this on screen as "invoiceexe.pdf".
        SampleFile("invoice\u202efdp.exe", b"MZ\x90\x00fetchd demo sample, not a program\r\n"),
        SampleFile("../../etc/passwd", b"this file tried to leave its folder\n"),
    )
    return _sample(10, msg, _attach(msg, *files))


def _uuencoded() -> Sample:
    msg = _message(
        11,
        Address("Old Timer", addr_spec="oldtimer@example.org"),
        "Budget 2027 (uuencoded)",
        (12, 8, 11, 0, 0),
    )
    budget = SampleFile("budget-2027.csv", b"item,amount\nservers,12000\ntravel,4500\ncoffee,800\n")
    msg.set_content(
        "Hi,\n\nmy mail program still sends files the old way, in the text:\n\n"
        + _uuencode(budget)
        + "\nRegards\n"
    )
    return _sample(11, msg, (budget,))


def _cut_short() -> Sample:
    msg = _message(
        12,
        Address("Erin Walsh", addr_spec="erin@example.com"),
        "Meeting minutes (cut short)",
        (12, 14, 17, 55, 0),
    )
    msg.set_content("The minutes are attached. This message lost its closing boundary.\n")
    minutes = SampleFile("minutes.txt", b"Minutes of 14 December 2026\n1. Budget approved.\n")
    _attach(msg, minutes)
    raw = _serialize(msg, 12)
    closing = b"--" + msg.get_boundary("").encode() + b"--\r\n"
    assert raw.endswith(closing)
    # A malformed message is still stored as it came; its file is recovered.
    return Sample("demo-12", str(msg["Subject"]), raw[: -len(closing)], files=(minutes,))


# --- building blocks ------------------------------------------------------------------------


def _message(
    number: int, sender: Address, subject: str, when: tuple[int, int, int, int, int]
) -> EmailMessage:
    """Headers of a sample message; ``when`` is month, day, hour, minute, UTC offset."""
    month, day, hour, minute, offset = when
    date = datetime(2026, month, day, hour, minute, tzinfo=timezone(timedelta(hours=offset)))
    msg = EmailMessage(policy=SMTP)
    msg["From"] = sender
    msg["To"] = RECIPIENT
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = f"<demo-{number:02d}.{date:%Y%m%d}@fetchd.example>"
    return msg


def _attach(msg: EmailMessage, *files: SampleFile) -> tuple[SampleFile, ...]:
    """Attach ``files`` as base64; the email package writes non-ASCII names per RFC 2231."""
    for file in files:
        maintype, subtype = _content_type(file.name).split("/")
        msg.add_attachment(file.content, maintype=maintype, subtype=subtype, filename=file.name)
    return files


def _content_type(name: str) -> str:
    types = {".pdf": "application/pdf", ".png": "image/png", ".csv": "text/csv"}
    return types.get(name[name.rfind(".") :], "application/octet-stream")


def _sample(number: int, msg: EmailMessage, files: tuple[SampleFile, ...] = ()) -> Sample:
    return Sample(f"demo-{number:02d}", str(msg["Subject"]), _serialize(msg, number), files)


def _serialize(msg: EmailMessage, number: int) -> bytes:
    """The message with CRLF endings and fixed boundaries (the email package picks random ones)."""
    for index, part in enumerate(msg.walk()):
        # A forwarded message keeps the boundaries it was given when it was serialized.
        if part.get_content_maintype() == "multipart" and part.get_boundary() is None:
            part.set_boundary(f"=_fetchd-demo-{number:02d}-{index}")
    return msg.as_bytes(policy=SMTP)


def _uuencode(file: SampleFile) -> str:
    """A ``begin 644 name`` ... ``end`` block, 45 bytes a line, as uuencode(1) writes it."""
    lines = [f"begin 644 {file.name}\n"]
    for start in range(0, len(file.content), 45):
        chunk = file.content[start : start + 45]
        lines.append(binascii.b2a_uu(chunk, backtick=True).decode("ascii"))
    lines.append("`\nend\n")
    return "".join(lines)


def _pdf(*lines: str) -> bytes:
    """A small one-page PDF showing ``lines`` (ASCII) that any viewer opens."""
    escaped = (line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") for line in lines)
    text = "BT /F1 16 Tf 72 780 Td 24 TL " + " ".join(f"({line}) '" for line in escaped) + " ET"
    objects = (
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        "/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        f"<< /Length {len(text)} >>\nstream\n{text}\nendstream",
    )
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("ascii")
    xref = len(out)
    # The cross-reference table: one 20-byte entry per object (PDF 1.4, section 3.4.3).
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode("ascii")
    out += "".join(f"{offset:010d} 00000 n \n" for offset in offsets).encode("ascii")
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\n".encode("ascii")
    out += f"startxref\n{xref}\n%%EOF\n".encode("ascii")
    return bytes(out)


def _png(rgb: tuple[int, int, int], size: int = 24) -> bytes:
    """A square PNG of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(b"\x00" + bytes(rgb) * size for _ in range(size))  # filter 0 per row
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )
