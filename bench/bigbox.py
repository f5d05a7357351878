"""Poll cost against a mailbox that keeps years of mail: fetchd beside mpop.

    python3 bench/bigbox.py                          # 10k, 100k and 1M messages; 0 and 100 new
    python3 bench/bigbox.py --total 20000 --runs 1   # the small version CI smoke-tests

Both clients already know the mailbox (fetchd from ``fetchd fetch
--mark-seen``, mpop from a UIDL file written the way mpop writes it) but
for 0 or 100 new messages, then poll it. Each timed run starts from the
same saved state, so runs are alike; fetchd and mpop alternate. The server
is ``bigbox_server``: a fast fake that keeps the listing in memory, so the
numbers are the clients' own.
Wall time is the whole process; peak RSS from GNU time where installed.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bigbox_server import BigMailbox, serve
from bench.interpreter import FETCHD_PYTHON
from bench.measure import Measurement, rss_method, run_measured

REPO = Path(__file__).resolve().parents[1]
ACCOUNT = "bench"
TIMEOUT = 900.0


@dataclass
class Row:
    known: int
    new: int
    fetchd: list[Measurement]
    mpop: list[Measurement]


def _private(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def _maildir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    for sub in ("new", "cur", "tmp"):
        (path / sub).mkdir(parents=True)
    return path


class Clients:
    """fetchd and mpop, set up against one server in one working directory."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.fetchd_config = _private(
            workdir / "fetchd.toml",
            f'[daemon]\ndata_dir = "{workdir / "data"}"\nlog_level = "warning"\n'
            f'transcript = false\n\n[accounts.{ACCOUNT}]\nhost = "127.0.0.1"\n'
            f'port = {port}\nsecurity = "plain"\nusername = "bench"\npassword = "bench"\n',
        )
        self.mpop_rc = _private(
            workdir / "mpoprc",
            f"defaults\n\naccount {ACCOUNT}\nhost 127.0.0.1\nport {port}\ntls off\n"
            f"auth user\nuser bench\npassword bench\nkeep on\n"
            f"delivery maildir {workdir / 'mpop-mail'}\nuidls_file {workdir / 'uidls'}\n"
            "pipelining on\n",
        )
        self.saved = workdir / "saved"

    def env(self) -> dict[str, str]:
        return {"PATH": "/usr/bin:/bin", "HOME": str(self.workdir), "PYTHONPATH": str(REPO)}

    def fetchd_argv(self, *extra: str) -> list[str]:
        return [FETCHD_PYTHON, "-m", "fetchd", "-c", str(self.fetchd_config), "fetch", *extra]

    def learn(self, known: int) -> Measurement:
        """Both clients come to know the first ``known`` messages; the states are saved.

        fetchd learns from ``fetchd fetch --mark-seen`` against the server as it
        is (from its saved state, if any: only what is new is marked); mpop's
        UIDL file is written as mpop writes it.
        """
        if self.saved.exists():
            self._restore()
        else:
            shutil.rmtree(self.workdir / "data", ignore_errors=True)
        learned = self._run(self.fetchd_argv("--mark-seen"), "learn")
        uids = sorted(f"uid-{n}" for n in range(1, known + 1))
        head = f"# generated for the benchmark, as mpop writes it\n {known} 127.0.0.1 bench\n"
        (self.workdir / "uidls").write_text(head + "\n".join(uids) + "\n")
        shutil.rmtree(self.saved, ignore_errors=True)
        self.saved.mkdir()
        shutil.copytree(self.workdir / "data", self.saved / "data")
        shutil.copy2(self.workdir / "uidls", self.saved / "uidls")
        return learned

    def _restore(self) -> None:
        shutil.rmtree(self.workdir / "data")
        shutil.copytree(self.saved / "data", self.workdir / "data")
        shutil.copy2(self.saved / "uidls", self.workdir / "uidls")
        _maildir(self.workdir / "mpop-mail")

    def _run(self, argv: list[str], label: str) -> Measurement:
        measured = run_measured(
            argv,
            env=self.env(),
            cwd=self.workdir,
            log_prefix=self.workdir / label,
            timeout=TIMEOUT,
        )
        if measured.exit_code != 0 or measured.timed_out:
            err = (self.workdir / label).with_suffix(".err").read_text()[-2000:]
            raise SystemExit(f"{label} failed ({measured.exit_code}): {err}")
        return measured

    def timed(self, new: int) -> tuple[Measurement, Measurement]:
        self._restore()
        fetchd = self._run(self.fetchd_argv(), "fetchd")
        stored = len(list((self.workdir / "data" / ACCOUNT / "Maildir" / "new").iterdir()))
        self._restore()
        mpop = self._run(["mpop", "-C", str(self.mpop_rc), "--quiet", ACCOUNT], "mpop")
        fetched = len(list((self.workdir / "mpop-mail" / "new").iterdir()))
        if (stored, fetched) != (new, new):
            raise SystemExit(f"expected {new} new; fetchd stored {stored}, mpop {fetched}")
        return fetchd, mpop


def measure(total: int, news: list[int], runs: int, workdir: Path) -> list[Row]:
    """Rows for a mailbox of ``total`` messages, ``new`` of them not known yet.

    The total stays the same across rows (mpop handles at most 1,000,000
    messages), so the known count is ``total - new``. Rows go from the most
    new to none, each learning the few more messages it knows.
    """
    box = BigMailbox(0)
    server, port = serve(box)
    try:
        clients = Clients(workdir, port)
        rows = []
        for new in sorted(news, reverse=True):
            known = total - new
            box.resize(known)
            learned = clients.learn(known)
            print(f"  {known:,} known: learning took {learned.wall:.2f} s", file=sys.stderr)
            box.resize(total)
            row = Row(known, new, [], [])
            for _ in range(runs):
                fetchd, mpop = clients.timed(new)
                row.fetchd.append(fetchd)
                row.mpop.append(mpop)
            rows.append(row)
        return sorted(rows, key=lambda row: row.new)
    finally:
        server.shutdown()
        server.server_close()


def _median(values: list[float]) -> float:
    return statistics.median(values)


def report(rows: list[Row], runs: int) -> str:
    lines = [
        f"## Big mailbox: poll cost by messages known (median of {runs}; peak RSS: {rss_method()})",
        "",
        f"fetchd runs under {FETCHD_PYTHON}.",
        "",
        "| known | new | fetchd | mpop | x mpop | fetchd µs per known | fetchd CPU | mpop CPU "
        "| fetchd peak RSS | mpop peak RSS |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        fetchd = _median([m.wall for m in row.fetchd])
        mpop = _median([m.wall for m in row.mpop])
        cpu = _median([m.cpu for m in row.fetchd])
        cpu_m = _median([m.cpu for m in row.mpop])
        rss_f = max(m.max_rss_kib for m in row.fetchd) / 1024
        rss_m = max(m.max_rss_kib for m in row.mpop) / 1024
        lines.append(
            f"| {row.known:,} | {row.new} | {fetchd:.3f} s | {mpop:.3f} s | {fetchd / mpop:.2f} "
            f"| {fetchd / row.known * 1e6:.2f} | {cpu:.3f} s | {cpu_m:.3f} s "
            f"| {rss_f:.0f} MiB | {rss_m:.0f} MiB |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total", type=int, action="append", help="mailbox size (repeatable)")
    parser.add_argument("--new", type=int, action="append", help="new messages (repeatable)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, help="where the clients keep their state")
    args = parser.parse_args(argv)
    if shutil.which("mpop") is None:
        raise SystemExit("mpop is not installed (Debian package mpop)")
    totals = args.total or [10_000, 100_000, 1_000_000]
    news = args.new or [0, 100]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="fetchd-bigbox-", dir=args.workdir) as tmp:
        for count in totals:
            workdir = Path(tmp) / str(count)
            workdir.mkdir()
            rows += measure(count, news, args.runs, workdir)
            shutil.rmtree(workdir)
    print(report(rows, args.runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
