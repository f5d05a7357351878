"""How each client is configured, started, and where it leaves the mail it fetched.

Every client keeps mail on the server, remembers what it fetched by UIDL, and
starts each run from an empty working directory (its own config, state and
output). Config files holding the throwaway password are mode 0600.

- fetchd: ``python3 -m fetchd -c CONFIG fetch`` from this source tree, into
  ``<data_dir>/bench/Maildir`` plus extracted attachments.
- mpop: ``mpop -C RCFILE``, Maildir delivery, pipelining on.
- fetchmail cannot write a Maildir. ``fetchmail (bsmtp)`` writes batch SMTP to
  one file, its fastest honest output; ``fetchmail (mda)`` hands each message
  to a two-line shell MDA that writes ``tmp/`` and renames into ``new/``.
- getmail6: ``getmail -r RCFILE``, Maildir destination. It refuses to deliver
  as root, so when the benchmark runs as root it delivers as ``nobody``.
- wire-limit: ``bench/wire.py`` (see there).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.interpreter import FETCHD_PYTHON
from bench.verify import bsmtp_messages, maildir_messages

__all__ = ["Client", "Job", "Server", "all_clients"]

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
ACCOUNT = "bench"


@dataclass(frozen=True)
class Server:
    """Where the clients fetch from."""

    host: str
    port: int
    tls_port: int
    ca_file: Path
    user: str
    password: str


@dataclass(frozen=True)
class Job:
    """One client's run of a profile: its private working directory and the transport."""

    profile: str
    workdir: Path
    server: Server
    tls: bool
    poll: bool

    @property
    def port(self) -> int:
        return self.server.tls_port if self.tls else self.server.port

    @property
    def maildir(self) -> Path:
        return self.workdir / "Maildir"


def _private(path: Path, text: str) -> Path:
    """Write a file only its owner may read (clients refuse inline passwords otherwise)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as stream:
        stream.write(text)
    return path


def _make_maildir(path: Path) -> None:
    for sub in ("new", "cur", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)


class Client(ABC):
    """A POP3 client under test."""

    name: str = ""
    program: str = ""
    #: What the client does with a message, for the notes under the tables.
    stores: str = ""

    def missing(self) -> str | None:
        """Why this client cannot run here, or None."""
        if shutil.which(self.program) is None:
            return f"{self.program} is not installed"
        return None

    def env(self, job: Job) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(job.workdir),
            "LANG": "C.UTF-8",
        }

    @abstractmethod
    def setup(self, job: Job) -> None:
        """Write the configuration and create the output directories (not timed)."""

    @abstractmethod
    def command(self, job: Job) -> list[str]:
        """The command line of one pass."""

    @abstractmethod
    def stored(self, job: Job) -> Iterator[bytes]:
        """The messages this client stored."""

    def exit_ok(self, code: int) -> bool:
        return code == 0

    def count_only(self, job: Job, stdout: str) -> int | None:
        """For a client that stores nothing: how many messages it reports reading."""
        return None


class Fetchd(Client):
    name = "fetchd"
    program = FETCHD_PYTHON
    stores = "`python3 -m fetchd fetch` from the source tree: Maildir + extracted attachments"

    def env(self, job: Job) -> dict[str, str]:
        return {**super().env(job), "PYTHONPATH": str(REPO)}

    def config_path(self, job: Job) -> Path:
        return job.workdir / "config.toml"

    def data_dir(self, job: Job) -> Path:
        return job.workdir / "data"

    def setup(self, job: Job) -> None:
        server = job.server
        tls = f'security = "tls"\nca_file = "{server.ca_file}"' if job.tls else 'security = "plain"'
        _private(
            self.config_path(job),
            f'[daemon]\ndata_dir = "{self.data_dir(job)}"\nlog_level = "warning"\n'
            "transcript = false\n\n"
            f'[accounts.{ACCOUNT}]\nhost = "{server.host}"\nport = {job.port}\n{tls}\n'
            f'username = "{server.user}"\npassword = "{server.password}"\n',
        )

    def command(self, job: Job) -> list[str]:
        return [FETCHD_PYTHON, "-m", "fetchd", "-c", str(self.config_path(job)), "fetch"]

    def stored(self, job: Job) -> Iterator[bytes]:
        return maildir_messages(self.data_dir(job) / ACCOUNT / "Maildir")

    def attachments_dir(self, job: Job) -> Path:
        return self.data_dir(job) / ACCOUNT / "attachments"


class Mpop(Client):
    name = "mpop"
    program = "mpop"
    stores = "Maildir (adds a Received header)"

    def setup(self, job: Job) -> None:
        _make_maildir(job.maildir)
        server = job.server
        tls = (
            f"tls on\ntls_starttls off\ntls_trust_file {server.ca_file}\n"
            if job.tls
            else "tls off\n"
        )
        _private(
            job.workdir / "mpoprc",
            f"defaults\n\naccount {ACCOUNT}\nhost {server.host}\nport {job.port}\n{tls}"
            f"auth user\nuser {server.user}\npassword {server.password}\nkeep on\n"
            f"delivery maildir {job.maildir}\nuidls_file {job.workdir / 'uidls'}\n"
            "pipelining on\n",
        )

    def command(self, job: Job) -> list[str]:
        return ["mpop", "-C", str(job.workdir / "mpoprc"), "--quiet", ACCOUNT]

    def stored(self, job: Job) -> Iterator[bytes]:
        return maildir_messages(job.maildir)


class _Fetchmail(Client):
    program = "fetchmail"

    def env(self, job: Job) -> dict[str, str]:
        # Its lock file and default id file live in $FETCHMAILHOME, else $HOME.
        return {**super().env(job), "FETCHMAILHOME": str(job.workdir)}

    def exit_ok(self, code: int) -> bool:
        # 1 means "no mail awaiting retrieval": the normal outcome of a second pass.
        return code in (0, 1)

    @abstractmethod
    def delivery(self, job: Job) -> str:
        """The rcfile lines that say where mail goes."""

    def setup(self, job: Job) -> None:
        server = job.server
        if job.tls:
            # The test certificate names localhost; fetchmail does not match IP SANs.
            tls = (
                f'  ssl\n  sslcertck\n  sslcertfile "{server.ca_file}"\n'
                '  sslcommonname "localhost"\n'
            )
        else:
            tls = '  sslproto ""\n'  # no opportunistic STLS on the plain profile
        _private(
            job.workdir / "fetchmailrc",
            "set no syslog\nset no bouncemail\n"
            f"poll {server.host} protocol pop3 port {job.port} uidl:\n"
            f'  user "{server.user}" there with password "{server.password}" is "bench" here\n'
            f"  keep\n  no rewrite\n{tls}{self.delivery(job)}",
        )

    def command(self, job: Job) -> list[str]:
        return [
            "fetchmail",
            "-f",
            str(job.workdir / "fetchmailrc"),
            "--idfile",
            str(job.workdir / "fetchids"),
            "--nodetach",
            "--silent",
        ]


class FetchmailBsmtp(_Fetchmail):
    name = "fetchmail (bsmtp)"
    stores = "one batch-SMTP file, not a Maildir (adds a Received header)"

    def delivery(self, job: Job) -> str:
        return f'  bsmtp "{job.workdir / "out.bsmtp"}"\n'

    def stored(self, job: Job) -> Iterator[bytes]:
        return bsmtp_messages(job.workdir / "out.bsmtp")


class FetchmailMda(_Fetchmail):
    name = "fetchmail (mda)"
    stores = "Maildir through a shell MDA, one sh+cat+mv per message (adds a Received header)"

    def delivery(self, job: Job) -> str:
        _make_maildir(job.maildir)
        script = _private(
            job.workdir / "deliver.sh",
            "# One message on stdin into the Maildir: write in tmp/, rename into new/.\n"
            f'name="bench.$$"\ncat > "{job.maildir}/tmp/$name" && '
            f'mv "{job.maildir}/tmp/$name" "{job.maildir}/new/$name"\n',
        )
        return f'  mda "/bin/sh {script}"\n'

    def stored(self, job: Job) -> Iterator[bytes]:
        return maildir_messages(job.maildir)


class Getmail(Client):
    name = "getmail6"
    program = "getmail"
    stores = "Maildir (adds Return-Path, Delivered-To, Received)"

    def setup(self, job: Job) -> None:
        _make_maildir(job.maildir)
        (job.workdir / "getmail").mkdir()
        server = job.server
        retriever = "SimplePOP3Retriever"
        if job.tls:
            retriever = f"SimplePOP3SSLRetriever\nca_certs = {server.ca_file}"
        deliver_as = ""
        if os.geteuid() == 0:
            # getmail6 refuses to write mail as root; its Maildir destination can setuid.
            deliver_as = "user = nobody\n"
            nobody = pwd.getpwnam("nobody")
            for directory in (job.maildir, *(job.maildir / s for s in ("new", "cur", "tmp"))):
                os.chown(directory, nobody.pw_uid, nobody.pw_gid)
        _private(
            job.workdir / "getmailrc",
            f"[retriever]\ntype = {retriever}\nserver = {server.host}\nport = {job.port}\n"
            f"username = {server.user}\npassword = {server.password}\n\n"
            f"[destination]\ntype = Maildir\npath = {job.maildir}/\n{deliver_as}\n"
            "[options]\nread_all = false\ndelete = false\nverbose = 0\n"
            "message_log_syslog = false\n",
        )

    def command(self, job: Job) -> list[str]:
        return [
            "getmail",
            "--rcfile",
            str(job.workdir / "getmailrc"),
            "--getmaildir",
            str(job.workdir / "getmail"),
        ]

    def stored(self, job: Job) -> Iterator[bytes]:
        return maildir_messages(job.maildir)


class Wire(Client):
    """The wire limit; ``mode`` is discard, files or uidl (see ``bench/wire.py``)."""

    program = sys.executable

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.name = f"wire-limit ({'UIDL only' if mode == 'uidl' else mode})"
        self.stores = {
            "discard": "pipelined RETR, replies parsed and discarded",
            "files": "pipelined RETR, one file per message, no fsync",
            "uidl": "login, UIDL, QUIT: the least a pass that finds nothing new can do",
        }[mode]

    def env(self, job: Job) -> dict[str, str]:
        return {**super().env(job), "BENCH_POP3_PASSWORD": job.server.password}

    def setup(self, job: Job) -> None:
        pass

    def command(self, job: Job) -> list[str]:
        argv = [sys.executable, str(BENCH_DIR / "wire.py"), "--host", job.server.host]
        argv += ["--port", str(job.port), "--user", job.server.user, "--mode", self.mode]
        if job.tls:
            argv += ["--ca-file", str(job.server.ca_file)]
        if self.mode == "files":
            argv += ["--out", str(job.maildir)]
        return argv

    def stored(self, job: Job) -> Iterator[bytes]:
        return maildir_messages(job.maildir) if self.mode == "files" else iter(())

    def count_only(self, job: Job, stdout: str) -> int | None:
        if self.mode == "files":
            return None
        count: int = json.loads(stdout)["messages"]
        return count


def all_clients(poll: bool) -> list[Client]:
    """Every client in table order; a poll profile has one wire row, the UIDL-only pass."""
    peers: list[Client] = [Fetchd(), Mpop(), FetchmailBsmtp(), FetchmailMda(), Getmail()]
    wires = [Wire("uidl")] if poll else [Wire("discard"), Wire("files")]
    return peers + wires
