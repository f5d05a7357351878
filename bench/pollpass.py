"""The daemon's cost of one poll: fetchd's poll pass timed inside a warm process.

A daemon imports fetchd and reads its config once; each poll then costs what
``run_account`` does (the state opened, the session, the listing compared, the
poll recorded), as ``fetchd.daemon`` runs it. The poll profile runs this on
fetchd's own data directory once its timed passes are done, so that the
start-up every ``fetchd fetch`` pays is kept apart from the poll itself.

    python3 bench/pollpass.py -c CONFIG [--passes 5]   # prints {"seconds": [...]}

Every pass must find nothing new and succeed, or it exits 1 saying why.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", type=Path, required=True)
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()

    # Imported here: the import is not what is timed.
    from fetchd.config import load_config
    from fetchd.log import configure_logging, get_logger
    from fetchd.runner import run_account
    from fetchd.store.state import State, state_path

    config = load_config(args.config)
    configure_logging("warning", "json", io.StringIO())
    [account] = config.accounts.values()
    data_dir = config.daemon.data_dir
    seconds = []
    for number in range(args.passes + 1):  # the first pass warms the caches, untimed
        started = time.perf_counter()
        with contextlib.closing(State(state_path(data_dir))) as state:
            run = run_account(
                account, data_dir, state, get_logger(), transcript=config.daemon.transcript
            )
        elapsed = time.perf_counter() - started
        if run.outcome != "ok" or run.result is None or run.result.new:
            print(f"pass {number}: {run.outcome}, {run.error}", file=sys.stderr)
            return 1
        if number:
            seconds.append(elapsed)
    print(json.dumps({"seconds": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
