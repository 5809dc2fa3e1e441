"""The values the state store hands out and takes in: frozen dataclasses, one per table.

The store never returns SQLite rows; callers get these records and pass them back. Times are
epoch seconds (floats) supplied by the caller, durations of invocations are milliseconds, sizes
are bytes. The string fields that take one of a fixed set of words are typed as ``Literal``
aliases (the database checks them too); the tuples beside each alias list the same words for code
that needs to iterate or validate them at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

InstanceKind = Literal["service", "function", "job", "template"]
RuntimeName = Literal["process", "container", "vm", "function"]
# supervisord's words (STYLE.md habit 8); readiness is a separate flag.
InstanceState = Literal["starting", "running", "backoff", "stopping", "exited", "fatal"]
InvocationStatus = Literal["ok", "error", "timeout", "oom", "crash", "throttled"]
JobTrigger = Literal["schedule", "manual", "missed"]

INSTANCE_KINDS: tuple[InstanceKind, ...] = get_args(InstanceKind)
RUNTIME_NAMES: tuple[RuntimeName, ...] = get_args(RuntimeName)
INSTANCE_STATES: tuple[InstanceState, ...] = get_args(InstanceState)
INVOCATION_STATUSES: tuple[InvocationStatus, ...] = get_args(InvocationStatus)
JOB_TRIGGERS: tuple[JobTrigger, ...] = get_args(JobTrigger)


@dataclass(frozen=True, slots=True, kw_only=True)
class Revision:
    """One applied manifest: its canonical JSON, a hash of it, and the file it came from."""

    id: int
    created_at: float
    manifest_hash: str
    manifest_json: str
    source: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceRecord:
    """One known instance of a service, function, job or function template.

    ``(kind, name, ordinal)`` identifies it. ``pid`` with ``pid_start_time`` lets a restarted
    daemon tell its own child from an unrelated process that got the same pid; ``runtime_ref``
    is what the runtime needs to find it again (container id, VM pid file).
    """

    kind: InstanceKind
    name: str
    ordinal: int
    runtime: RuntimeName
    state: InstanceState
    updated_at: float
    revision_id: int | None = None
    ready: bool = False
    pid: int | None = None
    pid_start_time: float | None = None
    port: int | None = None
    restarts: int = 0
    started_at: float | None = None
    stopped_at: float | None = None
    exit_code: int | None = None
    stop_reason: str | None = None
    runtime_ref: str | None = None
    spec_hash: str | None = None  # the settings it was started with (a change means a roll)


@dataclass(frozen=True, slots=True, kw_only=True)
class InvocationRecord:
    """One function invocation, as Lambda's ``REPORT`` line describes it.

    ``ordinal`` is the instance that ran it (``None`` when it never reached one, as when
    throttled); ``init_duration_ms`` is set on cold starts only.
    """

    request_id: str
    function: str
    ordinal: int | None
    started_at: float
    duration_ms: float
    billed_ms: int
    max_memory_bytes: int | None
    cold: bool
    status: InvocationStatus
    init_duration_ms: float | None = None
    error_type: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Topic:
    """A durable topic; messages older than ``retention_s`` seconds are purged."""

    name: str
    retention_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One message on a topic.

    It is *visible* once ``visible_at <= now``, *leased* while ``lease_until > now`` and done
    once ``acked_at`` is set. ``attempts`` counts leases. A message moved to a dead-letter topic
    carries the topic it came from in ``dead_letter_of`` and the last failure in ``last_error``.
    """

    id: int
    topic: str
    payload_json: str
    created_at: float
    visible_at: float
    attempts: int
    lease_until: float | None
    acked_at: float | None
    dead_letter_of: str | None
    last_error: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """The last and next firing of a schedule trigger (of a function or a job)."""

    name: str
    expression: str
    last_fire_at: float | None
    next_fire_at: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRun:
    """One run of a job; ``finished_at`` is ``None`` while it runs."""

    id: int
    job: str
    started_at: float
    finished_at: float | None
    exit_code: int | None
    trigger: JobTrigger
    reason: str | None


__all__ = [
    "INSTANCE_KINDS",
    "INSTANCE_STATES",
    "INVOCATION_STATUSES",
    "JOB_TRIGGERS",
    "RUNTIME_NAMES",
    "InstanceKind",
    "InstanceRecord",
    "InstanceState",
    "InvocationRecord",
    "InvocationStatus",
    "JobRun",
    "JobTrigger",
    "Message",
    "Revision",
    "RuntimeName",
    "Schedule",
    "Topic",
]
