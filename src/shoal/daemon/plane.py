"""The daemon's :class:`~shoal.api.control.ControlPlane`: the supervisor and the log store,
seen as the API's rows.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from shoal import __version__
from shoal.api.models import (
    DeadLetter,
    InstanceRow,
    InvokeResult,
    JobRow,
    JobRunRow,
    LogLine,
    RunStarted,
    ServiceStatus,
    Status,
    TopicRow,
)
from shoal.daemon.eventing import Events
from shoal.daemon.functioning import Functions
from shoal.daemon.scheduling import Scheduling
from shoal.errors import ShuttingDown, UnknownName
from shoal.logs import LogStore
from shoal.manifest import Project, load_manifest
from shoal.supervisor.reconciling import Supervisor


def _matches(source: str, wanted: list[str] | None) -> bool:
    """``catalog`` matches every instance of catalog; ``catalog#2`` just that one."""
    if not wanted:
        return True
    return source in wanted or source.split("#", 1)[0] in wanted


class Plane:
    """What the API may ask of, and tell, one running daemon."""

    def __init__(
        self,
        manifest_file: Path,
        supervisor: Supervisor,
        logs: LogStore,
        *,
        on_shutdown: Callable[[], None],
        on_apply: Callable[[Project], None] = lambda project: None,
        on_scale: Callable[[str, int], str | None] = lambda name, replicas: None,
        metrics: Callable[[], str] = lambda: "",
        functions: Functions | None = None,
        events: Events | None = None,
        scheduling: Scheduling | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.manifest_file = manifest_file
        self.supervisor = supervisor
        self.logs = logs
        self._on_shutdown = on_shutdown
        self._on_apply = on_apply
        self._on_scale = on_scale
        self._metrics = metrics
        self.functions = functions
        self.events = events
        self.scheduling = scheduling
        self._clock = clock
        self.started_at = clock()
        self.closing = False  # set once shutdown starts: changes are refused from then on

    def _open_for_changes(self) -> None:
        if self.closing:
            raise ShuttingDown("the daemon is shutting down; no more changes")

    def status(self) -> Status:
        sup = self.supervisor
        services = []
        for name, desired in sorted(sup.desired.items()):
            ready = sum(
                1
                for i in sup.instances.values()
                if i.name == name and i.ready and not i.stop_requested
            )
            services.append(
                ServiceStatus(
                    name=name,
                    desired=desired.replicas,
                    ready=ready,
                    revision=desired.revision,
                    waiting=sup.waiting.get(name),
                )
            )
        return Status(
            app=sup.project.manifest.name,
            manifest=str(self.manifest_file),
            version=__version__,
            pid=os.getpid(),
            started_at=self.started_at,
            services=services,
        )

    def instances(self) -> list[InstanceRow]:
        now = self._clock()
        rows = []
        for inst in self.supervisor.snapshot():
            live = inst.state in ("starting", "running", "stopping")
            reason = inst.stop_reason if not live else self.supervisor.waiting.get(inst.name)
            rows.append(
                InstanceRow(
                    kind="job" if inst.name in self.supervisor.project.manifest.jobs else "service",
                    name=inst.name,
                    instance=inst.ordinal,
                    runtime=inst.runtime,
                    state=inst.state,
                    ready=inst.ready,
                    pid=inst.pid,
                    port=inst.host_port,
                    restarts=inst.restarts,
                    uptime=(now - inst.started_at) if live and inst.started_at else None,
                    reason=reason,
                )
            )
        if self.functions is not None:
            rows += self.functions.rows()
        if self.scheduling is not None:
            rows += self.scheduling.rows(now)
        return rows

    async def invoke(self, name: str, event: Any) -> InvokeResult:
        self._open_for_changes()
        if self.functions is None:
            raise UnknownName(f"no function named {name!r}")
        result = await self.functions.invoke(name, event)
        return InvokeResult(
            function=name,
            request_id=result.request_id,
            ok=result.ok,
            status=result.status,
            payload=json.loads(result.payload) if result.payload else None,
            report=result.report_line(),
        )

    def _events(self) -> Events:
        if self.events is None:
            raise UnknownName("this daemon runs no event bus")
        return self.events

    def _scheduling(self) -> Scheduling:
        if self.scheduling is None:
            raise UnknownName("this daemon runs no scheduler")
        return self.scheduling

    async def invoke_async(self, name: str, event: Any) -> int:
        self._open_for_changes()
        return await self._events().invoke_async(name, event)

    async def publish(self, topic: str, payload: bytes) -> list[int]:
        self._open_for_changes()
        return await self._events().publish(topic, payload)

    async def publish_batch(self, topic: str, payload: bytes) -> list[int]:
        self._open_for_changes()
        return await self._events().publish_batch(topic, payload)

    async def topics(self) -> list[TopicRow]:
        return await self._events().topics()

    async def dead_letters(self, topic: str) -> list[DeadLetter]:
        return await self._events().dead_letters(topic)

    async def redrive(self, topic: str) -> int:
        self._open_for_changes()
        return await self._events().redrive(topic)

    def jobs(self) -> list[JobRow]:
        return self._scheduling().jobs()

    def job_runs(self, name: str, limit: int) -> list[JobRunRow]:
        return self._scheduling().job_runs(name, limit)

    def run_job(self, name: str) -> RunStarted:
        self._open_for_changes()
        return self._scheduling().run_job(name)

    def read_logs(
        self, sources: list[str] | None, since: float | None, tail: int | None
    ) -> list[LogLine]:
        records = [r for r in self.logs.read(None, since, None) if _matches(r.source, sources)]
        if tail is not None:
            records = records[-tail:] if tail > 0 else []
        return [LogLine(source=r.source, time=r.time, text=r.text) for r in records]

    async def follow_logs(self, sources: list[str] | None) -> AsyncIterator[LogLine]:
        async for record in self.logs.subscribe(None):
            if _matches(record.source, sources):
                yield LogLine(source=record.source, time=record.time, text=record.text)

    def scale(self, name: str, replicas: int) -> str | None:
        """Set ``name``'s replicas; a note for the user when autoscaling is involved."""
        self._open_for_changes()
        self.supervisor.scale(name, replicas)
        return self._on_scale(name, replicas)

    def restart(self, name: str) -> None:
        self._open_for_changes()
        self.supervisor.restart(name)

    def apply(self) -> dict[str, str]:
        self._open_for_changes()
        project = load_manifest(self.manifest_file)
        changes = self.supervisor.apply(project)
        self._on_apply(project)
        return changes

    def metrics(self) -> str:
        """Prometheus text: the gateway's per-route figures, the instances' states, the
        functions' pools."""
        lines = [
            "# HELP shoal_instances Instances by service and state.",
            "# TYPE shoal_instances gauge",
        ]
        counts: dict[tuple[str, str], int] = {}
        restarts: dict[str, int] = {}
        for inst in self.supervisor.snapshot():
            counts[(inst.name, inst.state)] = counts.get((inst.name, inst.state), 0) + 1
            restarts[inst.name] = restarts.get(inst.name, 0) + inst.restarts
        for (name, state), count in sorted(counts.items()):
            lines.append(f'shoal_instances{{service="{name}",state="{state}"}} {count}')
        lines += [
            "# HELP shoal_restarts Consecutive restarts, summed per service.",
            "# TYPE shoal_restarts gauge",
        ]
        lines += [f'shoal_restarts{{service="{n}"}} {c}' for n, c in sorted(restarts.items())]
        functions = self.functions.metrics() if self.functions is not None else ""
        if self.events is not None:
            functions += self.events.metrics() + self.events.queue_metrics()
        if self.scheduling is not None:
            functions += self.scheduling.metrics()
        return self._metrics() + "\n".join(lines) + "\n" + functions

    def request_shutdown(self) -> None:
        asyncio.get_running_loop().call_soon(self._on_shutdown)


__all__ = ["Plane"]
