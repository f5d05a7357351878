"""fetchd's POP3 client alone: RETR speed with and without pipelining, memory on a big message.

Starts a private Dovecot, fills a mailbox, and times ``Session.pipelined`` over
RETR of every message (median of several runs) with PIPELINING used and with
strict lock-step, each message streamed to /dev/null. Then RETRs one 50 MB
message into a file in a child process and reports its peak RSS.

    python3 bench/client.py [--messages 2000] [--size 4096] [--runs 5] [--big-mb 50]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fetchd.pop3.client import Session  # noqa: E402
from fetchd.pop3.commands import Command  # noqa: E402
from fetchd.pop3.connect import Endpoint, open_session  # noqa: E402
from fetchd.testing.dovecot import Dovecot  # noqa: E402

PASSWORD = "bench-secret"  # noqa: S105 - a throwaway test server's password

_BIG_CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
from fetchd.pop3.connect import Endpoint, open_session
with open_session(Endpoint("127.0.0.1", int(sys.argv[2]), "plain")) as session:
    session.login("user", "bench", sys.argv[3], "127.0.0.1", 0)
    with open(sys.argv[4], "wb") as sink:
        octets = session.retr(1, sink)
    session.quit()
print(octets)
"""


def message(index: int, size: int) -> bytes:
    head = f"From: b@example.org\r\nSubject: bench {index}\r\nMessage-ID: <{index}@bench>\r\n\r\n"
    line = b"." + b"x" * 70 + b"\r\n"
    return head.encode() + line * max(size // len(line), 1)


def retr_all(port: int, count: int, *, pipelining: bool) -> float:
    with open_session(Endpoint("127.0.0.1", port, "plain", pipelining=pipelining)) as session:
        session.login("user", "bench", PASSWORD, "127.0.0.1", 0)
        started = time.perf_counter()
        octets = _drain(session, count)
        elapsed = time.perf_counter() - started
        session.quit()
    assert octets > 0
    return elapsed


def _drain(session: Session, count: int) -> int:
    octets = 0
    commands = [Command("RETR", (str(n),)) for n in range(1, count + 1)]
    for reply in session.pipelined(commands):
        for chunk in reply.check("RETR").chunks():
            octets += len(chunk)
    return octets


def big_message_rss(dovecot: Dovecot, megabytes: int, work: Path) -> tuple[int, int]:
    dovecot.reset("bench")
    dovecot.deliver("bench", message(0, megabytes * 1024 * 1024))
    retr_all(dovecot.pop3_port, 1, pipelining=False)  # warm Dovecot's index
    # GNU time measures the child alone: a forked child's ru_maxrss starts from
    # its parent's, which here holds the 50 MB message it delivered.
    out = subprocess.run(
        ["/usr/bin/time", "-f", "%M", sys.executable, "-c", _BIG_CHILD, str(REPO),
         str(dovecot.pop3_port), PASSWORD, str(work / "big.eml")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    octets = int(out.stdout.split()[0])
    rss_kb = int(out.stderr.strip().splitlines()[-1])
    return octets, rss_kb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--big-mb", type=int, default=50)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fetchd-bench-client-"))
    work.chmod(0o755)
    with Dovecot(work / "dovecot", users=(("bench", PASSWORD),)) as dovecot:
        dovecot.deliver_many("bench", (message(i, args.size) for i in range(args.messages)))
        retr_all(dovecot.pop3_port, args.messages, pipelining=True)  # warm-up, untimed
        for pipelining in (True, False):
            times = [
                retr_all(dovecot.pop3_port, args.messages, pipelining=pipelining)
                for _ in range(args.runs)
            ]
            label = "pipelined" if pipelining else "lock-step"
            print(
                f"RETR {args.messages} x {args.size} B, {label}: median "
                f"{statistics.median(times):.3f} s (min {min(times):.3f}, max {max(times):.3f})"
            )
        octets, rss_kb = big_message_rss(dovecot, args.big_mb, work)
        print(f"RETR one {octets / 1e6:.1f} MB message to a file: peak RSS {rss_kb / 1024:.1f} MiB")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
