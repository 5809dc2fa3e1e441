"""The state store: everything shoal must remember across a restart, in one SQLite file.

It sits below the control-plane parts (supervisor, functions, scheduler, events, api) and above
the manifest (DESIGN.md §3-4): ``.shoal/state.db`` beside the manifest holds the applied revisions,
the known instances, function invocations, durable topics and their messages, schedules and job
runs. A write is acknowledged only once it is on disk.

    from shoal.store import Store, default_db_path

    with Store.open(default_db_path(manifest_path)) as store:
        store.ensure_topic("orders.created", retention_s=7 * 86400)
        message_id = store.publish("orders.created", '{"id": 1}', now=time.time())

Modules: ``paths`` (where the file lives), ``records`` (the dataclasses handed in and out),
``migrations`` (the schema, as ordered forward steps), ``database`` (the connection: opening,
settings, transactions), ``rows`` (rows to records), ``queues`` (the event bus's batch, due-time,
settle, dead-letter and redrive queries), ``store`` (the typed API).
"""

from __future__ import annotations

from shoal.store.database import DEFAULT_BUSY_TIMEOUT_S
from shoal.store.migrations import SCHEMA_VERSION
from shoal.store.paths import default_db_path, state_dir
from shoal.store.records import (
    INSTANCE_KINDS,
    INSTANCE_STATES,
    INVOCATION_STATUSES,
    JOB_TRIGGERS,
    RUNTIME_NAMES,
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
from shoal.store.store import Store

__all__ = [
    "DEFAULT_BUSY_TIMEOUT_S",
    "INSTANCE_KINDS",
    "INSTANCE_STATES",
    "INVOCATION_STATUSES",
    "JOB_TRIGGERS",
    "RUNTIME_NAMES",
    "SCHEMA_VERSION",
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
    "Store",
    "Topic",
    "default_db_path",
    "state_dir",
]
