"""``fetchd list``: the state of a real demo run, filtered and printed for people and scripts."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
from pathlib import Path

import pytest

from fetchd.cli import main
from fetchd.commands.demo import DEMO_ACCOUNT
from fetchd.commands.demo_mail import samples
from fetchd.store.state import Fetched, Indexed, State

SAMPLES = {sample.uid: sample for sample in samples()}
SUMMARY = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d  .+ <[^<>]+@[^<>]+>  .+  \(\d+(\.\d)? (B|kB)\)")
JSON_KEYS = {
    "account",
    "date",
    "sender",
    "sender_address",
    "subject",
    "size",
    "eml",
    "folder",
    "attachments",
}


def write_config(path: Path, data_dir: Path, accounts: tuple[str, ...] = (DEMO_ACCOUNT,)) -> Path:
    tables = "".join(
        f'\n[accounts.{name}]\nhost = "127.0.0.1"\nport = 1110\nsecurity = "plain"\n'
        f'username = "{name}"\npassword_env = "FETCHD_TEST_PASSWORD"\n'
        for name in accounts
    )
    path.write_text(f'[daemon]\ndata_dir = "{data_dir}"\n{tables}', encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config whose data_dir holds one demo run."""
    data_dir = tmp_path_factory.mktemp("data")
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["demo", str(data_dir)]) == 0
    return write_config(tmp_path_factory.mktemp("etc") / "config.toml", data_dir)


def fetchd_list(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> list[str]:
    assert main(["-c", str(config), "list", *args]) == 0
    return capsys.readouterr().out.splitlines()


def blocks(lines: list[str]) -> list[list[str]]:
    """The output split into one block per message: the summary line, then its paths."""
    found: list[list[str]] = []
    for line in lines:
        if line.startswith("    "):
            found[-1].append(line.strip())
        else:
            found.append([line])
    return found


def subjects(lines: list[str]) -> list[str]:
    return [block[0].split("  ")[2] for block in blocks(lines)]


def test_lists_every_message_oldest_first(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    found = blocks(fetchd_list(config, capsys))
    assert len(found) == 12
    assert [block[0][:16] for block in found] == sorted(block[0][:16] for block in found)
    for block in found:
        assert SUMMARY.fullmatch(block[0]), block[0]
        paths = [Path(line) for line in block[1:]]
        assert paths[0].suffix == ".eml"
        assert all(path.is_absolute() and path.is_file() for path in paths)
    assert found[0][0].startswith("2026-10-05 12:31  Alice Smith <alice@example.com>  Lunch")


def test_block_shows_the_message_and_its_files(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (block,) = [b for b in blocks(fetchd_list(config, capsys)) if "offsite" in b[0]]
    assert block[0].startswith("2026-11-26 14:02  Dana Lee <dana@example.com>  Photos from the")
    eml, *files = (Path(line) for line in block[1:])
    assert eml.read_bytes() == SAMPLES["demo-09"].raw.replace(b"\r\n", b"\n")
    assert block[0].endswith(f"({eml.stat().st_size / 1000:.1f} kB)")
    assert sorted(path.name for path in files) == ["agenda.pdf", "photo (2).png", "photo.png"]


def test_since_keeps_messages_dated_on_or_after(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    on_the_day = subjects(fetchd_list(config, capsys, "--since", "2026-11-26"))
    assert on_the_day == [
        "Photos from the offsite",
        "Your invoice is overdue",
        "Budget 2027 (uuencoded)",
        "Meeting minutes (cut short)",
    ]
    assert subjects(fetchd_list(config, capsys, "--since", "2026-11-27")) == on_the_day[1:]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alice", ["Lunch on Thursday?"]),
        ("NORTHWIND", ["Invoice 2026-1142"]),  # name and address, any case
        ("петрова", ["Отчёт за октябрь"]),  # a Cyrillic display name, any case
        ("@example.org", ["Fwd: Boarding pass", "Budget 2027 (uuencoded)"]),
    ],
)
def test_from_matches_sender_name_or_address(
    config: Path, capsys: pytest.CaptureFixture[str], text: str, expected: list[str]
) -> None:
    assert subjects(fetchd_list(config, capsys, "--from", text)) == expected


def test_with_attachments_drops_messages_without_files(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    found = blocks(fetchd_list(config, capsys, "--with-attachments"))
    assert len(found) == 10
    assert all(len(block) >= 3 for block in found)  # summary, .eml, at least one file
    kept = {block[0].split("  ")[2] for block in found}
    assert "Lunch on Thursday?" not in kept
    assert "November news from Contoso" not in kept


def test_filters_combine(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = fetchd_list(
        config,
        capsys,
        "demo",
        "--with-attachments",
        "--from",
        "example.com",
        "--since",
        "2026-12-01",
    )
    assert subjects(lines) == ["Meeting minutes (cut short)"]


def test_json_is_one_object_per_line_with_absolute_paths(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    objects = [json.loads(line) for line in fetchd_list(config, capsys, "--json")]
    assert len(objects) == 12
    by_subject = {sample.subject: sample for sample in SAMPLES.values()}
    for item in objects:
        assert set(item) == JSON_KEYS
        assert item["account"] == DEMO_ACCOUNT
        sample = by_subject[item["subject"]]
        eml = Path(item["eml"])
        assert eml.is_absolute()
        assert eml.read_bytes() == sample.raw.replace(b"\r\n", b"\n")
        assert item["size"] == eml.stat().st_size
        assert item["date"].startswith("2026-")
        files = [Path(path) for path in item["attachments"]]
        assert all(path.is_absolute() and path.parent == Path(item["folder"]) for path in files)
        digests = sorted(hashlib.sha256(path.read_bytes()).hexdigest() for path in files)
        assert digests == sorted(hashlib.sha256(f.content).hexdigest() for f in sample.files)
        assert (item["folder"] is None) == (not sample.files)


def test_json_keeps_non_ascii_readable(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (line,) = fetchd_list(config, capsys, "--json", "--from", "tanaka")
    assert "見積書.pdf" in line
    assert json.loads(line)["sender"] == "田中 一郎"


def test_nothing_matching_is_not_an_error(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert fetchd_list(config, capsys, "--from", "nobody-sent-this") == ["no messages"]
    assert fetchd_list(config, capsys, "--json", "--since", "2030-01-01") == []


def test_unknown_account_and_bad_date_are_usage_errors(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-c", str(config), "list", "nosuch"]) == 2
    assert "no account named nosuch" in capsys.readouterr().err
    assert main(["-c", str(config), "list", "--since", "26.11.2026"]) == 2
    assert "YYYY-MM-DD" in capsys.readouterr().err


def indexed(
    account: str,
    uid: str,
    *,
    date: str | None = None,
    sender: str = "Someone",
    subject: str | None = None,
) -> Indexed:
    return Indexed(
        account=account,
        uid=uid,
        path=f"{account}/Maildir/new/{uid}.eml",
        date=date,
        sender=sender,
        sender_address="someone@example.com",
        subject=subject if subject is not None else uid,
        message_id=None,
        folder=None,
        attachments=(),
    )


def seed(data_dir: Path, rows: list[Indexed]) -> None:
    state = State(data_dir / "state.sqlite3")
    try:
        for row in rows:
            state.record(row.account, [Fetched(row.uid, "stored", 2048, row.path)])
            state.index_many(row.account, [row])
    finally:
        state.close()


def test_undated_messages_come_last_and_never_pass_since(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(
        tmp_path,
        [
            indexed("work", "undated"),
            indexed("work", "dated", date="2026-12-01T09:00:00+01:00"),
        ],
    )
    config = write_config(tmp_path / "config.toml", tmp_path, ("work",))
    lines = fetchd_list(config, capsys)
    assert lines[0].startswith("2026-12-01 09:00  Someone <someone@example.com>  dated  (2.0 kB)")
    assert lines[2].startswith("(no date)         Someone <someone@example.com>  undated")
    assert subjects(fetchd_list(config, capsys, "--since", "2000-01-01")) == ["dated"]


def test_sender_text_cannot_drive_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(
        tmp_path,
        [
            indexed(
                "work",
                "evil",
                date="2026-12-01T09:00:00+00:00",
                sender="Mallory\x1b[2J",
                subject="Invoice \u202eFDP.exe\x07",
            )
        ],
    )
    config = write_config(tmp_path / "config.toml", tmp_path, ("work",))
    (summary, _eml) = fetchd_list(config, capsys)
    assert summary == (
        "2026-12-01 09:00  Mallory [2J <someone@example.com>  Invoice FDP.exe  (2.0 kB)"
    )
    raw = json.loads(fetchd_list(config, capsys, "--json")[0])
    assert raw["subject"] == "Invoice \u202eFDP.exe\x07"  # scripts get the data as it is


def test_several_accounts_are_told_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(
        tmp_path,
        [
            indexed("home", "a", date="2026-11-01T08:00:00+00:00"),
            indexed("work", "b", date="2026-11-02T08:00:00+00:00"),
        ],
    )
    config = write_config(tmp_path / "config.toml", tmp_path, ("home", "work"))
    summaries = [block[0] for block in blocks(fetchd_list(config, capsys))]
    assert [line.split(" ", 1)[0] for line in summaries] == ["[home]", "[work]"]
    only_work = blocks(fetchd_list(config, capsys, "work"))
    assert [block[0].split("  ")[2] for block in only_work] == ["b"]
