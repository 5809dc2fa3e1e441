"""Between SQLite rows and records: the column lists the store selects, and the converters.

Each ``*_COLUMNS`` string is the select list whose order the matching converter unpacks, so a
query and its converter cannot drift apart unnoticed (a wrong count fails loudly on unpacking).
SQLite hands back plain ints for booleans and plain strings for the ``Literal`` fields; the
converters turn them into what :mod:`shoal.store.records` promises (the schema's CHECKs
guarantee the words are valid).
"""

from __future__ import annotations

from typing import Any, cast

from shoal.store.records import (
    InstanceKind,
    InstanceRecord,
    InstanceState,
    InvocationRecord,
    InvocationStatus,
    JobRun,
    JobTrigger,
    Message,
    Revision,
    RuntimeName,
    Schedule,
    Topic,
)

Row = tuple[Any, ...]


def _real(value: Any) -> float:
    """A REAL column as a float: SQLite stores whole REALs as integers and may return them so."""
    return float(value)


def _opt_real(value: Any) -> float | None:
    return None if value is None else float(value)


REVISION_COLUMNS = "id, created_at, manifest_hash, manifest_json, source"
INSTANCE_COLUMNS = (
    "kind, name, ordinal, runtime, state, updated_at, revision_id, ready, pid, pid_start_time,"
    " port, restarts, started_at, stopped_at, exit_code, stop_reason, runtime_ref, spec_hash"
)
INVOCATION_COLUMNS = (
    "request_id, function, ordinal, started_at, duration_ms, billed_ms, max_memory_bytes,"
    " cold, status, init_duration_ms, error_type"
)
TOPIC_COLUMNS = "name, retention_s"
MESSAGE_COLUMNS = (
    "id, topic, payload, created_at, visible_at, attempts, lease_until, acked_at,"
    " dead_letter_of, last_error"
)
SCHEDULE_COLUMNS = "name, expression, last_fire_at, next_fire_at"
JOB_RUN_COLUMNS = "id, job, started_at, finished_at, exit_code, trigger, reason"


def revision(row: Row) -> Revision:
    id_, created_at, manifest_hash, manifest_json, source = row
    return Revision(
        id=id_,
        created_at=_real(created_at),
        manifest_hash=manifest_hash,
        manifest_json=manifest_json,
        source=source,
    )


def instance(row: Row) -> InstanceRecord:
    (
        kind,
        name,
        ordinal,
        runtime,
        state,
        updated_at,
        revision_id,
        ready,
        pid,
        pid_start_time,
        port,
        restarts,
        started_at,
        stopped_at,
        exit_code,
        stop_reason,
        runtime_ref,
        spec_hash,
    ) = row
    return InstanceRecord(
        kind=cast(InstanceKind, kind),
        name=name,
        ordinal=ordinal,
        runtime=cast(RuntimeName, runtime),
        state=cast(InstanceState, state),
        updated_at=_real(updated_at),
        revision_id=revision_id,
        ready=bool(ready),
        pid=pid,
        pid_start_time=_opt_real(pid_start_time),
        port=port,
        restarts=restarts,
        started_at=_opt_real(started_at),
        stopped_at=_opt_real(stopped_at),
        exit_code=exit_code,
        stop_reason=stop_reason,
        runtime_ref=runtime_ref,
        spec_hash=spec_hash,
    )


def instance_params(record: InstanceRecord) -> dict[str, object]:
    """Named parameters for the instance upsert (booleans as 0/1)."""
    return {
        "kind": record.kind,
        "name": record.name,
        "ordinal": record.ordinal,
        "runtime": record.runtime,
        "state": record.state,
        "updated_at": record.updated_at,
        "revision_id": record.revision_id,
        "ready": int(record.ready),
        "pid": record.pid,
        "pid_start_time": record.pid_start_time,
        "port": record.port,
        "restarts": record.restarts,
        "started_at": record.started_at,
        "stopped_at": record.stopped_at,
        "exit_code": record.exit_code,
        "stop_reason": record.stop_reason,
        "runtime_ref": record.runtime_ref,
        "spec_hash": record.spec_hash,
    }


def invocation(row: Row) -> InvocationRecord:
    (
        request_id,
        function,
        ordinal,
        started_at,
        duration_ms,
        billed_ms,
        max_memory_bytes,
        cold,
        status,
        init_duration_ms,
        error_type,
    ) = row
    return InvocationRecord(
        request_id=request_id,
        function=function,
        ordinal=ordinal,
        started_at=_real(started_at),
        duration_ms=_real(duration_ms),
        billed_ms=billed_ms,
        max_memory_bytes=max_memory_bytes,
        cold=bool(cold),
        status=cast(InvocationStatus, status),
        init_duration_ms=_opt_real(init_duration_ms),
        error_type=error_type,
    )


def invocation_params(record: InvocationRecord) -> dict[str, object]:
    """Named parameters for inserting an invocation (booleans as 0/1)."""
    return {
        "request_id": record.request_id,
        "function": record.function,
        "ordinal": record.ordinal,
        "started_at": record.started_at,
        "duration_ms": record.duration_ms,
        "billed_ms": record.billed_ms,
        "max_memory_bytes": record.max_memory_bytes,
        "cold": int(record.cold),
        "status": record.status,
        "init_duration_ms": record.init_duration_ms,
        "error_type": record.error_type,
    }


def topic(row: Row) -> Topic:
    name, retention_s = row
    return Topic(name=name, retention_s=_real(retention_s))


def message(row: Row) -> Message:
    (
        id_,
        topic_name,
        payload,
        created_at,
        visible_at,
        attempts,
        lease_until,
        acked_at,
        dead_letter_of,
        last_error,
    ) = row
    return Message(
        id=id_,
        topic=topic_name,
        payload_json=payload,
        created_at=_real(created_at),
        visible_at=_real(visible_at),
        attempts=attempts,
        lease_until=_opt_real(lease_until),
        acked_at=_opt_real(acked_at),
        dead_letter_of=dead_letter_of,
        last_error=last_error,
    )


def schedule(row: Row) -> Schedule:
    name, expression, last_fire_at, next_fire_at = row
    return Schedule(
        name=name,
        expression=expression,
        last_fire_at=_opt_real(last_fire_at),
        next_fire_at=_opt_real(next_fire_at),
    )


def job_run(row: Row) -> JobRun:
    id_, job, started_at, finished_at, exit_code, trigger, reason = row
    return JobRun(
        id=id_,
        job=job,
        started_at=_real(started_at),
        finished_at=_opt_real(finished_at),
        exit_code=exit_code,
        trigger=cast(JobTrigger, trigger),
        reason=reason,
    )
