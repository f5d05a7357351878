"""``fetchd list``: what was fetched, with the paths of each ``.eml`` and attachment.

The state database already holds what every stored message says about itself
(date, sender, subject) and where its files went, so listing reads no mail.
People get one block per message; ``--json`` gives one object per line for
scripts. Paths are absolute: they are meant to be copied into a file manager
or a shell.

``fetchd demo`` prints its result with the same formatter.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from fetchd.commands import load, printable, read_state, say
from fetchd.errors import UsageError
from fetchd.store.state import Indexed

_DATE_WIDTH = len("2026-11-26 14:02")
# Shown in place of what a message does not say.
_NO_DATE = "(no date)"
_NO_SENDER = "(unknown sender)"
_NO_SUBJECT = "(no subject)"


@dataclass(frozen=True)
class Filters:
    """What ``fetchd list`` keeps; every field unset keeps everything."""

    since: date | None = None
    sender: str | None = None
    with_attachments: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Filters:
        return cls(_parse_since(args.since), args.sender or None, args.with_attachments)

    def keep(self, row: Indexed) -> bool:
        if self.with_attachments and not row.attachments:
            return False
        if self.sender is not None:
            needle = self.sender.casefold()
            names = (row.sender or "", row.sender_address or "")
            if not any(needle in name.casefold() for name in names):
                return False
        if self.since is not None:
            # The day the message itself states, in its own zone, as its reader saw it.
            stated = message_date(row)
            return stated is not None and stated.date() >= self.since
        return True


def run(args: argparse.Namespace) -> int:
    filters = Filters.from_args(args)
    config = load(args)
    state = read_state(config)
    rows = []
    if state is not None:
        with contextlib.closing(state):
            rows = state.listing(args.account)
    if args.account and not rows and args.account not in config.accounts:
        known = ", ".join(config.accounts) or "none"
        raise UsageError(f"no account named {args.account} in {config.path} (known: {known})")
    chosen = select(rows, filters)
    if not chosen and args.quiet:
        return 0  # no "no messages" line
    lines = (
        json_lines(chosen, config.daemon.data_dir)
        if args.json
        else human_lines(chosen, config.daemon.data_dir)
    )
    for line in lines:
        say(line)
    return 0


def select(rows: Iterable[Indexed], filters: Filters) -> list[Indexed]:
    """The rows ``filters`` keeps, oldest first; undated messages last."""
    return sorted((row for row in rows if filters.keep(row)), key=_order)


def human_lines(rows: Sequence[Indexed], data_dir: Path) -> list[str]:
    """One block per message: a summary line, then its files indented."""
    if not rows:
        return ["no messages"]
    several = len({row.account for row in rows}) > 1
    lines: list[str] = []
    for row in rows:
        summary = "  ".join(
            (_when(row), _who(row), printable(row.subject or _NO_SUBJECT), f"({_size(row.size)})")
        )
        lines.append(f"[{row.account}] {summary}" if several else summary)
        lines.extend(f"    {path}" for path in _files(row, data_dir))
    return lines


def json_lines(rows: Sequence[Indexed], data_dir: Path) -> list[str]:
    """One JSON object per message, for scripts (``jq``, ``while read``)."""
    return [json.dumps(as_json(row, data_dir), ensure_ascii=False) for row in rows]


def as_json(row: Indexed, data_dir: Path) -> dict[str, object]:
    return {
        "account": row.account,
        "date": row.date,
        "sender": row.sender,
        "sender_address": row.sender_address,
        "subject": row.subject,
        "size": row.size,
        "eml": _absolute(data_dir, row.path),
        "folder": _absolute(data_dir, row.folder),
        "attachments": [_absolute(data_dir, path) for path in row.attachments],
    }


def message_date(row: Indexed) -> datetime | None:
    """The Date the message states (its own zone), or None if it has none we could read."""
    if not row.date:
        return None
    try:
        return datetime.fromisoformat(row.date)
    except ValueError:
        return None


def _parse_since(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise UsageError(f"--since expects a date as YYYY-MM-DD, not {text!r}") from None


def _order(row: Indexed) -> tuple[bool, float, float]:
    stated = message_date(row)
    if stated is None:
        return (True, 0.0, row.fetched_at)
    # A Date without a zone ("-0000", RFC 5322 section 3.3) is read as UTC.
    instant = stated if stated.tzinfo else stated.replace(tzinfo=UTC)
    return (False, instant.timestamp(), row.fetched_at)


def _when(row: Indexed) -> str:
    stated = message_date(row)
    text = stated.strftime("%Y-%m-%d %H:%M") if stated else _NO_DATE
    return text.ljust(_DATE_WIDTH)


def _who(row: Indexed) -> str:
    name = printable(row.sender or "")
    address = printable(row.sender_address or "")
    if name and address and name != address:
        return f"{name} <{address}>"
    return name or address or _NO_SENDER


def _size(octets: int) -> str:
    if octets < 1000:
        return f"{octets} B"
    if octets < 1_000_000:
        return f"{octets / 1000:.1f} kB"
    return f"{octets / 1_000_000:.1f} MB"


def _files(row: Indexed, data_dir: Path) -> list[str]:
    paths = [row.path] if row.path else []
    return [path for path in (_absolute(data_dir, p) for p in [*paths, *row.attachments]) if path]


def _absolute(data_dir: Path, relative: str | None) -> str | None:
    if relative is None:
        return None
    return os.path.abspath(data_dir / relative)
