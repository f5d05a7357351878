#!/usr/bin/env python3
"""What attachment extraction costs per message, without POP3 or Dovecot.

Usage: ``python3 bench/extract.py [--profile small|mixed|large] [--count N] [--repeat N]``.

Stores a profile's messages (``bench.corpus``, LF line endings as in the
Maildir) in a temporary directory, then times ``fetchd.mime.attachments.extract``
over each of them into a fresh attachments root, and prints microseconds per
message and MB/s of stored message. The best of ``--repeat`` passes counts.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def _main() -> int:
    # As in run.py: the repository root, not bench/, goes first on sys.path.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)
    from bench.corpus import Corpus, MailboxSpec, generate
    from bench.profiles import FULL
    from fetchd.mime.attachments import AttachmentPolicy, extract

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="small", choices=("small", "mixed", "large"))
    parser.add_argument("--count", type=int, help="messages (default: the profile's)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    spec = FULL[args.profile].spec
    if args.count is not None:
        spec = MailboxSpec(spec.kind, args.count, spec.size, spec.attach_min, spec.attach_max)

    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "cur"
        store.mkdir()
        paths = []
        for index, message in enumerate(generate(args.profile, spec, Corpus())):
            path = store / f"{index:06d}.eml"
            path.write_bytes(message.replace(b"\r\n", b"\n"))
            paths.append(path)
        octets = sum(path.stat().st_size for path in paths)
        best = float("inf")
        files = 0
        for attempt in range(args.repeat):
            root = Path(tmp) / f"attachments-{attempt}"
            started = time.perf_counter()
            results = [extract(path, root, AttachmentPolicy()) for path in paths]
            best = min(best, time.perf_counter() - started)
            files = sum(len(result.files) for result in results)
    print(
        f"{args.profile}: {len(paths)} messages, {octets / 1e6:.1f} MB, {files} files: "
        f"{best / len(paths) * 1e6:.0f} us/message, {octets / 1e6 / best:.0f} MB/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(_main())
