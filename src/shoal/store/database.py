"""The SQLite connection under the state store: opening, settings, migrations, transactions.

:class:`Database` owns one ``sqlite3`` connection and is the only place that talks to SQLite
directly about anything but queries. Opening a database

1. creates its folder (mode 0700) and the file (mode 0600; SQLite gives the ``-wal`` and
   ``-shm`` files the same mode),
2. sets ``busy_timeout`` first, so every later step waits for a lock instead of failing,
3. reads ``PRAGMA user_version``; a file that is not SQLite fails here, and a database written by
   a newer shoal is refused before anything in it is touched,
4. switches to WAL and sets ``synchronous=FULL`` (a commit is on disk before it returns),
5. applies the missing migrations of :mod:`shoal.store.migrations`, one transaction each, with
   foreign keys off (so a migration may rebuild a table, SQLite's way to change a column,
   without cascading deletes) but checked before each commit,
6. turns ``foreign_keys`` on for everything after.

Writes go through :meth:`Database.write`: ``BEGIN IMMEDIATE`` takes the write lock before the
first read, so a read-then-write transaction can never be refused half-way because another
connection wrote in between (WAL's ``SQLITE_BUSY_SNAPSHOT``); it commits before it returns.
Every ``sqlite3`` error leaves this module as a :class:`~shoal.errors.StoreError` naming the file;
"database is locked" is marked temporary. A lock makes one ``Database`` safe to share between
threads (calls are serialised); separate processes each open their own.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from shoal.errors import StoreError, StoreVersionError
from shoal.store.migrations import MIGRATIONS, Migration, check, pending

logger = logging.getLogger(__name__)

DEFAULT_BUSY_TIMEOUT_S = 5.0
_TEMPORARY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
# What Database.settings() reports: the settings that make the store durable and consistent.
_REPORTED_PRAGMAS = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout", "user_version")
_NOT_A_DATABASE_HINT = (
    "it is not a SQLite database, or it is damaged; move it aside (or delete it) "
    "and shoal will start with empty state"
)


def store_error(path: Path, what: str, exc: sqlite3.Error) -> StoreError:
    """A :class:`StoreError` for ``exc`` raised while doing ``what`` on the database at ``path``.

    Lock timeouts are marked ``temporary`` (retrying later may succeed); a file that is not a
    database gets a hint saying what to do.
    """
    code = getattr(exc, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF  # the extended code carries detail above
    if primary == sqlite3.SQLITE_NOTADB:
        error = StoreError(f"state database {path}: cannot {what}: {exc}; {_NOT_A_DATABASE_HINT}")
    else:
        error = StoreError(f"state database {path}: cannot {what}: {exc}")
    if primary in _TEMPORARY_CODES:
        error.temporary = True
    return error


class Database:
    """One open state database: a configured, migrated connection and a lock around it."""

    def __init__(self, connection: sqlite3.Connection, path: Path, schema_version: int) -> None:
        self._connection: sqlite3.Connection | None = connection
        self._path = path
        self._schema_version = schema_version
        self._lock = threading.RLock()

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> Database:
        """Open (creating and migrating as needed) the state database at ``path``.

        ``migrations`` is the schema to bring it to; only tests pass anything but the default.
        """
        check(migrations)
        path = Path(path)
        _prepare_file(path)
        try:
            connection = sqlite3.connect(
                path,
                timeout=busy_timeout_s,
                isolation_level=None,  # we issue BEGIN / COMMIT ourselves
                check_same_thread=False,  # guarded by Database._lock instead
            )
        except sqlite3.Error as exc:
            raise store_error(path, "open it", exc) from exc
        try:
            version = _configure_and_migrate(connection, path, busy_timeout_s, migrations)
        except BaseException:
            connection.close()
            raise
        return cls(connection, path, version)

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @property
    def schema_version(self) -> int:
        """The schema version of the database once opened (``PRAGMA user_version``)."""
        return self._schema_version

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._connection is None

    def settings(self) -> dict[str, int | str]:
        """This connection's SQLite settings, as SQLite reports them (``synchronous`` 2 = FULL)."""
        with self.read("read its settings") as connection:
            return {
                name: connection.execute(f"PRAGMA {name}").fetchone()[0]
                for name in _REPORTED_PRAGMAS
            }

    def close(self) -> None:
        """Close the connection; closing twice is harmless."""
        with self._lock:
            connection, self._connection = self._connection, None
            if connection is not None:
                try:
                    connection.close()
                except sqlite3.Error as exc:
                    raise store_error(self._path, "close it", exc) from exc

    @contextmanager
    def read(self, what: str) -> Iterator[sqlite3.Connection]:
        """The connection, for queries outside a write transaction (each one is atomic)."""
        with self._lock:
            connection = self._require_open(what)
            try:
                yield connection
            except sqlite3.Error as exc:
                raise store_error(self._path, what, exc) from exc

    @contextmanager
    def write(self, what: str, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """The connection inside ``BEGIN IMMEDIATE``; committed (durably) on a normal exit.

        Any exception rolls the transaction back; ``sqlite3`` errors come out as StoreError.

        ``durable=False`` commits without waiting for the disk (``synchronous=NORMAL`` for this
        transaction: in WAL mode it survives a crash of the process, and is on disk once a
        later durable commit or a checkpoint flushes the log). Only for writes whose loss in a
        power cut is harmless (the event bus's leases and acks: at worst a message is delivered
        again); every other write stays ``synchronous=FULL``.
        """
        with self._lock:
            connection = self._require_open(what)
            try:
                if not durable:
                    connection.execute("PRAGMA synchronous = NORMAL")
                connection.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                self._restore_durability(connection, durable)
                raise store_error(self._path, what, exc) from exc
            try:
                yield connection
                connection.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(connection)
                raise store_error(self._path, what, exc) from exc
            except BaseException:
                _rollback(connection)
                raise
            finally:
                self._restore_durability(connection, durable)

    def _restore_durability(self, connection: sqlite3.Connection, durable: bool) -> None:
        if not durable:
            try:
                connection.execute("PRAGMA synchronous = FULL")
            except sqlite3.Error as exc:
                raise store_error(self._path, "restore synchronous=FULL", exc) from exc

    def _require_open(self, what: str) -> sqlite3.Connection:
        if self._connection is None:
            raise StoreError(f"state database {self._path}: cannot {what}: the store is closed")
        return self._connection


def _prepare_file(path: Path) -> None:
    """Create the folder (0700) and an empty database file (0600) unless they exist."""
    try:
        if not path.parent.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
    except OSError as exc:
        raise StoreError(f"state database {path}: cannot create it: {exc}") from exc


def _configure_and_migrate(
    connection: sqlite3.Connection,
    path: Path,
    busy_timeout_s: float,
    migrations: Sequence[Migration],
) -> int:
    """Steps 2-6 of opening (see the module docstring); returns the final schema version."""
    latest = migrations[-1].version if migrations else 0
    try:
        connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        version = _user_version(connection)
    except sqlite3.Error as exc:
        raise store_error(path, "read it", exc) from exc
    _refuse_newer(path, version, latest)
    try:
        (mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute("PRAGMA foreign_keys = OFF")  # until migrated (see step 5)
    except sqlite3.Error as exc:
        raise store_error(path, "configure it", exc) from exc
    if str(mode).lower() != "wal":
        raise StoreError(
            f"state database {path}: cannot switch it to WAL journal mode (SQLite kept {mode!r}); "
            "keep .shoal on a local, writable file system"
        )
    for migration in pending(version, migrations):
        _apply(connection, path, migration)
    try:
        connection.execute("PRAGMA foreign_keys = ON")
        version = _user_version(connection)
    except sqlite3.Error as exc:
        raise store_error(path, "read it", exc) from exc
    _refuse_newer(path, version, latest)
    return version


def _apply(connection: sqlite3.Connection, path: Path, migration: Migration) -> None:
    """Run one migration and bump ``user_version`` in the same transaction.

    Another process may be opening the same database at the same moment: the version is read
    again under the write lock, and a migration someone else already applied is skipped.
    """
    try:
        connection.execute("BEGIN IMMEDIATE")
        try:
            if _user_version(connection) >= migration.version:
                connection.execute("ROLLBACK")
                return
            for statement in migration.statements:
                connection.execute(statement)
            broken = connection.execute("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise StoreError(
                    f"state database {path}: migration to schema version {migration.version} "
                    f"({migration.summary}) would break foreign keys: {broken[:5]}"
                )
            connection.execute(f"PRAGMA user_version = {int(migration.version)}")
            connection.execute("COMMIT")
        except BaseException:
            _rollback(connection)
            raise
    except sqlite3.Error as exc:
        raise store_error(
            path, f"migrate it to schema version {migration.version} ({migration.summary})", exc
        ) from exc
    logger.info("state database %s: migrated to schema version %d", path, migration.version)


def _user_version(connection: sqlite3.Connection) -> int:
    (version,) = connection.execute("PRAGMA user_version").fetchone()
    return int(version)


def _refuse_newer(path: Path, version: int, latest: int) -> None:
    if version > latest:
        raise StoreVersionError(
            f"state database {path} has schema version {version}, but this shoal knows versions "
            f"up to {latest}: it was written by a newer shoal; upgrade shoal, or move the "
            "file aside to start with empty state"
        )


def _rollback(connection: sqlite3.Connection) -> None:
    """Roll back if a transaction is open; a failing rollback must not hide the first error."""
    if connection.in_transaction:
        try:
            connection.execute("ROLLBACK")
        except sqlite3.Error:
            logger.exception("rollback failed")


__all__ = ["DEFAULT_BUSY_TIMEOUT_S", "Database", "store_error"]
