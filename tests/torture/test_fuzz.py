"""Fuzzing in bounded time: the protocol core, the listing parsers, the MIME extraction.

Wider than the property tests beside the modules (tests/pop3/test_core.py,
tests/mime/): command sequences in every session state, replies that almost
look right, input split at arbitrary points, and mutated real messages under
every attachment policy.
"""

from __future__ import annotations

import base64
import binascii
import tempfile
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fetchd.errors import NetworkError, ProtocolError, StorageError, UsageError
from fetchd.mime.attachments import AttachmentPolicy, ExtractResult, extract
from fetchd.pop3.commands import Command
from fetchd.pop3.core import MAX_STATUS_LINE, Connection
from fetchd.pop3.events import NEED_DATA, Continuation, Data
from fetchd.pop3.replies import (
    Capabilities,
    parse_capa,
    parse_scan_listing,
    parse_uidl_listing,
    split_lines,
)
from fetchd.pop3.states import State
from tests.messages import make_message, make_raw_message
from tests.strategies import nasty_names

# -- (a) the POP3 core -----------------------------------------------------------------

#: Pieces of replies that are almost right: status words, dot lines, line-ending mixes,
#: response codes, SASL challenges, listing lines and a line past the status cap.
NEAR_MISSES = (
    b"+OK",
    b"+OK ",
    b"+ok",
    b"+OKAY",
    b"-ERR",
    b"-ERR ",
    b"-ERRor",
    b"+ ",
    b"+",
    b"*",
    b".",
    b"..",
    b".\r\n",
    b"\r\n.\r\n",
    b"\n.\n",
    b"\r\n",
    b"\n",
    b"\r",
    b"\r\r\n",
    b" ",
    b"[IN-USE]",
    b"[SYS/TEMP] ",
    b"[",
    b"]",
    b"1 ",
    b"2 uid-2",
    b"0 0",
    b"-1 5",
    b"SASL PLAIN",
    b"\x00",
    b"\xff\xfe",
    b"x" * (MAX_STATUS_LINE - 3),
    b"y" * (MAX_STATUS_LINE + 5),
)

near_miss_wire = st.lists(
    st.one_of(st.sampled_from(NEAR_MISSES), st.binary(max_size=12)), max_size=30
).map(b"".join)
wire_bytes = st.one_of(st.binary(max_size=300), near_miss_wire)

TRANSACTION_COMMANDS = (
    Command.retr(1),
    Command.top(2, 0),
    Command.uidl(),
    Command.uidl(3),
    Command.list(),
    Command.list(1),
    Command.stat(),
    Command("CAPA"),
    Command.dele(1),
    Command("NOOP"),
    Command("RSET"),
    Command.last(),
)


def drain(conn: Connection, trace: list[object]) -> None:
    while (event := conn.next_event()) is not NEED_DATA:
        trace.append(event)


def setup(scenario: str, commands: list[Command]) -> Connection:
    """A connection in the scenario's state with ``commands`` sent and unanswered."""
    conn = Connection()
    trace: list[object] = []
    if scenario == "greeting":
        return conn
    conn.receive_data(b"+OK ready <1.2@host>\r\n")
    drain(conn, trace)
    if scenario == "authorization":
        conn.send(Command("CAPA"))
        return conn
    if scenario == "sasl":
        conn.send(Command("AUTH", ("PLAIN",)))
        return conn
    conn.send(Command("USER", ("alice",)))
    conn.receive_data(b"+OK\r\n")
    drain(conn, trace)
    conn.send(Command("PASS", ("secret",)))
    conn.receive_data(b"+OK\r\n")
    drain(conn, trace)
    assert conn.state is State.TRANSACTION
    # QUIT may not be pipelined behind other commands (RFC 2449 section 6.6).
    for command in [Command("QUIT")] if scenario == "quit" else commands:
        conn.send(command)
    return conn


def normalized(trace: list[object]) -> list[object]:
    """Adjacent Data chunks merged: how a body is cut into chunks depends on the reads."""
    merged: list[object] = []
    for item in trace:
        if isinstance(item, Data) and merged and isinstance(merged[-1], Data):
            merged[-1] = Data(merged[-1].data + item.data)
        else:
            merged.append(item)
    return merged


def run_wire(conn: Connection, pieces: list[bytes], close: bool) -> list[object]:
    """Feed ``pieces``, then maybe the close; the events, and the error type if one came."""
    trace: list[object] = []
    try:
        for piece in filter(None, pieces):
            conn.receive_data(piece)
            drain(conn, trace)
        if close:
            conn.receive_data(b"")
            drain(conn, trace)
    except (ProtocolError, NetworkError) as exc:
        trace.append(type(exc))
        assert conn.state is State.ERROR
        with pytest.raises(ProtocolError):  # the error state is sticky
            conn.next_event()
        with pytest.raises(ProtocolError):
            conn.check_synchronized()
        with pytest.raises(UsageError):
            conn.send(Command("NOOP"))
    return normalized(trace)


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


SCENARIOS = ("greeting", "authorization", "sasl", "transaction", "quit")


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(
    scenario=st.sampled_from(SCENARIOS),
    commands=st.lists(st.sampled_from(TRANSACTION_COMMANDS), min_size=1, max_size=5),
    wire=wire_bytes,
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8),
    close=st.booleans(),
)
@example(  # a status line past the cap is refused whether or not it arrives whole
    scenario="transaction",
    commands=[Command.stat()],
    wire=b"+OK " + b"y" * (MAX_STATUS_LINE + 5) + b"\r\n",
    cuts=[100],
    close=False,
)
def test_the_core_raises_only_peer_errors_and_ignores_how_input_is_split(
    scenario: str, commands: list[Command], wire: bytes, cuts: list[int], close: bool
) -> None:
    whole = run_wire(setup(scenario, commands), [wire], close)
    split = run_wire(setup(scenario, commands), split_at(wire, cuts), close)
    octets = [wire[i : i + 1] for i in range(len(wire))]
    one_by_one = run_wire(setup(scenario, commands), octets, close)
    assert split == whole
    assert one_by_one == whole
    for item in whole:
        if isinstance(item, Continuation):
            assert scenario == "sasl"


@settings(max_examples=800)
@given(
    bodies=st.lists(st.binary(max_size=200), min_size=1, max_size=4),
    tail=wire_bytes,
    cuts=st.lists(st.integers(min_value=0, max_value=5_000), max_size=10),
)
def test_pipelined_bodies_then_noise_keep_their_bytes_at_any_split(
    bodies: list[bytes], tail: bytes, cuts: list[int]
) -> None:
    """Several RETR replies in one stream, then anything: each body comes out exact."""
    commands = [Command.retr(i + 1) for i in range(len(bodies))]
    wire = b"".join(b"+OK\r\n" + stuffed(body) for body in bodies) + tail
    whole = run_wire(setup("transaction", commands), [wire], False)
    split = run_wire(setup("transaction", commands), split_at(wire, cuts), False)
    assert split == whole
    got = [item.data for item in whole if isinstance(item, Data)]
    expected = [canonical(body) for body in bodies if canonical(body)]
    assert got[: len(expected)] == expected


def canonical(body: bytes) -> bytes:
    """The body as the client sees it: every line ended by CRLF, bare CRs kept."""
    lines = body.replace(b"\r\n", b"\n").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return b"".join(line + b"\r\n" for line in lines)


def stuffed(body: bytes) -> bytes:
    lines = canonical(body).split(b"\r\n")[:-1]
    dotted = (b"." + line if line.startswith(b".") else line for line in lines)
    return b"".join(line + b"\r\n" for line in dotted) + b".\r\n"


# -- (b) the listing parsers -------------------------------------------------------------

listing_bytes = st.one_of(
    st.binary(max_size=400),
    st.lists(st.one_of(st.sampled_from(NEAR_MISSES[:-2]), st.binary(max_size=10)), max_size=40).map(
        b"".join
    ),
)


def expected_uids(body: bytes) -> dict[int, bytes]:
    """Message number -> the UID's octets as written on its line."""
    found = {}
    for line in split_lines(body):
        words = [word for word in line.split(b" ") if word]
        found[int(words[0])] = words[1]
    return found


@settings(max_examples=1200)
@given(listing_bytes)
def test_uidl_listing_raises_only_protocol_error_and_keeps_uid_octets(body: bytes) -> None:
    try:
        table = parse_uidl_listing(body, [])
    except ProtocolError:
        return
    assert table.keys() == expected_uids(body).keys()
    for number, uid in table.items():
        assert uid.encode("utf-8", "surrogateescape") == expected_uids(body)[number]


uid_octets = st.binary(min_size=1, max_size=80).filter(
    lambda uid: b" " not in uid and b"\n" not in uid and not uid.endswith(b"\r")
)


@settings(max_examples=800)
@given(
    uids=st.lists(uid_octets, min_size=1, max_size=12),
    spaces=st.lists(st.sampled_from([b" ", b"  ", b"   "]), min_size=1),
    crlf=st.sampled_from([b"\r\n", b"\n"]),
)
def test_every_uid_octet_string_round_trips(
    uids: list[bytes], spaces: list[bytes], crlf: bytes
) -> None:
    lines = [b"%d%s%s" % (i + 1, spaces[i % len(spaces)], uid) + crlf for i, uid in enumerate(uids)]
    table = parse_uidl_listing(b"".join(lines), [])
    assert [table[i + 1].encode("utf-8", "surrogateescape") for i in range(len(uids))] == uids


@settings(max_examples=1200)
@given(listing_bytes)
@example(b"1_0 5\r\n")  # int() reads "1_0" as 10
@example(b"+2 7\r\n")
@example("1 \u0661\u0662\r\n".encode())
def test_scan_listing_raises_only_protocol_error(body: bytes) -> None:
    try:
        table = parse_scan_listing(body, [])
    except ProtocolError:
        return
    assert len(table) == len(split_lines(body))
    for line in split_lines(body):
        number, size = [word for word in line.split(b" ") if word][:2]
        # Only plain ASCII digits are numbers: no sign, no "_", no other scripts' digits.
        assert number.isdigit(), line
        assert size.isdigit(), line
        assert table[int(number)] == int(size)


capa_lines = st.lists(
    st.tuples(
        st.sampled_from(["SASL", "LOGIN-DELAY", "EXPIRE", "TOP", "UIDL", "PIPELINING", "X"]),
        st.lists(st.text(st.characters(codec="utf-8"), min_size=1, max_size=8), max_size=3),
    ),
    max_size=8,
).map(lambda items: "".join(" ".join((n, *a)) + "\r\n" for n, a in items).encode())


@settings(max_examples=1200)
@given(st.one_of(listing_bytes, capa_lines))
@example("LOGIN-DELAY \u00b2\r\nEXPIRE \u00b3\r\n".encode())  # digits to str.isdigit, not to int
@example("LOGIN-DELAY \u0661\u0662\r\n".encode())  # Arabic-Indic digits: not a number either
def test_capa_raises_nothing_and_its_properties_are_safe(body: bytes) -> None:
    capabilities = parse_capa(body)
    assert isinstance(capabilities, Capabilities)
    assert all(isinstance(mechanism, str) for mechanism in capabilities.sasl)
    for value in (capabilities.login_delay, capabilities.expire_days):
        assert value is None or (isinstance(value, int) and value >= 0)
    announced = capabilities.args("LOGIN-DELAY")
    if announced and not (announced[0].isascii() and announced[0].isdigit()):
        assert capabilities.login_delay is None


# -- (c) MIME walking and attachment extraction -------------------------------------------

RAW_TEXT = b"Hello.\r\n.\r\n..dots\r\nbegin 644 ../../../etc/evil\r\nM86)C\r\n`\r\nend\r\n"


def _nested() -> bytes:
    inner = EmailMessage()
    inner["Subject"] = "inner"
    inner.set_content("inner body")
    inner.add_attachment(b"inner-data", maintype="application", subtype="zip", filename="in.zip")
    outer = EmailMessage()
    outer["From"] = "a@example.org"
    outer["Subject"] = "Fwd: inner"
    outer.set_content("see forwarded")
    outer.add_attachment(inner, filename="../forwarded.eml")
    related = EmailMessage()
    related.set_content("text")
    related.add_alternative('<img src="cid:x@y">', subtype="html")
    related.add_attachment(b"\x89PNG", maintype="image", subtype="png", cid="<x@y>")
    outer.attach(related)
    return outer.as_bytes()


def _uuencoded() -> bytes:
    lines = ["begin 600 ../../outside.txt"]
    data = b"uuencoded content " * 20
    lines += [binascii.b2a_uu(data[i : i + 45]).decode().rstrip("\n") for i in range(0, 360, 45)]
    return make_raw_message("uu", ("\r\n".join([*lines, "`", "end"]) + "\r\n").encode())


BASES = (
    make_message(
        "with files",
        attachments=[
            ("report.pdf", b"%PDF-1.4 " * 50, "application/pdf"),
            ("../../escape.txt", b"text", "text/plain"),
            ("/abs/path.bin", bytes(range(256)), "application/octet-stream"),
            ("CON", b"device", "application/octet-stream"),
        ],
    ),
    make_message("plain text only", "just words\n" * 10),
    make_raw_message("raw", RAW_TEXT),
    make_raw_message("lf only", RAW_TEXT.replace(b"\r\n", b"\n"), line_ending=b"\n"),
    _nested(),
    _uuencoded(),
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
    + b"--b\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" * 40
    + b"--b--\r\n",
)

JUNK = (
    b"--",
    b"\r\n",
    b"\n",
    b"\r",
    b"=",
    b"=?utf-8?b?Li4vLi4v?=",
    b'Content-Type: multipart/mixed; boundary="',
    b"Content-Type: message/rfc822\r\n\r\n",
    b"Content-Disposition: attachment; filename*=UTF-8''..%2F..%2Fx\r\n",
    b"Content-Transfer-Encoding: base64\r\n\r\n",
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n=\r\n",
    b"begin 644 ../x\r\n",
    b"end\r\n",
    b"\x00",
    b"\xff\xfe",
    base64.b64encode(b"\xff" * 30),
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real message with pieces inserted, deleted, duplicated, or its line endings changed."""
    raw = bytearray(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(raw)))
        action = draw(st.sampled_from(["insert", "delete", "duplicate", "name"]))
        if action == "insert":
            raw[at:at] = draw(st.sampled_from(JUNK) | st.binary(max_size=24))
        elif action == "delete":
            del raw[at : at + draw(st.integers(1, 300))]
        elif action == "duplicate":
            raw[at:at] = raw[at : at + draw(st.integers(1, 400))]
        else:
            name = draw(nasty_names()).encode("utf-8", "surrogatepass")
            raw[at:at] = b'Content-Disposition: attachment; filename="' + name + b'"\r\n'
    if draw(st.booleans()):
        raw = bytearray(bytes(raw).replace(b"\r\n", b"\n"))
    if draw(st.integers(0, 3)) == 0:  # sometimes cut short, as by a dropped download
        raw = raw[: draw(st.integers(0, len(raw)))]
    return bytes(raw)


policies = st.just(AttachmentPolicy()) | st.builds(
    AttachmentPolicy,
    inline=st.sampled_from(["named", "all", "none"]),
    include=st.sampled_from([(), (), ("*.pdf",), ("image/*", "*.txt")]),
    exclude=st.sampled_from([(), (), ("*.bin",), ("application/*",)]),
    max_size=st.sampled_from([None, None, 0, 10, 1000]),
)


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its content (None for directories)."""
    return {
        str(path.relative_to(root)): None if path.is_dir() else path.read_bytes()
        for path in sorted(root.rglob("*"))
    }


def check_extraction(raw: bytes, policy: AttachmentPolicy) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        eml = base / "Maildir" / "new" / "message-1.eml"
        eml.parent.mkdir(parents=True)
        eml.write_bytes(raw)
        root = base / "attachments"
        before = tree(base)
        try:
            first = extract(eml, root, policy)
        except StorageError as exc:  # a healthy disk: there is no reason for one
            raise AssertionError(f"StorageError on a healthy disk: {exc}") from exc
        assert_inside(first, root)
        after = {k: v for k, v in tree(base).items() if not k.startswith("attachments")}
        assert after == before  # nothing written beside the attachments root
        assert not [p for p in base.rglob("*") if p.name.startswith(".partial-")]
        second = extract(eml, root, policy)
        assert second == first
        assert eml.read_bytes() == raw


def assert_inside(result: ExtractResult, root: Path) -> None:
    if result.folder is None:
        assert result.files == ()
        return
    resolved = root.resolve()
    assert result.folder.resolve().parent == resolved
    for path in result.files:
        assert path.parent == result.folder
        assert path.resolve().is_relative_to(resolved)
        assert path.is_file()
        assert not path.is_symlink()
    for path in root.rglob("*"):
        assert path.resolve().is_relative_to(resolved)
        assert not path.is_symlink()


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(raw=mutated(), policy=policies)
def test_mutated_messages_extract_inside_the_root_and_idempotently(
    raw: bytes, policy: AttachmentPolicy
) -> None:
    check_extraction(raw, policy)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=st.lists(st.one_of(st.sampled_from(JUNK), st.binary(max_size=40)), max_size=40).map(
        b"".join
    ),
    policy=policies,
)
def test_header_and_boundary_soup_extracts_inside_the_root(
    raw: bytes, policy: AttachmentPolicy
) -> None:
    check_extraction(raw, policy)
