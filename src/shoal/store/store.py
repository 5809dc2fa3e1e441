"""The state store: the typed API the rest of shoal uses to keep state in SQLite.

``Store.open(path)`` gives one connection to a migrated database (see
:mod:`shoal.store.database`); its methods take and return the records of
:mod:`shoal.store.records`. Every write commits before it returns, with ``synchronous=FULL``: once
a method has returned, its write survives a kill -9 of the daemon (and a power cut). Time is an
argument (``now``, epoch seconds): nothing here reads a clock. Errors are
:class:`~shoal.errors.StoreError`.

Used by the supervisor (revisions, instances), the function pool (invocations), the event bus
(topics, messages) and the scheduler (schedules, job runs).

Messages follow at-least-once delivery: :meth:`Store.lease` hands out visible messages for a
while and counts the attempt; the consumer then acks each one (done), releases it (retry later)
or dead-letters it (give up). A lease that runs out makes the message visible again, so the
messages of a consumer that died go to another.
"""

# S608: the SQL below interpolates only the constant column lists of shoal.store.rows;
# every value goes through a ? or :name parameter.
# ruff: noqa: S608

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

from shoal.errors import StoreError
from shoal.store import queues, rows
from shoal.store.database import DEFAULT_BUSY_TIMEOUT_S, Database
from shoal.store.queues import QueueFigures
from shoal.store.records import (
    InstanceKind,
    InstanceRecord,
    InvocationRecord,
    JobRun,
    JobTrigger,
    Message,
    Revision,
    Schedule,
    Topic,
)

_UPSERT_INSTANCE = """
    INSERT INTO instances (
        kind, name, ordinal, runtime, state, updated_at, revision_id, ready, pid,
        pid_start_time, port, restarts, started_at, stopped_at, exit_code, stop_reason,
        runtime_ref, spec_hash
    ) VALUES (
        :kind, :name, :ordinal, :runtime, :state, :updated_at, :revision_id, :ready, :pid,
        :pid_start_time, :port, :restarts, :started_at, :stopped_at, :exit_code, :stop_reason,
        :runtime_ref, :spec_hash
    )
    ON CONFLICT (kind, name, ordinal) DO UPDATE SET
        runtime = excluded.runtime,
        state = excluded.state,
        updated_at = excluded.updated_at,
        revision_id = excluded.revision_id,
        ready = excluded.ready,
        pid = excluded.pid,
        pid_start_time = excluded.pid_start_time,
        port = excluded.port,
        restarts = excluded.restarts,
        started_at = excluded.started_at,
        stopped_at = excluded.stopped_at,
        exit_code = excluded.exit_code,
        stop_reason = excluded.stop_reason,
        runtime_ref = excluded.runtime_ref,
        spec_hash = excluded.spec_hash
"""

_INSERT_INVOCATION = """
    INSERT INTO invocations (
        request_id, function, ordinal, started_at, duration_ms, billed_ms, max_memory_bytes,
        cold, status, init_duration_ms, error_type
    ) VALUES (
        :request_id, :function, :ordinal, :started_at, :duration_ms, :billed_ms,
        :max_memory_bytes, :cold, :status, :init_duration_ms, :error_type
    )
"""

_INSERT_MESSAGE = """
    INSERT INTO messages (topic, payload, created_at, visible_at, dead_letter_of, last_error)
    VALUES (?, ?, ?, ?, ?, ?)
"""

# The unacked messages of a topic that are visible and not under a live lease, oldest
# visible first; served by the messages_pending index.
_LEASE = f"""
    UPDATE messages SET lease_until = :until, attempts = attempts + 1
    WHERE id IN (
        SELECT id FROM messages
        WHERE topic = :topic AND acked_at IS NULL AND visible_at <= :now
          AND (lease_until IS NULL OR lease_until <= :now)
        ORDER BY visible_at, id
        LIMIT :limit
    )
    RETURNING {rows.MESSAGE_COLUMNS}
"""


class Store:
    """The state database of one application, behind a small typed API.

    Open it with :meth:`open` and close it with :meth:`close` (or use it as a context manager).
    One ``Store`` may be shared between threads; each process opens its own.
    """

    def __init__(self, database: Database) -> None:
        self._db = database

    @classmethod
    def open(cls, path: Path, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> Store:
        """Open the database at ``path``, creating it and applying missing migrations.

        Raises :class:`~shoal.errors.StoreVersionError` when the database was written by a newer
        shoal and :class:`~shoal.errors.StoreError` when it cannot be opened or is not a
        database.
        """
        return cls(Database.open(Path(path), busy_timeout_s=busy_timeout_s))

    @property
    def path(self) -> Path:
        """The database file."""
        return self._db.path

    @property
    def schema_version(self) -> int:
        """The schema version of the database (``PRAGMA user_version``)."""
        return self._db.schema_version

    def sqlite_settings(self) -> dict[str, int | str]:
        """journal_mode, synchronous (2 = FULL), foreign_keys, busy_timeout (ms), user_version."""
        return self._db.settings()

    def close(self) -> None:
        """Close the connection; closing twice is harmless."""
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._db.closed else "open"
        return f"<Store {str(self.path)!r} {state}>"

    # ------------------------------------------------------------------ revisions

    def record_revision(
        self, manifest_hash: str, manifest_json: str, source: str, now: float
    ) -> Revision:
        """Record an applied manifest; revisions are numbered 1, 2, 3, ... and never reused."""
        with self._db.write("record a revision") as conn:
            row = conn.execute(
                f"INSERT INTO revisions (created_at, manifest_hash, manifest_json, source)"
                f" VALUES (?, ?, ?, ?) RETURNING {rows.REVISION_COLUMNS}",
                (now, manifest_hash, manifest_json, source),
            ).fetchone()
        return rows.revision(row)

    def latest_revision(self) -> Revision | None:
        """The most recently recorded revision, if any."""
        with self._db.read("read the latest revision") as conn:
            row = conn.execute(
                f"SELECT {rows.REVISION_COLUMNS} FROM revisions ORDER BY id DESC LIMIT 1"
            ).fetchone()
        return None if row is None else rows.revision(row)

    def get_revision(self, revision_id: int) -> Revision | None:
        """The revision numbered ``revision_id``, if recorded."""
        with self._db.read(f"read revision {revision_id}") as conn:
            row = conn.execute(
                f"SELECT {rows.REVISION_COLUMNS} FROM revisions WHERE id = ?",
                (revision_id,),
            ).fetchone()
        return None if row is None else rows.revision(row)

    def list_revisions(self, limit: int = 20) -> list[Revision]:
        """The ``limit`` most recent revisions, newest first."""
        with self._db.read("list revisions") as conn:
            found = conn.execute(
                f"SELECT {rows.REVISION_COLUMNS} FROM revisions ORDER BY id DESC LIMIT ?",
                (max(limit, 0),),
            ).fetchall()
        return [rows.revision(row) for row in found]

    # ------------------------------------------------------------------ instances

    def upsert_instance(self, record: InstanceRecord) -> None:
        """Insert the instance, or replace every field of the one with the same identity."""
        what = f"save instance {record.kind} {record.name}#{record.ordinal}"
        with self._db.write(what) as conn:
            conn.execute(_UPSERT_INSTANCE, rows.instance_params(record))

    def get_instance(self, kind: InstanceKind, name: str, ordinal: int) -> InstanceRecord | None:
        """The instance ``name#ordinal`` of ``kind``, if known."""
        with self._db.read(f"read instance {kind} {name}#{ordinal}") as conn:
            row = conn.execute(
                f"SELECT {rows.INSTANCE_COLUMNS} FROM instances"
                " WHERE kind = ? AND name = ? AND ordinal = ?",
                (kind, name, ordinal),
            ).fetchone()
        return None if row is None else rows.instance(row)

    def list_instances(
        self, kind: InstanceKind | None = None, name: str | None = None
    ) -> list[InstanceRecord]:
        """Known instances, optionally of one kind and/or name, by kind, name and ordinal."""
        with self._db.read("list instances") as conn:
            found = conn.execute(
                f"SELECT {rows.INSTANCE_COLUMNS} FROM instances"
                " WHERE (:kind IS NULL OR kind = :kind) AND (:name IS NULL OR name = :name)"
                " ORDER BY kind, name, ordinal",
                {"kind": kind, "name": name},
            ).fetchall()
        return [rows.instance(row) for row in found]

    def delete_instance(self, kind: InstanceKind, name: str, ordinal: int) -> bool:
        """Forget an instance; ``False`` if it was not known."""
        with self._db.write(f"delete instance {kind} {name}#{ordinal}") as conn:
            cursor = conn.execute(
                "DELETE FROM instances WHERE kind = ? AND name = ? AND ordinal = ?",
                (kind, name, ordinal),
            )
        return cursor.rowcount > 0

    # ------------------------------------------------------------------ invocations

    def record_invocation(self, record: InvocationRecord) -> None:
        """Record one finished invocation; a request id can be recorded once only."""
        self.record_invocations((record,))

    def record_invocations(self, records: Iterable[InvocationRecord]) -> None:
        """Record several invocations in one transaction (one disk flush for all)."""
        with self._db.write("record invocations") as conn:
            conn.executemany(_INSERT_INVOCATION, (rows.invocation_params(r) for r in records))

    def list_invocations(self, function: str, limit: int = 100) -> list[InvocationRecord]:
        """The ``limit`` most recent invocations of ``function``, newest first."""
        with self._db.read(f"list invocations of {function!r}") as conn:
            found = conn.execute(
                f"SELECT {rows.INVOCATION_COLUMNS} FROM invocations WHERE function = ?"
                " ORDER BY started_at DESC, rowid DESC LIMIT ?",
                (function, max(limit, 0)),
            ).fetchall()
        return [rows.invocation(row) for row in found]

    def trim_invocations(self, function: str, keep: int) -> int:
        """Delete all but the ``keep`` most recent invocations of ``function``; the count gone."""
        with self._db.write(f"trim invocations of {function!r}") as conn:
            cursor = conn.execute(
                "DELETE FROM invocations WHERE function = :function AND rowid NOT IN ("
                " SELECT rowid FROM invocations WHERE function = :function"
                " ORDER BY started_at DESC, rowid DESC LIMIT :keep)",
                {"function": function, "keep": max(keep, 0)},
            )
        return cursor.rowcount

    # ------------------------------------------------------------------ topics

    def ensure_topic(self, name: str, retention_s: float) -> Topic:
        """Create the topic, or update its retention if it exists (its messages stay)."""
        with self._db.write(f"save topic {name!r}") as conn:
            row = conn.execute(
                "INSERT INTO topics (name, retention_s) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET retention_s = excluded.retention_s"
                f" RETURNING {rows.TOPIC_COLUMNS}",
                (name, retention_s),
            ).fetchone()
        return rows.topic(row)

    def list_topics(self) -> list[Topic]:
        """Every topic, by name."""
        with self._db.read("list topics") as conn:
            found = conn.execute(
                f"SELECT {rows.TOPIC_COLUMNS} FROM topics ORDER BY name"
            ).fetchall()
        return [rows.topic(row) for row in found]

    def delete_topic(self, name: str) -> bool:
        """Delete a topic and all its messages; ``False`` if there was no such topic."""
        with self._db.write(f"delete topic {name!r}") as conn:
            cursor = conn.execute("DELETE FROM topics WHERE name = ?", (name,))
        return cursor.rowcount > 0

    # ------------------------------------------------------------------ messages

    def publish(self, topic: str, payload_json: str, now: float) -> int:
        """Store a message (visible at once); its id once it is durable.

        Raises StoreError for an unknown topic or a payload that is not JSON.
        """
        return self.publish_many(topic, (payload_json,), now)[0]

    def publish_many(self, topic: str, payloads_json: Iterable[str], now: float) -> list[int]:
        """Store several messages in one transaction (one disk flush); their ids, in order."""
        with self._db.write(f"publish to topic {topic!r}") as conn:
            _require_topic(conn, topic)
            return [
                _inserted_id(conn.execute(_INSERT_MESSAGE, (topic, payload, now, now, None, None)))
                for payload in payloads_json
            ]

    def lease(
        self, topic: str, limit: int, lease_s: float, now: float, *, durable: bool = True
    ) -> list[Message]:
        """Lease up to ``limit`` deliverable messages of ``topic`` for ``lease_s`` seconds.

        Deliverable: unacked, visible (``visible_at <= now``) and not under a lease that is still
        running (``lease_until > now``). Each leased message gets ``lease_until = now + lease_s``
        and one more attempt, in one transaction: two consumers, even in two processes, never
        lease the same message at once. Oldest visible first. ``durable=False`` does not wait
        for the disk (a lease lost in a power cut only means the message is delivered again).
        """
        if limit <= 0:
            return []
        with self._db.write(f"lease messages of topic {topic!r}", durable=durable) as conn:
            found = conn.execute(
                _LEASE, {"topic": topic, "now": now, "until": now + lease_s, "limit": limit}
            ).fetchall()
        return sorted((rows.message(row) for row in found), key=lambda m: (m.visible_at, m.id))

    def ack(self, message_ids: Iterable[int], now: float) -> int:
        """Mark messages done (delivered); the count newly acked (acking twice is harmless)."""
        with self._db.write("acknowledge messages") as conn:
            cursor = conn.executemany(
                "UPDATE messages SET acked_at = ?, lease_until = NULL"
                " WHERE id = ? AND acked_at IS NULL",
                ((now, message_id) for message_id in message_ids),
            )
        return cursor.rowcount

    def release(self, message_id: int, visible_at: float, error: str | None) -> bool:
        """A delivery failed: end the lease, deliver again from ``visible_at``, keep ``error``.

        ``error=None`` keeps the previous one. ``False`` if the message is unknown or acked.
        """
        with self._db.write(f"release message {message_id}") as conn:
            cursor = conn.execute(
                "UPDATE messages SET visible_at = ?, lease_until = NULL,"
                " last_error = coalesce(?, last_error)"
                " WHERE id = ? AND acked_at IS NULL",
                (visible_at, error, message_id),
            )
        return cursor.rowcount > 0

    def dead_letter(self, message_id: int, dlq_topic: str, error: str, now: float) -> int | None:
        """Move a message to the dead-letter topic ``dlq_topic``, in one transaction.

        The message is acked on its topic and a copy is published on ``dlq_topic`` with
        ``dead_letter_of`` set to the topic it came from and ``last_error = error``. Returns the
        copy's id, or ``None`` if the message was acked meanwhile (nothing to move). Raises
        StoreError for an unknown message or dead-letter topic.
        """
        with self._db.write(f"dead-letter message {message_id} to {dlq_topic!r}") as conn:
            row = conn.execute(
                "SELECT topic, payload, acked_at FROM messages WHERE id = ?", (message_id,)
            ).fetchone()
            if row is None:
                raise StoreError(
                    f"state database {self.path}: cannot dead-letter message {message_id}:"
                    " no such message"
                )
            source, payload, acked_at = row
            if acked_at is not None:
                return None
            _require_topic(conn, dlq_topic)
            conn.execute(
                "UPDATE messages SET acked_at = ?, lease_until = NULL, last_error = ? WHERE id = ?",
                (now, error, message_id),
            )
            return _inserted_id(
                conn.execute(_INSERT_MESSAGE, (dlq_topic, payload, now, now, source, error))
            )

    def get_message(self, message_id: int) -> Message | None:
        """The message with this id, if it still exists."""
        with self._db.read(f"read message {message_id}") as conn:
            row = conn.execute(
                f"SELECT {rows.MESSAGE_COLUMNS} FROM messages WHERE id = ?",
                (message_id,),
            ).fetchone()
        return None if row is None else rows.message(row)

    def list_messages(self, topic: str, include_acked: bool = False) -> list[Message]:
        """The messages of ``topic`` in publishing order; unacked ones only unless asked."""
        with self._db.read(f"list messages of topic {topic!r}") as conn:
            found = conn.execute(
                f"SELECT {rows.MESSAGE_COLUMNS} FROM messages"
                " WHERE topic = ? AND (? OR acked_at IS NULL) ORDER BY id",
                (topic, include_acked),
            ).fetchall()
        return [rows.message(row) for row in found]

    def depth(self, topic: str) -> int:
        """How many messages of ``topic`` are not acked yet (waiting or leased)."""
        with self._db.read(f"count messages of topic {topic!r}") as conn:
            (count,) = conn.execute(
                # Without the hint SQLite counts through every message of the topic, acked too.
                "SELECT count(*) FROM messages INDEXED BY messages_pending"
                " WHERE topic = ? AND acked_at IS NULL",
                (topic,),
            ).fetchone()
        return int(count)

    def purge_expired(self, now: float) -> int:
        """Delete every message older than its topic's retention, acked or not; the count."""
        with self._db.write("purge expired messages") as conn:
            deleted = 0
            for name, retention_s in conn.execute(
                "SELECT name, retention_s FROM topics"
            ).fetchall():
                deleted += conn.execute(
                    "DELETE FROM messages WHERE topic = ? AND created_at <= ?",
                    (name, now - retention_s),
                ).rowcount
        return deleted

    def purge_acked(self, before: float) -> int:
        """Delete acked messages acked at or before ``before``; the count (housekeeping scan)."""
        with self._db.write("purge acked messages") as conn:
            cursor = conn.execute(
                "DELETE FROM messages WHERE acked_at IS NOT NULL AND acked_at <= ?", (before,)
            )
        return cursor.rowcount

    def publish_batch(self, items: Iterable[tuple[str, str]], now: float) -> list[int]:
        """Store ``(topic, payload_json)`` messages of several topics in one transaction (the
        event bus's group commit: one disk flush for all); their ids, in order."""
        return queues.publish_batch(self._db, list(items), now)

    def next_due(self, topic: str) -> float | None:
        """When the first unacked message of ``topic`` is deliverable; None if there is none."""
        return queues.next_due(self._db, topic)

    def queue_figures(self, topics: Iterable[str], now: float) -> list[QueueFigures]:
        """Depth, leased, oldest unacked and dead letters of each topic (metrics, ``topics``)."""
        return queues.figures(self._db, list(topics), now)

    def dead_letters(self, source: str, limit: int = 1000) -> list[Message]:
        """Unacked dead letters that came from the topic ``source``, oldest first."""
        return queues.dead_letters(self._db, source, limit)

    def redrive(self, source: str, now: float) -> int:
        """Send the dead letters of ``source`` back to it (one transaction); the count."""
        return queues.redrive(self._db, source, now)

    def settle(
        self,
        acked: Iterable[int],
        retried: Iterable[tuple[int, float, str]],
        dead: Iterable[tuple[int, str, str]],
        now: float,
        *,
        durable: bool = True,
    ) -> int:
        """Ack, retry later and dead-letter the messages of one batch in one transaction; the
        count dead-lettered (see :func:`shoal.store.queues.settle`)."""
        return queues.settle(self._db, list(acked), list(retried), list(dead), now, durable=durable)

    def end_leases(self) -> int:
        """End every running lease (on daemon start: the previous holder is gone); the count."""
        return queues.end_leases(self._db)

    # ------------------------------------------------------------------ manual scales

    def scales(self) -> dict[str, int]:
        """The manual scales in force (``shoal scale``): a crashed daemon's are still here."""
        with self._db.read("read manual scales") as conn:
            found = conn.execute("SELECT service, replicas FROM scales ORDER BY service")
            return {str(service): int(replicas) for service, replicas in found.fetchall()}

    def set_scales(self, scales: Mapping[str, int], now: float) -> None:
        """Replace the manual scales with ``scales`` (one transaction; empty: forget them)."""
        with self._db.write("save manual scales") as conn:
            conn.execute("DELETE FROM scales")
            conn.executemany(
                "INSERT INTO scales (service, replicas, set_at) VALUES (?, ?, ?)",
                [(name, replicas, now) for name, replicas in scales.items()],
            )

    # ------------------------------------------------------------------ schedules

    def get_schedule(self, name: str) -> Schedule | None:
        """The schedule ``name``, if it was ever set."""
        with self._db.read(f"read schedule {name!r}") as conn:
            row = conn.execute(
                f"SELECT {rows.SCHEDULE_COLUMNS} FROM schedules WHERE name = ?",
                (name,),
            ).fetchone()
        return None if row is None else rows.schedule(row)

    def set_schedule_fired(
        self, name: str, expression: str, fired_at: float | None, next_fire_at: float | None
    ) -> Schedule:
        """Save a schedule's expression and next firing, and that it fired at ``fired_at``.

        ``fired_at=None`` registers or updates the schedule without a firing (the last firing
        recorded stays).
        """
        with self._db.write(f"save schedule {name!r}") as conn:
            row = conn.execute(
                "INSERT INTO schedules (name, expression, last_fire_at, next_fire_at)"
                " VALUES (?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET expression = excluded.expression,"
                " last_fire_at = coalesce(excluded.last_fire_at, schedules.last_fire_at),"
                " next_fire_at = excluded.next_fire_at"
                f" RETURNING {rows.SCHEDULE_COLUMNS}",
                (name, expression, fired_at, next_fire_at),
            ).fetchone()
        return rows.schedule(row)

    def list_schedules(self) -> list[Schedule]:
        """Every schedule, by name."""
        with self._db.read("list schedules") as conn:
            found = conn.execute(
                f"SELECT {rows.SCHEDULE_COLUMNS} FROM schedules ORDER BY name"
            ).fetchall()
        return [rows.schedule(row) for row in found]

    def delete_schedule(self, name: str) -> bool:
        """Forget a schedule; ``False`` if there was none."""
        with self._db.write(f"delete schedule {name!r}") as conn:
            cursor = conn.execute("DELETE FROM schedules WHERE name = ?", (name,))
        return cursor.rowcount > 0

    # ------------------------------------------------------------------ job runs

    def start_job_run(self, job: str, trigger: JobTrigger, now: float) -> int:
        """Record that a run of ``job`` started; its id."""
        with self._db.write(f"start a run of job {job!r}") as conn:
            cursor = conn.execute(
                "INSERT INTO job_runs (job, started_at, trigger) VALUES (?, ?, ?)",
                (job, now, trigger),
            )
        return _inserted_id(cursor)

    def finish_job_run(
        self, run_id: int, exit_code: int | None, reason: str | None, now: float
    ) -> JobRun:
        """Record how a run ended; StoreError if it is unknown or already finished."""
        with self._db.write(f"finish job run {run_id}") as conn:
            row = conn.execute(
                "UPDATE job_runs SET finished_at = ?, exit_code = ?, reason = ?"
                f" WHERE id = ? AND finished_at IS NULL RETURNING {rows.JOB_RUN_COLUMNS}",
                (now, exit_code, reason, run_id),
            ).fetchone()
            if row is None:
                known = conn.execute("SELECT 1 FROM job_runs WHERE id = ?", (run_id,)).fetchone()
                problem = "it already finished" if known else "no such run"
                raise StoreError(
                    f"state database {self.path}: cannot finish job run {run_id}: {problem}"
                )
        return rows.job_run(row)

    def get_job_run(self, run_id: int) -> JobRun | None:
        """The run with this id, if kept."""
        with self._db.read(f"read job run {run_id}") as conn:
            row = conn.execute(
                f"SELECT {rows.JOB_RUN_COLUMNS} FROM job_runs WHERE id = ?",
                (run_id,),
            ).fetchone()
        return None if row is None else rows.job_run(row)

    def list_job_runs(self, job: str, limit: int = 20) -> list[JobRun]:
        """The ``limit`` most recent runs of ``job``, newest first."""
        with self._db.read(f"list runs of job {job!r}") as conn:
            found = conn.execute(
                f"SELECT {rows.JOB_RUN_COLUMNS} FROM job_runs WHERE job = ?"
                " ORDER BY id DESC LIMIT ?",
                (job, max(limit, 0)),
            ).fetchall()
        return [rows.job_run(row) for row in found]

    def unfinished_job_runs(self, job: str | None = None) -> list[JobRun]:
        """Runs not finished yet (of ``job``, or of every job), oldest first.

        After a restart these are the runs the daemon lost track of.
        """
        with self._db.read("list unfinished job runs") as conn:
            found = conn.execute(
                f"SELECT {rows.JOB_RUN_COLUMNS} FROM job_runs"
                " WHERE finished_at IS NULL AND (:job IS NULL OR job = :job) ORDER BY id",
                {"job": job},
            ).fetchall()
        return [rows.job_run(row) for row in found]

    def trim_job_runs(self, job: str, keep: int) -> int:
        """Delete finished runs of ``job`` beyond the ``keep`` most recent; the count gone.

        Unfinished runs are never deleted (but count towards ``keep``).
        """
        with self._db.write(f"trim runs of job {job!r}") as conn:
            cursor = conn.execute(
                "DELETE FROM job_runs WHERE job = :job AND finished_at IS NOT NULL"
                " AND id NOT IN (SELECT id FROM job_runs WHERE job = :job"
                " ORDER BY id DESC LIMIT :keep)",
                {"job": job, "keep": max(keep, 0)},
            )
        return cursor.rowcount


def _require_topic(conn: sqlite3.Connection, topic: str) -> None:
    """Raise StoreError unless ``topic`` exists (inside the caller's transaction)."""
    if conn.execute("SELECT 1 FROM topics WHERE name = ?", (topic,)).fetchone() is None:
        raise StoreError(f"unknown topic {topic!r}; declare it under topics: in the manifest")


def _inserted_id(cursor: sqlite3.Cursor) -> int:
    """The rowid an INSERT just made (sqlite3 types it optional; after an INSERT it is set)."""
    rowid = cursor.lastrowid
    if rowid is None:  # pragma: no cover - sqlite3 always sets it after a successful INSERT
        raise StoreError("SQLite reported no id for an inserted row")
    return rowid


__all__ = ["Store"]
