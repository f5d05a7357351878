"""The connection every table group of the state shares, and how they use it.

A write is one ``BEGIN IMMEDIATE`` transaction; a read one query. Either maps
``sqlite3.Error`` to a ``StorageError`` that names the database, and says
what to do when SQLite finds the file damaged. UIDs are stored by their wire
bytes (``_key``) and read back exactly (``_uid``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fetchd.errors import StorageError


class Database:
    """The state database's connection, as the methods of each table group use it.

    Opening it is ``fetchd.store.state._open``'s; ``State`` puts the parts together.
    """

    path: Path
    read_only: bool
    _db: sqlite3.Connection

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StorageError(_failure_text(self.path, exc)) from exc

    def close(self) -> None:
        self._db.close()

    def _query(self, sql: str, args: tuple[object, ...]) -> list[Any]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(_failure_text(self.path, exc)) from exc


def _key(uid: str) -> bytes:
    """A UID as SQLite stores it (BLOB): its wire bytes, whatever they are."""
    return uid.encode("utf-8", "surrogateescape")


def _uid(key: bytes) -> str:
    """The UID a stored key stands for, exactly as ``read_listing`` decodes it."""
    return bytes(key).decode("utf-8", "surrogateescape")


def _failure_text(path: Path, exc: sqlite3.Error) -> str:
    return f"the state database {path} failed: {exc}{_repair_hint(exc)}"


def _repair_hint(exc: BaseException) -> str:
    """What to do when SQLite says the file is damaged; nothing mends it by itself."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None or code & 0xFF not in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return ""
    return " (the file is damaged: 'fetchd state rebuild' keeps it aside and rebuilds the state)"
