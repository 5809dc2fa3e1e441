"""Instances left running by a daemon that died: found from the store, stopped by ``shoal down``.

Each is identified by pid *and* kernel start time (a reused pid is never touched), then stopped
like any instance: SIGTERM to its group, SIGKILL after the grace period.
"""

from __future__ import annotations

from pathlib import Path

from shoal.runtimes.base import Handle, InstanceSpec
from shoal.runtimes.registry import load_runtime
from shoal.store import Store

LIVE = ("starting", "running", "stopping")


async def stop_leftovers(state: Path, grace: float = 10.0) -> int:
    """Stop every live instance the store knows of; return how many were still running."""
    db = state / "state.db"
    if not db.exists():
        return 0
    stopped = 0
    with Store.open(db) as store:
        for record in store.list_instances():
            if record.state not in LIVE or record.pid is None:
                continue
            runtime = load_runtime(record.runtime)
            spec = InstanceSpec(
                app="",
                kind="service",
                name=record.name,
                ordinal=record.ordinal,
                revision=record.spec_hash or "",
                command=None,
                log_path=state / "logs" / "orphan.log",
            )
            handle = Handle(
                spec=spec,
                pid=record.pid,
                pid_start_time=record.pid_start_time,
                host_port=record.port,
                runtime_ref=record.runtime_ref,
            )
            adopted = await runtime.adopt(handle)
            if adopted is not None:
                await runtime.stop(adopted, grace)
                stopped += 1
            store.delete_instance(record.kind, record.name, record.ordinal)
            await runtime.close()
    return stopped


__all__ = ["stop_leftovers"]
