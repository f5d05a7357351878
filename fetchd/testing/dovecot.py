"""A private Dovecot POP3 (and LMTP) server for integration tests and the benchmark.

fetchd is only as good as its behaviour against a real server, so the
integration tests run a Dovecot instance of their own: its own config, base,
state and log directories under one root, loopback ports picked at run time,
and a throwaway certificate. The system's Dovecot service is never touched.

Mail is put straight into each user's ``Maildir/new`` (Dovecot reads Maildir
without any delivery agent), and a mailbox is reset by deleting its files and
Dovecot's index and UID list, so that UIDLs start over.

When Dovecot's LMTP server is installed (Debian: dovecot-lmtpd) the instance
also serves LMTP, on a unix socket (``lmtp_socket``) and a loopback port
(``lmtp_port``), and ``lda_command`` is the argv of Dovecot's LDA delivering
into a user's mailbox of this instance: the destinations fetchd delivers to.

Dovecot refuses to access mail as root, so mail belongs to ``nobody``; every
directory above the root must therefore be searchable by other users.
"""

from __future__ import annotations

import grp
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fetchd.testing._running import Running
from fetchd.testing.tlsfiles import TLSFiles, make_test_ca

__all__ = ["Dovecot", "DovecotUser"]

_MAIL_USER = "nobody"
_MAIL_GROUP = "nogroup"
_START_ATTEMPTS = 3
_START_TIMEOUT = 15.0

# With an introspection URL, XOAUTH2 and OAUTHBEARER tokens are checked by asking
# it (RFC 7662); passwords still go to the passwd-file passdb, and tokens only here.
_OAUTH2_PASSDB = """\
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {root}/dovecot-oauth2.conf.ext
}}
"""
_OAUTH2_CONFIG = """\
introspection_mode = post
introspection_url = {url}
username_attribute = username
active_attribute = active
active_value = true
"""

_CONFIG = """\
# Private test instance of fetchd; generated, do not edit.
instance_name = {instance}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = {protocols}
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login{oauth2_mechanisms}
auth_verbose = yes
# Tests log in with wrong passwords on purpose: no failure delay, and no
# per-IP brute-force penalty (the auth process cannot open the anvil socket).
auth_failure_delay = 0
default_login_user = dovenull
default_internal_user = dovecot
default_internal_group = dovecot
first_valid_uid = 1
mail_location = maildir:~/Maildir
# A throwaway server: durability buys nothing, speed helps the benchmark.
mail_fsync = never
pop3_fast_size_lookups = yes
pop3_uidl_format = %08Xu%08Xv
# For dovecot-lda and LMTP: where rejections would come from, and folders made on demand.
postmaster_address = postmaster@example.org
lda_mailbox_autocreate = yes

passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/users{passwd_mechanisms}
}}
{oauth2_passdb}userdb {{
  driver = passwd-file
  args = {root}/users
}}

service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {pop3s_port}
    ssl = yes
  }}
}}
{lmtp_service}"""

_LMTP_SERVICE = """\
service lmtp {{
  unix_listener lmtp-test {{
    mode = 0666
  }}
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
"""
#: Dovecot's LMTP server; the LMTP protocol is served only when it is installed.
_LMTP_BINARY = Path("/usr/lib/dovecot/lmtp")
_LDA_BINARY = Path("/usr/lib/dovecot/dovecot-lda")


@dataclass(frozen=True)
class DovecotUser:
    """A mail account of the test server."""

    name: str
    password: str
    maildir: Path


class Dovecot(Running):
    """A private Dovecot serving POP3 (plain and implicit TLS) on loopback ports.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    host: str = "127.0.0.1"

    def __init__(
        self,
        root: Path,
        users: Sequence[tuple[str, str]] = (("alice", "secret"),),
        *,
        oauth2_introspection_url: str | None = None,
    ) -> None:
        for name, password in users:
            if any(c in name + password for c in ":\n") or not name.isascii():
                raise ValueError(f"user {name!r}: no ':' or newline in test credentials")
        self.root = root.resolve()
        self.pop3_port = 0
        self.pop3s_port = 0
        self.lmtp_port = 0
        #: Whether this instance serves LMTP (Dovecot's LMTP server is installed).
        self.lmtp = _LMTP_BINARY.exists()
        self.ca_file = self.root / "tls" / "ca.pem"
        self._users = {
            name: DovecotUser(name, password, self.root / "home" / name / "Maildir")
            for name, password in users
        }
        self._uid = pwd.getpwnam(_MAIL_USER).pw_uid
        self._gid = grp.getgrnam(_MAIL_GROUP).gr_gid
        self._process: subprocess.Popen[bytes] | None = None
        self._tls: TLSFiles | None = None
        self._counter = itertools.count()
        self._introspection_url = oauth2_introspection_url

    @property
    def lmtp_socket(self) -> Path:
        """The unix socket of this instance's LMTP server."""
        return self.root / "run" / "lmtp-test"

    def lda_command(self, user: str) -> list[str]:
        """The argv of Dovecot's LDA delivering stdin into ``user``'s mailbox of this instance."""
        return [str(_LDA_BINARY), "-c", str(self.root / "dovecot.conf"), "-d", user]

    def doveadm(self, *args: str) -> str:
        """Run ``doveadm`` against this instance; returns its stdout."""
        binary = shutil.which("doveadm") or "/usr/bin/doveadm"
        command = [binary, "-c", str(self.root / "dovecot.conf"), *args]
        done = subprocess.run(command, capture_output=True, check=False, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {done.stderr.decode(errors='replace')}")
        return done.stdout.decode(errors="replace")

    @property
    def log_path(self) -> Path:
        """Dovecot's own log: where to look when a test session misbehaves."""
        return self.root / "dovecot.log"

    def start(self) -> None:
        """Write the config, start Dovecot and wait until both ports accept connections."""
        if self._process is not None:
            raise RuntimeError("this Dovecot is already running")
        binary = _find_dovecot()
        self._prepare_root()
        for attempt in range(1, _START_ATTEMPTS + 1):
            self.log_path.unlink(missing_ok=True)  # judge each attempt by its own log
            self.pop3_port = _free_port()
            while (pop3s_port := _free_port()) == self.pop3_port:
                pass
            self.pop3s_port = pop3s_port
            while (lmtp_port := _free_port()) in (self.pop3_port, self.pop3s_port):
                pass
            self.lmtp_port = lmtp_port
            config = self._write_config()
            with (self.root / "dovecot.stderr").open("wb") as stderr:
                # -F: stay in the foreground, so this object owns the master process.
                self._process = subprocess.Popen(
                    [binary, "-F", "-c", str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                )
            if self._wait_ready():
                return
            self.stop()
            # Another process may have taken a port between our probe and Dovecot's bind.
            if attempt == _START_ATTEMPTS or "in use" not in self._log_text():
                raise RuntimeError(f"Dovecot did not start:\n{self._log_text()}")

    def stop(self) -> None:
        """Stop this instance (SIGTERM to its master, which ends all its sessions)."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def user(self, name: str) -> DovecotUser:
        """The account ``name``; KeyError if the server was not created with it."""
        return self._users[name]

    def deliver(self, user: str, message: bytes, *, name: str | None = None) -> Path:
        """Put ``message`` into the user's ``Maildir/new``, written in ``tmp`` then renamed."""
        maildir = self.user(user).maildir
        path = self._write(maildir, message, name)
        os.chown(path, self._uid, self._gid)
        return path

    def deliver_many(self, user: str, messages: Iterable[bytes]) -> None:
        """Deliver many messages quickly (benchmark mailboxes of thousands)."""
        maildir = self.user(user).maildir
        paths = [self._write(maildir, message, None) for message in messages]
        for path in paths:
            os.chown(path, self._uid, self._gid)

    def reset(self, user: str) -> None:
        """Empty the mailbox and forget Dovecot's index, so that UIDs start again at 1.

        Maildir++ folders (``.Name``) and the files Dovecot keeps beside the
        mail (indexes, UID lists, subscriptions) go too.
        """
        maildir = self.user(user).maildir
        for sub in ("new", "cur", "tmp"):
            for entry in (maildir / sub).iterdir():
                entry.unlink()
        for entry in maildir.iterdir():
            if entry.is_dir() and entry.name.startswith("."):
                shutil.rmtree(entry)
            elif entry.is_file() and entry.name.startswith(
                ("dovecot", "subscriptions", "maildirfolder")
            ):
                entry.unlink()

    def messages(self, user: str) -> list[Path]:
        """Files the server still holds for ``user`` (``new`` and ``cur``), sorted by name."""
        maildir = self.user(user).maildir
        return sorted(
            [*(maildir / "new").iterdir(), *(maildir / "cur").iterdir()], key=lambda p: p.name
        )

    def _write(self, maildir: Path, message: bytes, name: str | None) -> Path:
        if name is None:
            now = time.time()
            usec = int(now % 1 * 1_000_000)
            name = f"{int(now)}.M{usec}P{os.getpid()}Q{next(self._counter)}.fetchd-test"
        tmp = maildir / "tmp" / name
        tmp.write_bytes(message)
        final = maildir / "new" / name
        tmp.rename(final)
        return final

    def _prepare_root(self) -> None:
        """Create homes, the user file and the certificate; check mail dirs are reachable."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o711)
        for ancestor in self.root.parents:
            if not ancestor.stat().st_mode & 0o001:
                raise RuntimeError(
                    f"{ancestor} is not searchable by other users, so Dovecot's mail and "
                    f"auth processes cannot reach {self.root}: choose a root elsewhere"
                )
        # Unix socket paths are limited to 108 bytes; Dovecot's longest is about
        # 30 bytes below base_dir.
        if len(str(self.root / "run")) > 70:
            raise RuntimeError(f"{self.root} is too long a path for Dovecot's sockets")
        self._tls = make_test_ca(self.root / "tls")
        self.ca_file = self._tls.ca_file
        lines = []
        for user in self._users.values():
            home = user.maildir.parent
            for directory in (
                home,
                user.maildir,
                *(user.maildir / s for s in ("new", "cur", "tmp")),
            ):
                directory.mkdir(parents=True, exist_ok=True)
                os.chown(directory, self._uid, self._gid)
            lines.append(f"{user.name}:{user.password}:{self._uid}:{self._gid}::{home}::\n")
        users_file = self.root / "users"
        users_file.write_text("".join(lines))
        # Read by Dovecot's unprivileged auth process; these are throwaway test passwords.
        users_file.chmod(0o644)

    def _write_config(self) -> Path:
        assert self._tls is not None
        config = self.root / "dovecot.conf"
        url = self._introspection_url
        if url is not None:
            oauth2 = self.root / "dovecot-oauth2.conf.ext"
            oauth2.write_text(_OAUTH2_CONFIG.format(url=url))
            oauth2.chmod(0o644)  # read by Dovecot's unprivileged auth processes
        config.write_text(
            _CONFIG.format(
                instance=f"fetchd-test-{os.getpid()}-{id(self):x}",
                root=self.root,
                cert=self._tls.cert_file,
                key=self._tls.key_file,
                pop3_port=self.pop3_port,
                pop3s_port=self.pop3s_port,
                oauth2_mechanisms=" xoauth2 oauthbearer" if url else "",
                passwd_mechanisms="\n  mechanisms = plain login" if url else "",
                oauth2_passdb=_OAUTH2_PASSDB.format(root=self.root) if url else "",
                protocols="pop3 lmtp" if self.lmtp else "pop3",
                lmtp_service=_LMTP_SERVICE.format(lmtp_port=self.lmtp_port) if self.lmtp else "",
            )
        )
        return config

    def _wait_ready(self) -> bool:
        """True once both listeners accept; False if Dovecot exits or the wait times out."""
        assert self._process is not None
        deadline = time.monotonic() + _START_TIMEOUT
        pending = [self.pop3_port, self.pop3s_port, *([self.lmtp_port] if self.lmtp else [])]
        while pending and time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, pending[0]), timeout=1):
                    pending.pop(0)
            except OSError:
                time.sleep(0.05)
        return not pending

    def _log_text(self) -> str:
        parts = []
        for name in ("dovecot.stderr", "dovecot.log"):
            path = self.root / name
            if path.exists():
                parts.append(path.read_text(errors="replace")[-4000:])
        return "\n".join(parts) or "(Dovecot wrote no log)"


def _find_dovecot() -> str:
    found = shutil.which("dovecot") or shutil.which("dovecot", path="/usr/sbin:/sbin")
    if found is None:
        raise RuntimeError(
            "dovecot is not installed: apt-get install dovecot-pop3d (.ci/run does this)"
        )
    return found


def _free_port() -> int:
    """A loopback port that was free a moment ago (Dovecot binds it itself)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
