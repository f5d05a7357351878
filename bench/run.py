#!/usr/bin/env python3
"""Benchmark fetchd against mpop, fetchmail and getmail6 on a private Dovecot.

Usage: ``python3 bench/run.py [--profile NAME ...] [--runs N] [--smoke] [--cprofile]``
(``--help`` lists every option). Needs root or a user allowed to start
Dovecot, and dovecot-pop3d, openssl, mpop, fetchmail and getmail6 installed;
a peer that is missing gets a "not installed" row.
"""

from __future__ import annotations

import sys
from pathlib import Path


def _main() -> int:
    # Started as a script, Python puts bench/ itself first on sys.path; the
    # repository root is wanted instead, so that both bench and fetchd import.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)
    from bench.cli import main

    return main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(_main())
