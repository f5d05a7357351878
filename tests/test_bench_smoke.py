"""The benchmark harness works end to end: ``bench/run.py --smoke`` on tiny mailboxes.

It runs the real thing (a private Dovecot, fetchd, mpop, fetchmail, getmail6
and the wire-limit client) and checks that every client fetched and verified
every profile's mailbox. It says nothing about speed.

getmail6 alone may fail a run: its delivery fork has a rare lost-wakeup race
(its SIGCHLD handler can notify before the parent waits), which stalls it until
its own timeout. Its row must still be there, with numbers or its error.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
PROFILES = ("small", "small-20k", "mixed", "large", "huge", "poll", "small-tls")
CLIENTS = ("fetchd", "mpop", "fetchmail (bsmtp)", "fetchmail (mda)", "getmail6")
FETCH_WIRE = ("wire-limit (discard)", "wire-limit (files)")
POLL_WIRE = ("wire-limit (UIDL only)",)
RACY = "getmail6"


def _expected_rows(profile: str) -> tuple[str, ...]:
    if profile == "small-20k":
        return ("fetchd", "mpop", *FETCH_WIRE)
    return CLIENTS + (POLL_WIRE if profile == "poll" else FETCH_WIRE)


def _section(report: str, profile: str) -> list[str]:
    """The lines of one profile's section of the Markdown report."""
    _, found, rest = report.partition(f"\n### {profile}: ")
    assert found, f"no section for profile {profile}"
    return rest.split("\n### ", 1)[0].split("\n## ", 1)[0].splitlines()


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    results = tmp_path_factory.mktemp("bench-results")
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--smoke", "--results-dir", str(results)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (json_file,) = results.glob("*.json")
    payload: dict[str, Any] = json.loads(json_file.read_text())
    return done.stdout, payload


@pytest.mark.timeout(240)
@pytest.mark.parametrize("profile", PROFILES)
def test_every_client_has_a_row_with_numbers(
    smoke: tuple[str, dict[str, Any]], profile: str
) -> None:
    report, _ = smoke
    rows = [line for line in _section(report, profile) if line.startswith("| ")]
    for client in _expected_rows(profile):
        (row,) = [r for r in rows if r.startswith(f"| {client} |")]
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        if client == RACY and cells[1].startswith("FAILED: "):
            assert len(cells[1]) > len("FAILED: "), row
            continue
        assert "FAILED" not in row, row
        wall, cpu, rss = float(cells[1]), float(cells[3]), float(cells[5])
        assert wall > 0, row
        assert cpu >= 0, row
        assert rss > 0, row


@pytest.mark.timeout(240)
def test_json_records_one_verified_run_per_client(smoke: tuple[str, dict[str, Any]]) -> None:
    _, payload = smoke
    assert payload["smoke"] is True
    assert [p["name"] for p in payload["profiles"]] == list(PROFILES)
    for profile in payload["profiles"]:
        assert profile["messages"] > 0
        by_name = {c["client"]: c for c in profile["clients"]}
        assert tuple(by_name) == _expected_rows(profile["name"])
        for name, result in by_name.items():
            if name == RACY and result["error"] is not None:
                continue
            assert result["error"] is None, (profile["name"], name, result["error"])
            if name != RACY:
                assert result["failures"] == [], (profile["name"], name)
            assert len(result["runs"]) == 1
            assert result["runs"][0]["exit_code"] in (0, 1)  # fetchmail: 1 = no new mail


@pytest.mark.timeout(240)
def test_reports_startup_and_the_machine(smoke: tuple[str, dict[str, Any]]) -> None:
    report, payload = smoke
    assert "| `python3 -m fetchd --version` |" in report
    startup = {s["command"]: s for s in payload["startup"]}
    assert startup["python3 -m fetchd --version"]["error"] is None
    assert startup["python3 -m fetchd --version"]["wall"] > 0
    for key in ("nproc", "cpu", "kernel", "dovecot", "data dir", "date"):
        assert payload["machine"][key]


@pytest.mark.timeout(240)
def test_scaling_line_per_message_for_fetchd_and_mpop(smoke: tuple[str, dict[str, Any]]) -> None:
    report, payload = smoke
    sizes = {p["name"]: p["messages"] for p in payload["profiles"]}
    assert sizes["small-20k"] == 10 * sizes["small"]
    _, found, section = report.partition("\n## Scaling\n")
    assert found, "no scaling section"
    rows = {
        line.split("|")[1].strip(): line
        for line in section.splitlines()
        if line.startswith("| ") and not line.startswith("| client")
    }
    assert set(rows) >= {"fetchd", "mpop"}
    for row in rows.values():
        wall_small, wall_large, cpu_small, cpu_large, growth = (
            float(cell) for cell in row.strip("|").split("|")[1:]
        )
        assert wall_small > 0
        assert wall_large > 0
        assert cpu_small >= 0
        assert cpu_large >= 0
        assert growth == pytest.approx(wall_large / wall_small, abs=0.01)


@pytest.mark.timeout(240)
def test_big_mailbox_benchmark_polls_a_known_mailbox_with_both_clients() -> None:
    """``bench/bigbox.py`` small: 20,000 messages, 0 and 100 new, fetchd beside mpop."""
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bigbox.py"), "--total", "20000", "--runs", "1"],
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| 19,900 |")]
    rows.insert(0, next(line for line in done.stdout.splitlines() if line.startswith("| 20,000 |")))
    assert [row.split("|")[2].strip() for row in rows] == ["0", "100"]
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert all(cells), row
        assert cells[2].endswith(" s")
        assert cells[3].endswith(" s")
        assert float(cells[4]) > 0
