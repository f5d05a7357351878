#!/usr/bin/env python3
"""Messages per second of ``fetchd fetch`` for each destination, on the small profile.

Usage: ``python3 bench/destinations.py [--count N] [--runs N] [--only NAME ...] [--workdir DIR]``

A private Dovecot serves the ``small`` mailbox (2,000 text messages of ~4 KB)
over POP3 as alice, and takes deliveries for bob. Each run is one
``fetchd fetch`` from an empty data directory (mail kept on the server) into:

- ``own``: fetchd's own Maildir (the default);
- ``maildir``: bob's Maildir, as a shared Maildir;
- ``mda``: Dovecot's LDA (``dovecot-lda -d bob``), one process per message;
- ``lmtp``: Dovecot's LMTP server on a unix socket, one connection per batch.

Each run is checked: bob's mailbox (or fetchd's Maildir) holds every message
once. Needs root, dovecot-pop3d and dovecot-lmtpd; the time covers the whole
process, start-up included. Prints a Markdown table (median of ``--runs``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fetchd.testing.dovecot import Dovecot

#: The repository root: fetchd and bench import from it, and ``python -m fetchd`` runs in it.
ROOT = Path(__file__).resolve().parent.parent

DESTINATIONS = ("own", "maildir", "mda", "lmtp")


def main(argv: list[str]) -> int:
    sys.path[0] = str(ROOT)  # started as a script, bench/ itself would come first
    from bench.corpus import Corpus, MailboxSpec, generate
    from fetchd.testing.dovecot import Dovecot

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="messages (default 2000)")
    parser.add_argument("--runs", type=int, default=3, help="runs per destination (default 3)")
    parser.add_argument(
        "--only", action="append", choices=DESTINATIONS, help="only this destination (repeatable)"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="where to work (default: /tmp)")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="fetchd-bench-dest-", dir=args.workdir))
    root.chmod(0o711)
    try:
        with Dovecot(root / "dovecot", users=(("alice", "secret"), ("bob", "b"))) as dovecot:
            spec = MailboxSpec("text", args.count, 4096)
            dovecot.deliver_many("alice", generate("small", spec, Corpus()))
            print(f"| destination | messages | seconds (median of {args.runs}) | messages/s |")
            print("|---|---|---|---|")
            for destination in args.only or DESTINATIONS:
                times = [_run(root, dovecot, destination, args.count) for _ in range(args.runs)]
                median = statistics.median(times)
                print(
                    f"| {destination} | {args.count} | {median:.2f} | {args.count / median:.0f} |"
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def _run(root: Path, dovecot: Dovecot, destination: str, count: int) -> float:
    """One timed ``fetchd fetch`` into ``destination``; checks every message arrived once."""
    from bench.interpreter import FETCHD_PYTHON

    dovecot.reset("bob")
    data = root / "data"
    shutil.rmtree(data, ignore_errors=True)
    keys = {
        "own": "",
        "maildir": f'maildir = "{dovecot.user("bob").maildir}"\n',
        "mda": f"mda = {json.dumps(dovecot.lda_command('bob'))}\n",
        "lmtp": f'lmtp = "unix:{dovecot.lmtp_socket}"\nlmtp_recipient = "bob"\n',
    }[destination]
    config = root / "config.toml"
    config.write_text(
        f'[daemon]\ndata_dir = "{data}"\ntranscript = false\nlog_level = "warning"\n'
        f'[accounts.work]\nhost = "127.0.0.1"\nport = {dovecot.pop3_port}\n'
        'security = "plain"\nusername = "alice"\npassword = "secret"\n' + keys
    )
    config.chmod(0o600)
    started = time.perf_counter()
    done = subprocess.run(
        [FETCHD_PYTHON, "-m", "fetchd", "-c", str(config), "fetch"],
        capture_output=True,
        check=False,
        cwd=ROOT,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{destination}: fetchd failed: {done.stderr.decode()[-2000:]}")
    where = data / "work" / "Maildir" if destination == "own" else dovecot.user("bob").maildir
    found = sum(1 for sub in ("new", "cur") for _ in (where / sub).iterdir())
    if found != count:
        raise SystemExit(f"{destination}: {found} messages delivered, expected {count}")
    return seconds


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
