"""One account's place on disk: its Maildir, its attachment folders, its state rows.

The poll stores messages through this; what happens to a message once it is
durable and recorded (extracting its attachments, indexing it for
``fetchd list``) happens here too, so the poll keeps only the ordering.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fetchd.config import AccountConfig
from fetchd.errors import AccountLockedError, StorageError
from fetchd.store.maildir import Maildir
from fetchd.store.state import Indexed, State

if TYPE_CHECKING:
    from fetchd.mime.attachments import ExtractResult


@dataclass
class AccountStore:
    """Where one account's mail goes: its Maildir, attachments and state."""

    account: AccountConfig
    data_dir: Path
    state: State

    def __post_init__(self) -> None:
        self.root = self.data_dir / self.account.name
        self.maildir = Maildir(self.root / "Maildir")
        self.attachments_root = self.root / "attachments"

    def relative(self, path: Path) -> str:
        return os.path.relpath(path, self.data_dir)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold ``<account>/.lock`` so that the daemon and a manual fetch never interleave."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / ".lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise AccountLockedError(
                    f"another fetchd process is polling this account ({path} is locked); "
                    "it will be polled again later"
                ) from exc
            yield
        finally:
            os.close(fd)

    def index(self, stored: Sequence[tuple[str, str]]) -> list[str]:
        """Extract attachments of stored (uid, path) messages and index them.

        The .eml files are already safe, so problems only come back as warnings.
        """
        if not stored:
            return []
        # Imported here: a pass that finds nothing new never pays for the MIME code.
        from fetchd.mime import attachments  # noqa: PLC0415

        policy = attachments.AttachmentPolicy(**self.account.attachments.model_dump())
        rows, warnings = [], []
        for uid, path in stored:
            try:
                done = attachments.extract(self.data_dir / path, self.attachments_root, policy)
            except StorageError as exc:
                warnings.append(f"attachments of {path} not extracted: {exc}")
                continue
            warnings.extend(f"{path}: {warning}" for warning in done.warnings)
            rows.append(self._row(uid, path, done))
        self.state.index_many(self.account.name, rows)
        return warnings

    def index_pending(self) -> list[str]:
        """Finish extraction that an interruption left undone."""
        return self.index(self.state.unindexed(self.account.name))

    def _row(self, uid: str, path: str, done: ExtractResult) -> Indexed:
        info = done.info
        return Indexed(
            account=self.account.name,
            uid=uid,
            path=path,
            date=info.date.isoformat() if info.date else None,
            sender=info.sender,
            sender_address=info.sender_address,
            subject=info.subject,
            message_id=info.message_id,
            folder=self.relative(done.folder) if done.folder else None,
            attachments=tuple(self.relative(file) for file in done.files),
        )
