"""The schema of the state database, written as an ordered list of forward migrations.

Migration *n* takes a database from ``PRAGMA user_version`` *n - 1* to *n*; a new database starts
at 0 and runs them all. :mod:`shoal.store.database` applies the missing ones when it opens a
database, each in its own transaction together with the ``user_version`` bump, so a crash leaves
the database at one version or the next, never between.

Rules for adding one: append, never edit a released migration (databases in the field have run
it); write plain SQL with the allowed words spelled out (a CHECK must not follow a Python
constant that may change later); give every query the store runs an index that serves it. To
change a column or a CHECK, rebuild the table (create ``x_new``, copy, drop ``x``, rename):
migrations run with foreign keys off, so dropping a parent table cascades nothing, and the keys
are checked before the commit. Pure data, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema: ``statements`` run in order inside one transaction."""

    version: int
    summary: str
    statements: tuple[str, ...]


_V1 = Migration(
    version=1,
    summary="revisions, instances, invocations, topics and messages, schedules and job runs",
    statements=(
        """
        CREATE TABLE revisions (
            id            INTEGER PRIMARY KEY AUTOINCREMENT,
            created_at    REAL    NOT NULL,
            manifest_hash TEXT    NOT NULL,
            manifest_json TEXT    NOT NULL,
            source        TEXT    NOT NULL
        )
        """,
        """
        CREATE TABLE instances (
            kind           TEXT    NOT NULL
                           CHECK (kind IN ('service', 'function', 'job', 'template')),
            name           TEXT    NOT NULL,
            ordinal        INTEGER NOT NULL CHECK (ordinal >= 0),
            revision_id    INTEGER REFERENCES revisions (id),
            runtime        TEXT    NOT NULL
                           CHECK (runtime IN ('process', 'container', 'vm', 'function')),
            state          TEXT    NOT NULL
                           CHECK (state IN ('starting', 'running', 'backoff',
                                            'stopping', 'exited', 'fatal')),
            ready          INTEGER NOT NULL DEFAULT 0 CHECK (ready IN (0, 1)),
            pid            INTEGER,
            pid_start_time REAL,
            port           INTEGER,
            restarts       INTEGER NOT NULL DEFAULT 0,
            started_at     REAL,
            stopped_at     REAL,
            exit_code      INTEGER,
            stop_reason    TEXT,
            runtime_ref    TEXT,
            spec_hash      TEXT,
            updated_at     REAL    NOT NULL,
            PRIMARY KEY (kind, name, ordinal)
        )
        """,
        """
        CREATE TABLE invocations (
            request_id       TEXT    PRIMARY KEY,
            function         TEXT    NOT NULL,
            ordinal          INTEGER,
            started_at       REAL    NOT NULL,
            duration_ms      REAL    NOT NULL,
            billed_ms        INTEGER NOT NULL,
            max_memory_bytes INTEGER,
            cold             INTEGER NOT NULL CHECK (cold IN (0, 1)),
            init_duration_ms REAL,
            status           TEXT    NOT NULL
                             CHECK (status IN ('ok', 'error', 'timeout', 'oom',
                                               'crash', 'throttled')),
            error_type       TEXT
        )
        """,
        # list_invocations(function): newest first.
        "CREATE INDEX invocations_by_function ON invocations (function, started_at)",
        """
        CREATE TABLE topics (
            name        TEXT PRIMARY KEY,
            retention_s REAL NOT NULL CHECK (retention_s > 0)
        )
        """,
        """
        CREATE TABLE messages (
            id             INTEGER PRIMARY KEY AUTOINCREMENT,
            topic          TEXT    NOT NULL REFERENCES topics (name) ON DELETE CASCADE,
            payload        TEXT    NOT NULL CHECK (json_valid(payload)),
            created_at     REAL    NOT NULL,
            visible_at     REAL    NOT NULL,
            attempts       INTEGER NOT NULL DEFAULT 0,
            lease_until    REAL,
            acked_at       REAL,
            dead_letter_of TEXT,
            last_error     TEXT
        )
        """,
        # lease() and depth(): the unacked messages of a topic, visible ones first.
        """
        CREATE INDEX messages_pending ON messages (topic, visible_at, id)
            WHERE acked_at IS NULL
        """,
        # purge_expired(): the messages of a topic older than its retention.
        "CREATE INDEX messages_by_age ON messages (topic, created_at)",
        """
        CREATE TABLE schedules (
            name         TEXT PRIMARY KEY,
            expression   TEXT NOT NULL,
            last_fire_at REAL,
            next_fire_at REAL
        )
        """,
        """
        CREATE TABLE job_runs (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            job         TEXT    NOT NULL,
            started_at  REAL    NOT NULL,
            finished_at REAL,
            exit_code   INTEGER,
            trigger     TEXT    NOT NULL CHECK (trigger IN ('schedule', 'manual', 'missed')),
            reason      TEXT
        )
        """,
        # list_job_runs(job) newest first (the rowid rides along in every index).
        "CREATE INDEX job_runs_by_job ON job_runs (job)",
    ),
)

_V2 = Migration(
    version=2,
    summary="manual scales (shoal scale), kept across a daemon crash",
    statements=(
        """
        CREATE TABLE scales (
            service  TEXT    PRIMARY KEY,
            replicas INTEGER NOT NULL CHECK (replicas >= 0),
            set_at   REAL    NOT NULL
        )
        """,
    ),
)

MIGRATIONS: tuple[Migration, ...] = (_V1, _V2)
"""Every migration in order; ``MIGRATIONS[i].version == i + 1``."""

SCHEMA_VERSION = MIGRATIONS[-1].version
"""The version of a database this code has fully migrated."""


def pending(current: int, migrations: Sequence[Migration] = MIGRATIONS) -> tuple[Migration, ...]:
    """The ``migrations`` a database at ``user_version`` ``current`` still needs, in order."""
    return tuple(m for m in migrations if m.version > current)


def check(migrations: Sequence[Migration]) -> None:
    """Raise ValueError unless ``migrations`` are numbered 1, 2, 3, ... in order."""
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migrations must be numbered 1, 2, 3, ... in order, not {versions}")


__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Migration", "check", "pending"]
