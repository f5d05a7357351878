"""Run the profiles: deliver each mailbox, run every client on it, verify, measure.

For each profile the mailbox is emptied, Dovecot's index forgotten, and the
profile's messages delivered; then one untimed wire-limit pass reads them
all, so that Dovecot's first-session work (building its index, marking mail
seen and moving it to ``cur``) is paid before any timed run, the same for
every client. Mail is never deleted, so the server's state does not change
between runs after that; the benchmark checks that it still holds every message.

Each timed run starts the client from an empty working directory; runs are
interleaved (run 1 of every client, then run 2, ...) so that a burst of
noise on the machine does not land on one client only. A poll profile instead
fetches once per client (untimed) and then times the second pass N times
from that state: each finds nothing new.

A run that fails (non-zero exit, wrong output, timeout) is reported beside
the client's numbers and the other runs go on; a client with no successful
run gets its error in the table instead of numbers.
"""

from __future__ import annotations

import io
import json
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.clients import BENCH_DIR, Client, Fetchd, Job, Server, Wire, all_clients
from bench.corpus import Corpus, generate
from bench.measure import Measurement, run_measured
from bench.profiles import Profile
from bench.verify import attachment_problem, verify_messages
from fetchd.testing.dovecot import Dovecot

__all__ = ["Bench", "ClientResult", "ProfileResult", "Settings"]

_ERROR_TAIL = 600


class ClientFailed(Exception):
    """A client run did not produce the mailbox; the message says how."""


@dataclass
class ClientResult:
    """All runs of one client on one profile."""

    client: str
    stores: str
    runs: list[Measurement] = field(default_factory=list)
    #: Why there are no numbers at all (not installed, or every run failed).
    error: str | None = None
    #: Runs that failed while others succeeded; shown beside the numbers.
    failures: list[str] = field(default_factory=list)
    prepended: list[str] = field(default_factory=list)
    #: fetchd on a poll profile: its poll pass timed inside one warm process
    #: (``bench/pollpass.py``), what the daemon pays per poll.
    in_process: list[float] = field(default_factory=list)


@dataclass
class ProfileResult:
    """One profile's mailbox and every client's outcome on it."""

    name: str
    description: str
    messages: int
    octets: int
    clients: list[ClientResult]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Settings:
    runs: int
    timeout: float
    workroot: Path
    #: When set, fetchd runs once more per profile under cProfile, saved here.
    cprofile_dir: Path | None = None
    #: Only clients whose name starts with one of these (all when empty).
    clients: tuple[str, ...] = ()
    log: bool = True


class Bench:
    """Runs profiles against one private Dovecot."""

    def __init__(self, dovecot: Dovecot, server: Server, settings: Settings) -> None:
        self.dovecot = dovecot
        self.server = server
        self.settings = settings

    def say(self, text: str) -> None:
        if self.settings.log:
            print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True, file=sys.stderr)

    def run_profile(self, profile: Profile) -> ProfileResult:
        corpus = self._deliver(profile)
        clients = [
            client
            for client in all_clients(profile.poll)
            if not self.settings.clients or client.name.startswith(self.settings.clients)
            if not profile.clients or client.name.startswith(profile.clients)
        ]
        results = [ClientResult(client.name, client.stores) for client in clients]
        for client, result in zip(clients, results, strict=True):
            result.error = client.missing()
        outcome = ProfileResult(
            profile.name, profile.description, corpus.count, corpus.octets, results
        )
        if profile.poll:
            self._poll_profile(profile, corpus, clients, results)
        else:
            self._fetch_profile(profile, corpus, clients, results)
        if self.settings.cprofile_dir is not None:
            outcome.notes.append(self._cprofile_fetchd(profile, corpus))
        held = len(self.dovecot.messages(self.server.user))
        if held != corpus.count:
            outcome.notes.append(f"the server held {held} messages afterwards, not {corpus.count}")
        return outcome

    def _deliver(self, profile: Profile) -> Corpus:
        self.say(f"{profile.name}: generating and delivering the mailbox")
        corpus = Corpus()
        self.dovecot.reset(self.server.user)
        self.dovecot.deliver_many(
            self.server.user, generate(profile.seed_name, profile.spec, corpus)
        )
        job = self._job(profile, "warm-up")
        self._pass(Wire("discard"), job, corpus)
        shutil.rmtree(job.workdir)
        self.say(f"{profile.name}: {corpus.count} messages, {corpus.octets / 1e6:.1f} MB")
        return corpus

    def _job(self, profile: Profile, label: str) -> Job:
        slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
        workdir = self.settings.workroot / profile.name / slug
        if workdir.exists():
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True)
        return Job(profile.name, workdir, self.server, tls=profile.tls, poll=profile.poll)

    def _fetch_profile(
        self, profile: Profile, corpus: Corpus, clients: list[Client], results: list[ClientResult]
    ) -> None:
        for run in range(1, self.settings.runs + 1):
            for client, result in zip(clients, results, strict=True):
                if result.error is not None:
                    continue
                job = self._job(profile, f"{client.name}-{run}")
                try:
                    client.setup(job)
                    self._record(client, job, corpus, result, label=f"run {run}")
                finally:
                    shutil.rmtree(job.workdir, ignore_errors=True)
        for result in results:
            if result.error is None and not result.runs:
                result.error = "; ".join(result.failures)

    def _poll_profile(
        self, profile: Profile, corpus: Corpus, clients: list[Client], results: list[ClientResult]
    ) -> None:
        for client, result in zip(clients, results, strict=True):
            if result.error is not None:
                continue
            job = self._first_pass(profile, client, corpus, result)
            if job is None:
                continue
            try:
                for run in range(1, self.settings.runs + 1):
                    self._record(client, job, corpus, result, label=f"pass 2, run {run}")
                if not result.runs:
                    result.error = "; ".join(result.failures)
                elif isinstance(client, Fetchd):
                    self._pass_in_process(client, job, result)
            finally:
                shutil.rmtree(job.workdir, ignore_errors=True)

    def _pass_in_process(self, client: Fetchd, job: Job, result: ClientResult) -> None:
        """Time fetchd's poll pass inside one process (``bench/pollpass.py``)."""
        argv = [client.program, str(BENCH_DIR / "pollpass.py"), "-c", str(client.config_path(job))]
        done = subprocess.run(
            [*argv, "--passes", str(max(self.settings.runs, 5))],
            env=client.env(job),
            capture_output=True,
            text=True,
            timeout=self.settings.timeout,
            check=False,
        )
        if done.returncode != 0:
            result.failures.append(f"in-process passes: {done.stderr.strip()[-300:]}")
            return
        result.in_process = json.loads(done.stdout)["seconds"]
        median = statistics.median(result.in_process)
        self.say(f"{job.profile}: {client.name} poll pass in-process: {median * 1000:.1f} ms")

    def _first_pass(
        self, profile: Profile, client: Client, corpus: Corpus, result: ClientResult
    ) -> Job | None:
        """Fetch the poll mailbox once, untimed; the job whose state then holds it.

        The pass only sets the stage, so one that fails is tried once more from
        scratch (getmail6 has a rare lost-wakeup race in its delivery fork); the
        failure is still reported.
        """
        for attempt in (1, 2):
            job = self._job(profile, client.name)
            try:
                client.setup(job)
                first, _ = self._pass(client, job, corpus)
            except ClientFailed as exc:
                shutil.rmtree(job.workdir, ignore_errors=True)
                result.failures.append(f"untimed first pass, attempt {attempt}: {exc}")
                self.say(f"{profile.name}: {client.name} first pass FAILED: {exc}")
                continue
            self.say(f"{profile.name}: {client.name} first pass: {first.wall:.2f} s (untimed)")
            return job
        result.error = "; ".join(result.failures)
        return None

    def _record(
        self, client: Client, job: Job, corpus: Corpus, result: ClientResult, *, label: str
    ) -> None:
        """Run one timed pass and keep its numbers, or its failure; the other runs go on.

        Dirty pages of earlier runs (and of removing their files) are written out
        first, so that one client's writeback does not slow the next one down.
        """
        os.sync()
        try:
            measurement, prepended = self._pass(client, job, corpus)
        except ClientFailed as exc:
            result.failures.append(f"{label}: {exc}")
            self.say(f"{job.profile}: {client.name} {label} FAILED: {exc}")
            return
        result.runs.append(measurement)
        result.prepended = prepended
        self.say(f"{job.profile}: {client.name} {label}: {measurement.wall:.2f} s")

    def _pass(
        self, client: Client, job: Job, corpus: Corpus, argv: list[str] | None = None
    ) -> tuple[Measurement, list[str]]:
        """One measured pass, then the check that the client's output is the mailbox."""
        log = job.workdir / "client"
        measurement = run_measured(
            argv or client.command(job),
            env=client.env(job),
            cwd=job.workdir,
            log_prefix=log,
            timeout=self.settings.timeout,
        )
        if measurement.timed_out:
            raise ClientFailed(f"killed after {self.settings.timeout:.0f} s")
        if not client.exit_ok(measurement.exit_code):
            raise ClientFailed(
                f"exit code {measurement.exit_code}: {self._tail(log.with_suffix('.err'))}"
            )
        stdout = log.with_suffix(".out").read_text(errors="replace")
        try:
            count = client.count_only(job, stdout)
        except (ValueError, KeyError, TypeError) as exc:
            raise ClientFailed(f"unreadable summary {stdout[-200:]!r}: {exc}") from exc
        if count is not None:
            if count != corpus.count:
                raise ClientFailed(f"read {count} of {corpus.count} messages")
            return measurement, []
        verification = verify_messages(client.stored(job), corpus)
        if verification.problem is not None:
            raise ClientFailed(verification.problem)
        if isinstance(client, Fetchd):
            problem = attachment_problem(client.attachments_dir(job), corpus)
            if problem is not None:
                raise ClientFailed(problem)
        return measurement, sorted(verification.prepended)

    def _tail(self, path: Path) -> str:
        text = path.read_text(errors="replace") if path.exists() else ""
        text = text.replace(self.server.password, "***").strip()
        return text[-_ERROR_TAIL:] or "(nothing on stderr)"

    def _cprofile_fetchd(self, profile: Profile, corpus: Corpus) -> str:
        """One extra, untimed fetchd pass under cProfile; its top entries go to a file."""
        assert self.settings.cprofile_dir is not None
        client = Fetchd()
        job = self._job(profile, "fetchd-cprofile")
        stats_file = self.settings.cprofile_dir / f"{profile.name}-fetchd.pstats"
        command = client.command(job)
        profiled = [command[0], "-m", "cProfile", "-o", str(stats_file), *command[1:]]
        try:
            client.setup(job)
            if profile.poll:
                self._pass(client, job, corpus)
            measurement, _ = self._pass(client, job, corpus, profiled)
        except ClientFailed as exc:
            return f"fetchd under cProfile failed: {exc}"
        finally:
            shutil.rmtree(job.workdir, ignore_errors=True)
        text_file = stats_file.with_suffix(".txt")
        text_file.write_text(_top_entries(stats_file))
        return f"fetchd under cProfile: {measurement.wall:.2f} s wall; top entries in {text_file}"


def _top_entries(stats_file: Path, limit: int = 30) -> str:
    out = io.StringIO()
    for key in ("cumulative", "tottime"):
        out.write(f"=== sorted by {key} ===\n")
        stats = pstats.Stats(str(stats_file), stream=out)
        stats.strip_dirs().sort_stats(key).print_stats(limit)
    return out.getvalue()
