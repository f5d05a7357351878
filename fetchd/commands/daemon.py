"""``fetchd run``: the daemon, until SIGTERM; see ``fetchd.daemon``."""

from __future__ import annotations

import argparse
import os
import sys

from fetchd.commands import load
from fetchd.config import Config
from fetchd.daemon import Daemon
from fetchd.daemon.sdnotify import Notifier
from fetchd.log import configure_logging, get_logger
from fetchd.signals import SignalInbox


def run(args: argparse.Namespace) -> int:
    # The inbox ``fetchd.cli`` opened at start-up holds what arrived since; the
    # daemon's own inbox reads the same one, so nothing received here is lost.
    with SignalInbox() as inbox:
        config = load(args)
        if inbox.stop_waiting():
            get_logger().info("stop signal during start-up; exiting before the first poll")
            return 0
        # A SIGHUP that came meanwhile stays in the inbox: the daemon reloads at once.
        return _serve(args, config)


def _serve(args: argparse.Namespace, config: Config) -> int:
    def relog(new: Config) -> None:
        # Options given on the command line keep winning over the reloaded file.
        configure_logging(
            args.log_level or new.daemon.log_level, args.log_format or new.daemon.log_format
        )

    daemon = Daemon(config, Notifier.from_environment(), on_reload=relog)
    if daemon.serve():
        return 0
    get_logger().warning(
        "exiting while polls still run; what they stored is recorded, the rest is fetched next time"
    )
    sys.stderr.flush()
    sys.stdout.flush()
    # Worker threads inside a poll would hold the interpreter open until their
    # network timeouts; abandoning them is safe by the poll's write ordering
    # (nothing is deleted on the server before it is recorded on disk).
    os._exit(0)
