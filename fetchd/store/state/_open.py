"""Opening the state database: private, durable, and at the current schema.

For fetching it is created if missing (mode 0600 before SQLite touches it),
switched to WAL with ``synchronous=FULL`` so that a commit is on disk before
the poll sends any DELE, and migrated forward under the write lock. For
reporting it is opened read-only and never changed. Either way a failure
says what to fix: a read-only directory, an unreadable file, a damaged one,
a schema version not this fetchd's.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path
from typing import Self

from fetchd.access import PRIVATE, SECRET_FILE
from fetchd.errors import StorageError
from fetchd.store.state._db import Database, _repair_hint
from fetchd.store.state._schema import _MIGRATIONS, SCHEMA_VERSION, _statements

#: The database's file name inside the data directory.
STATE_FILE = "state.sqlite3"
#: Seconds a connection waits for another process's lock before failing.
BUSY_TIMEOUT = 30.0


def state_path(data_dir: Path) -> Path:
    """Where the state database of ``data_dir`` lives: the one place that names it."""
    return data_dir / STATE_FILE


class Opening(Database):
    """How the state database is opened: for fetching, for reporting, or in memory."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        if read_only:
            self._db = self._connect_read_only()
        else:
            self._db = self._connect_for_writing()

    def _connect_for_writing(self) -> sqlite3.Connection:
        path = self.path
        try:
            PRIVATE.make_missing(path.parent)
        except StorageError as exc:
            raise StorageError(f"{exc} (for the state database)") from exc
        db = None
        try:
            _keep_private(path)
            db = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None)
            _use_wal(db)
            _keep_private(path, *_companions(path))
            db.execute("PRAGMA synchronous=FULL")
            self._db = db
            self._migrate()
        except (sqlite3.Error, OSError, StorageError) as exc:
            if db is not None:
                db.close()
            raise StorageError(_open_failure(path, exc)) from exc
        return db

    def _connect_read_only(self) -> sqlite3.Connection:
        path = self.path
        if not path.is_file():
            raise StorageError(f"no state database at {path} yet: nothing has been polled")
        try:
            uri = f"{path.absolute().as_uri()}?mode=ro"
            db = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT, isolation_level=None)
        except sqlite3.Error as exc:
            raise StorageError(_open_failure(path, exc)) from exc
        try:
            (version,) = db.execute("PRAGMA user_version").fetchone()
        except sqlite3.Error as exc:
            db.close()
            raise StorageError(_open_failure(path, exc)) from exc
        if version != SCHEMA_VERSION:
            db.close()
            raise StorageError(_version_problem(path, version))
        return db

    def _migrate(self) -> None:
        """Bring the schema to ``SCHEMA_VERSION``, all steps in one transaction.

        The version only ever grows, so a current one needs no lock. Otherwise
        the write lock comes first and the version is read again under it:
        read before the lock, two processes creating a fresh database would
        both run the first step, and the second would fail.
        """
        if self._version() == SCHEMA_VERSION:
            return
        with self._transaction() as db:
            version = self._version()
            if version > SCHEMA_VERSION:
                raise StorageError(_version_problem(self.path, version))
            for script in _MIGRATIONS[version:]:
                for statement in _statements(script):
                    db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _version(self) -> int:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        return int(version)

    @classmethod
    def in_memory(cls) -> Self:
        """An empty database that lives in memory only: it reads as "nothing fetched yet".

        ``fetch --dry-run`` before any fetch reads this instead of creating the
        real database; nothing is written anywhere on disk.
        """
        state = cls.__new__(cls)
        state.path = Path(":memory:")
        state.read_only = False
        state._db = sqlite3.connect(":memory:", isolation_level=None)
        state._migrate()
        return state

    @classmethod
    def open_readonly(cls, path: Path) -> Self:
        """Open an existing database for reading only; never creates or migrates it.

        ``fetchd status`` may run as another user (root, beside a service with
        its own user): a read-only connection cannot leave a database, or a
        schema change, behind that the daemon's user cannot write.
        """
        return cls(path, read_only=True)


def _keep_private(path: Path, *companions: Path) -> None:
    """The database files are the service's alone (0600), whoever may read the mail.

    The database is made before SQLite opens it, so it never exists with the
    umask's mode, and SQLite gives its -wal and -shm files the database's
    mode. Files from before are set again. The companions are set by name,
    never opened: closing any descriptor of a file drops the process's POSIX
    locks on it, SQLite's included.
    """
    if not companions:
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        fd = os.open(path, flags, SECRET_FILE)  # before SQLite holds any lock on it
        try:
            os.fchmod(fd, SECRET_FILE)
        finally:
            os.close(fd)
    for companion in companions:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(companion, SECRET_FILE)


def _companions(path: Path) -> list[Path]:
    """The -wal and -shm files SQLite keeps beside the database in WAL mode."""
    return [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]


def _use_wal(db: sqlite3.Connection) -> None:
    """Switch to WAL (a setting kept in the file, so this is a no-op once done).

    While another process switches a fresh database, SQLite answers "locked"
    at once instead of calling the busy handler: wait and ask again, for as
    long as the busy timeout would have waited.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _open_failure(path: Path, exc: BaseException) -> str:
    """Why the database at ``path`` cannot be opened, in words that say what to fix.

    SQLite says only "unable to open database file" when the directory is
    read-only (it must create the -wal and -shm files beside the database).
    """
    directory = path.parent
    where = f"the state database {path}"
    if not os.access(directory, os.W_OK | os.X_OK):
        return (
            f"cannot open {where}: the directory {directory} is not writable "
            f"(read-only file system or permissions); fetchd keeps its state there ({exc})"
        )
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return f"cannot open {where}: the file is not readable and writable ({exc})"
    if isinstance(exc, StorageError):
        return str(exc)
    return f"cannot open {where}: {exc}{_repair_hint(exc)}"


def _version_problem(path: Path, version: int) -> str:
    if version > SCHEMA_VERSION:
        return (
            f"the state database {path} has schema version {version}, newer than this "
            f"fetchd knows ({SCHEMA_VERSION}): use the fetchd that wrote it"
        )
    return (
        f"the state database {path} has schema version {version}, older than this fetchd's "
        f"({SCHEMA_VERSION}); the next fetch (or the daemon's start) upgrades it"
    )


def integrity_problems(path: Path) -> list[str]:
    """What SQLite's ``PRAGMA quick_check`` finds wrong with the database at ``path``.

    An empty list means sound. A file that is no database at all (truncated,
    overwritten) is a problem reported here, not an exception: this is what
    ``fetchd check`` and ``fetchd state check`` tell people before they run
    ``fetchd state rebuild``. The database is opened read-only.
    """
    uri = f"{path.absolute().as_uri()}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT)) as db:
            rows = db.execute("PRAGMA quick_check").fetchall()
            (version,) = db.execute("PRAGMA user_version").fetchone()
    except sqlite3.Error as exc:
        return [str(exc)]
    problems = [str(row[0]) for row in rows if row[0] != "ok"]
    if not problems and version > SCHEMA_VERSION:
        problems.append(_version_problem(path, version))
    return problems
