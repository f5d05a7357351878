"""``fetchd demo``: the sample mailbox through the real server, poll, Maildir and extractor."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from fetchd.cli import main
from fetchd.commands.demo import CONFIG_MARK, DEMO_ACCOUNT, tree_lines
from fetchd.commands.demo_mail import Sample, samples
from fetchd.mime.attachments import MESSAGE_FILE
from fetchd.store.state import Indexed, State

SAMPLES = {sample.uid: sample for sample in samples()}


@dataclass
class DemoResult:
    root: Path
    code: int
    output: str

    @property
    def maildir_new(self) -> Path:
        return self.root / DEMO_ACCOUNT / "Maildir" / "new"

    def rows(self) -> dict[str, Indexed]:
        state = State(self.root / "state.sqlite3")
        try:
            return {row.uid: row for row in state.listing(DEMO_ACCOUNT)}
        finally:
            state.close()

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    def folder(self, uid: str) -> Path:
        row = self.rows()[uid]
        assert row.folder is not None, f"{uid} has no attachment folder"
        return self.root / row.folder


def fetchd(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(args))
    return code, out.getvalue()


def run_demo(root: Path) -> DemoResult:
    return DemoResult(root, *fetchd("demo", str(root)))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    """One demo run, shared by the tests that only look at its result."""
    return run_demo(tmp_path_factory.mktemp("demo"))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def lf(sample: Sample) -> bytes:
    return sample.raw.replace(b"\r\n", b"\n")


def all_files(root: Path) -> list[Path]:
    return [Path(top) / name for top, _dirs, names in os.walk(root) for name in names]


def lasting_files(root: Path) -> list[Path]:
    """Every file but SQLite's write-ahead log files, which come and go."""
    return sorted(path for path in all_files(root) if not path.name.endswith(("-wal", "-shm")))


def test_the_samples_are_a_dozen_distinct_deterministic_messages() -> None:
    again = samples()
    assert len(SAMPLES) == 12
    assert [s.raw for s in again] == [SAMPLES[s.uid].raw for s in again]
    assert len({s.raw for s in again}) == 12
    assert all(s.raw.endswith(b"\r\n") and b"\n" not in s.raw.replace(b"\r\n", b"") for s in again)


def test_demo_succeeds_and_reports_what_it_stored(demo: DemoResult) -> None:
    assert demo.code == 0
    assert f"data directory: {demo.root}" in demo.output
    assert "Stored 12 new messages" in demo.output
    assert "extracted 14 attachments from 10 of them" in demo.output
    assert "'Meeting minutes (cut short)': part 0 (multipart/mixed): closing boundary missing" in (
        demo.output
    )
    assert "To fetch your own mail" in demo.output


def test_every_sample_is_stored_once_byte_for_byte(demo: DemoResult) -> None:
    stored = sorted(path.read_bytes() for path in demo.maildir_new.iterdir())
    assert stored == sorted(lf(sample) for sample in SAMPLES.values())
    rows = demo.rows()
    assert set(rows) == set(SAMPLES)
    for uid, row in rows.items():
        assert row.path is not None
        assert (demo.root / row.path).read_bytes() == lf(SAMPLES[uid])
        assert row.subject == SAMPLES[uid].subject


def test_attachments_have_the_sample_bytes(demo: DemoResult) -> None:
    rows = demo.rows()
    for uid, sample in SAMPLES.items():
        row = rows[uid]
        extracted = sorted(sha256((demo.root / path).read_bytes()) for path in row.attachments)
        assert extracted == sorted(sha256(file.content) for file in sample.files), uid
        if sample.files:
            folder = demo.folder(uid)
            assert (folder / MESSAGE_FILE).read_bytes() == lf(sample)
            assert len(list(folder.iterdir())) == len(sample.files) + 1
        else:
            assert row.folder is None


def test_non_ascii_names_survive_rfc2231(demo: DemoResult) -> None:
    for uid, name in (
        ("demo-03", "Angebot für Müller.pdf"),
        ("demo-04", "отчёт.csv"),
        ("demo-05", "見積書.pdf"),
    ):
        (expected,) = SAMPLES[uid].files
        assert (demo.folder(uid) / name).read_bytes() == expected.content


def test_same_names_get_numbered(demo: DemoResult) -> None:
    first, second, agenda = SAMPLES["demo-09"].files
    folder = demo.folder("demo-09")
    assert first.name == second.name == "photo.png"
    assert (folder / "photo.png").read_bytes() == first.content
    assert (folder / "photo (2).png").read_bytes() == second.content
    assert (folder / "agenda.pdf").read_bytes() == agenda.content


def test_inline_image_is_not_extracted(demo: DemoResult) -> None:
    (logo,) = SAMPLES["demo-06"].inline
    assert demo.rows()["demo-06"].folder is None
    everything = all_files(demo.root / DEMO_ACCOUNT / "attachments")
    assert sha256(logo.content) not in {sha256(path.read_bytes()) for path in everything}


def test_dangerous_names_stay_inside_their_folder(demo: DemoResult) -> None:
    folder = demo.folder("demo-10")
    names = sorted(path.name for path in folder.iterdir())
    assert names == ["_.._etc_passwd", "invoicefdp.exe", MESSAGE_FILE]
    for path in all_files(demo.root):
        assert "\u202e" not in str(path)
        assert path.resolve().is_relative_to(demo.root.resolve())
    executable, escapee = SAMPLES["demo-10"].files
    assert (folder / "invoicefdp.exe").read_bytes() == executable.content
    assert (folder / "_.._etc_passwd").read_bytes() == escapee.content


def test_forwarded_message_is_saved_with_its_own_attachment(demo: DemoResult) -> None:
    whole, boarding = SAMPLES["demo-07"].files
    folder = demo.folder("demo-07")
    assert (folder / "Boarding pass LX 2086 Zurich-Lisbon.eml").read_bytes() == whole.content
    assert (folder / "boarding-pass.pdf").read_bytes() == boarding.content


def test_uuencoded_and_quoted_printable_files_are_decoded(demo: DemoResult) -> None:
    (budget,) = SAMPLES["demo-11"].files
    (notes,) = SAMPLES["demo-08"].files
    assert (demo.folder("demo-11") / "budget-2027.csv").read_bytes() == budget.content
    assert (demo.folder("demo-08") / "notes.txt").read_bytes() == notes.content
    assert "Zürich" in notes.content.decode()


def test_malformed_message_is_stored_and_its_file_recovered(demo: DemoResult) -> None:
    sample = SAMPLES["demo-12"]
    assert not sample.raw.rstrip().endswith(b"--")  # the closing boundary really is missing
    row = demo.rows()["demo-12"]
    assert row.path is not None
    assert (demo.root / row.path).read_bytes() == lf(sample)
    (minutes,) = sample.files
    assert (demo.folder("demo-12") / "minutes.txt").read_bytes() == minutes.content


def test_output_shows_the_tree_and_the_listing(demo: DemoResult) -> None:
    lines = demo.output.splitlines()
    tree = tree_lines(demo.root)
    start = lines.index(str(demo.root))
    assert lines[start : start + len(tree)] == tree
    assert not any(line.endswith(("-wal", "-shm")) for line in tree)
    assert any(line.endswith("└── state.sqlite3") for line in tree)
    assert "2026-11-26 14:02  Dana Lee <dana@example.com>  Photos from the offsite  (" in (
        demo.output
    )
    for row in demo.rows().values():
        assert f"    {demo.root / str(row.path)}" in lines


# -- the config the demo leaves behind ----------------------------------------------


def test_the_demo_leaves_a_private_config_for_its_folder(demo: DemoResult) -> None:
    text = demo.config.read_text()
    assert text.startswith(CONFIG_MARK)
    assert stat.S_IMODE(demo.config.stat().st_mode) == 0o600  # it holds the demo's password
    assert f"  fetchd -c {demo.config} list --with-attachments" in demo.output.splitlines()
    assert f"  fetchd -c {demo.config} status" in demo.output.splitlines()


def test_list_reads_the_demo_folder_through_its_config(demo: DemoResult) -> None:
    code, listed = fetchd("-c", str(demo.config), "list")
    assert code == 0
    lines = listed.splitlines()
    start = demo.output.splitlines().index(f"What fetchd -c {demo.config} list prints:") + 2
    assert demo.output.splitlines()[start : start + len(lines)] == lines
    code, listed = fetchd("-c", str(demo.config), "list", "--json")
    assert code == 0
    assert len(listed.splitlines()) == 12


def test_status_shows_the_demo_poll(demo: DemoResult) -> None:
    code, out = fetchd("-c", str(demo.config), "status", "--json")
    assert code == 0
    (entry,) = json.loads(out)["accounts"]
    assert entry["account"] == DEMO_ACCOUNT
    assert (entry["outcome"], entry["stored"], entry["fetched_total"]) == ("ok", 12, 12)
    assert entry["last_poll"] is not None
    assert entry["enabled"] is False
    code, table = fetchd("-c", str(demo.config), "status")
    assert code == 0
    assert re.search(rf"^{DEMO_ACCOUNT} +\S+ \S+ +ok +12 ", table, flags=re.MULTILINE), table


def test_check_accepts_the_demo_config_and_fetch_leaves_the_account_alone(
    demo: DemoResult,
) -> None:
    code, out = fetchd("-c", str(demo.config), "check")
    assert code == 0, out
    assert f"{DEMO_ACCOUNT}: ok: disabled" in out
    before = lasting_files(demo.root)
    assert fetchd("-c", str(demo.config), "fetch")[0] == 0
    assert lasting_files(demo.root) == before


def test_a_config_the_demo_did_not_write_is_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = tmp_path / "config.toml"
    mine.write_text("[daemon]\n")
    assert main(["demo", str(tmp_path)]) == 2
    assert "fetchd demo did not write it" in capsys.readouterr().err
    assert mine.read_text() == "[daemon]\n"
    assert [path.name for path in tmp_path.iterdir()] == ["config.toml"]


def test_second_run_stores_nothing_new(tmp_path: Path) -> None:
    first = run_demo(tmp_path)
    before = sorted(demo_file.name for demo_file in all_files(tmp_path))
    second = run_demo(tmp_path)
    assert (first.code, second.code) == (0, 0)
    assert "Stored 12 new messages" in first.output
    assert "Nothing new: all 12 messages on the server were fetched by an earlier" in second.output
    assert "Stored" not in second.output
    assert sorted(demo_file.name for demo_file in all_files(tmp_path)) == before
    assert len(list(second.maildir_new.iterdir())) == 12


def test_without_a_directory_the_demo_makes_a_temporary_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert main(["demo"]) == 0
    (made,) = tmp_path.iterdir()
    assert made.name.startswith("fetchd-demo-")
    assert f"data directory: {made}" in capsys.readouterr().out
    assert len(list((made / DEMO_ACCOUNT / "Maildir" / "new").iterdir())) == 12


def test_a_file_is_not_a_demo_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "file"
    target.write_text("not a directory")
    assert main(["demo", str(target)]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_tree_lines_draws_a_sorted_tree(tmp_path: Path) -> None:
    (tmp_path / "b" / "inner").mkdir(parents=True)
    (tmp_path / "b" / "inner" / "x.eml").write_text("x")
    (tmp_path / "b" / "a.txt").write_text("a")
    (tmp_path / "a").mkdir()
    (tmp_path / "state.sqlite3").write_text("")
    (tmp_path / "state.sqlite3-wal").write_text("")
    (tmp_path / "state.sqlite3-shm").write_text("")
    assert tree_lines(tmp_path) == [
        str(tmp_path),
        "├── a/",
        "├── b/",
        "│   ├── a.txt",
        "│   └── inner/",
        "│       └── x.eml",
        "└── state.sqlite3",
    ]


def test_console_entry_runs_the_demo(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fetchd", "demo", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Stored 12 new messages" in done.stdout
    assert len(list((tmp_path / DEMO_ACCOUNT / "Maildir" / "new").iterdir())) == 12


def test_the_commands_to_try_name_the_fetchd_that_ran_the_demo(tmp_path: Path) -> None:
    script = tmp_path / "bin" / "fetchd"
    script.parent.mkdir()
    script.write_text(
        f"#!{sys.executable}\nimport sys\nfrom fetchd.cli import main\nsys.exit(main())\n"
    )
    script.chmod(0o755)
    repo = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [str(script), "demo", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )
    assert done.returncode == 0, done.stderr
    config = tmp_path / "demo" / "config.toml"
    assert f"  {script} -c {config} status" in done.stdout.splitlines()
    status = subprocess.run(
        [str(script), "-c", str(config), "status"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )
    assert status.returncode == 0, status.stderr
    assert re.search(rf"^{DEMO_ACCOUNT} +\S+ \S+ +ok +12 ", status.stdout, flags=re.MULTILINE)
