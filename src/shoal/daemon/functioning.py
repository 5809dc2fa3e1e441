"""The daemon's functions: one forkserver, a pool per function, and the doors into them.

gateway  ──FunctionRequest──▶ hook() ──API GW v2 event──▶ pool.invoke ──▶ HTTP response
API/CLI  ──invoke(name, event)──────────────────────────▶ pool.invoke ──▶ result + REPORT
every invocation ──▶ the function's log (REPORT line) and the store (invocation record), each in
                     batches: one write per REPORT_EVERY, one transaction per FLUSH_EVERY
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any, Literal

from shoal.api.models import InstanceRow
from shoal.errors import UnknownName
from shoal.functions import Forkserver, FunctionPool, FunctionSpec, InvocationResult, shapes
from shoal.functions.metrics import prometheus_text
from shoal.gateway.invoking import FunctionRequest, FunctionResponse
from shoal.logs import LogStore
from shoal.manifest import Project
from shoal.runtimes.sandbox import Sandbox
from shoal.store import InvocationRecord, Store

log = logging.getLogger(__name__)

FLUSH_EVERY = 0.2
"""Seconds an invocation record may wait in memory before it is written to the store. Writing
each on its own costs a disk flush (synchronous=FULL), about 2 ms here: more than the
invocation. A crash of the daemon loses at most this much of the history."""
FLUSH_AT = 1000
"""Records buffered before a write is started without waiting for the timer."""
REPORT_EVERY = 0.01
"""Seconds a REPORT line may wait before it is written to its function's log: a burst of
invocations costs one write per function, not one per invocation (as the gateway's access log)."""


class Recorder:
    """Invocation records and REPORT lines, written in batches (see :data:`FLUSH_EVERY`,
    :data:`REPORT_EVERY`)."""

    def __init__(self, store: Store, logs: LogStore) -> None:
        self.store = store
        self.logs = logs
        self._pending: list[InvocationRecord] = []
        self._timer: asyncio.TimerHandle | None = None
        self._reports: dict[str, list[str]] = {}
        self._report_timer: asyncio.TimerHandle | None = None

    def add(self, result: InvocationResult) -> None:
        lines = self._reports.setdefault(result.function, [])
        lines.append(result.report_line())
        loop = asyncio.get_running_loop()
        if self._report_timer is None:
            self._report_timer = loop.call_later(REPORT_EVERY, self.flush_reports)
        self._pending.append(result.record())
        if len(self._pending) >= FLUSH_AT:
            self.flush_records()
        elif self._timer is None:
            self._timer = loop.call_later(FLUSH_EVERY, self.flush_records)

    def flush(self) -> None:
        self.flush_reports()
        self.flush_records()

    def flush_reports(self) -> None:
        if self._report_timer is not None:
            self._report_timer.cancel()
            self._report_timer = None
        reports, self._reports = self._reports, {}
        for function, lines in reports.items():
            self.logs.append(function, "\n".join(lines))

    def flush_records(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            self.store.record_invocations(batch)
        except Exception:  # a full disk must not take the functions down with it
            log.exception("could not record %d invocations", len(batch))


class Functions:
    """Every function of the manifest, ready to be invoked."""

    def __init__(self, project: Project, store: Store, logs: LogStore) -> None:
        self.project = project
        self.store = store
        self.logs = logs
        self.forkserver = Forkserver(log_path=logs.raw_path("functions"))
        self.sandbox = Sandbox.detect()
        self.pools: dict[str, FunctionPool] = {}
        self.recorder = Recorder(store, logs)
        self.extra_env: dict[str, str] = {}  # set by the daemon before start()

    async def start(self) -> None:
        if not self.project.manifest.functions:
            return
        self.logs.register("functions", self.logs.raw_path("functions"))
        await self.forkserver.start()
        for name, function in self.project.manifest.functions.items():
            self.logs.register(name, self.logs.raw_path(name))
            pool = FunctionPool(
                self._with_env(FunctionSpec.from_manifest(name, function, self.project.root)),
                forkserver=self.forkserver,
                sandbox=self.sandbox,
                app=self.project.manifest.name,
                log_path=self.logs.raw_path(name),
                on_invocation=self._recorded,
                on_log=self._logger(name),
            )
            await pool.start()
            self.pools[name] = pool

    def _with_env(self, spec: FunctionSpec) -> FunctionSpec:
        """The spec with :attr:`extra_env` (the daemon's API, for ``shoal.events.publish``)
        under the manifest's own ``env``."""
        if not self.extra_env:
            return spec
        return dataclasses.replace(spec, env={**self.extra_env, **spec.env})

    async def stop(self) -> None:
        for pool in self.pools.values():
            await pool.stop()
        self.pools.clear()
        self.recorder.flush()
        if self.project.manifest.functions:
            await self.forkserver.stop()

    def _logger(self, name: str) -> Callable[[str], None]:
        def write(text: str) -> None:
            self.logs.append(name, text)

        return write

    def _recorded(self, result: InvocationResult) -> None:
        self.recorder.add(result)

    def pool(self, name: str) -> FunctionPool:
        pool = self.pools.get(name)
        if pool is None:
            known = ", ".join(sorted(self.pools)) or "none"
            raise UnknownName(f"no function named {name!r} (functions: {known})")
        return pool

    async def invoke(self, name: str, event: Any) -> InvocationResult:
        return await self.pool(name).invoke(event)

    async def hook(self, request: FunctionRequest) -> FunctionResponse:
        """An HTTP trigger: the API Gateway v2 event in, its response mapping out."""
        pool = self.pools.get(request.function)
        if pool is None:
            answer = shapes.gateway_error(404, "Not Found")
        else:
            event = shapes.http_event(
                method=request.method,
                raw_path=request.path,
                raw_query=request.query,
                headers=request.headers,
                body=request.body,
                source_ip=request.client_ip,
                request_id=request.request_id,
                now=time.time(),
            )
            result = await pool.invoke(event, request_id=request.request_id)
            if result.error is None:
                answer = shapes.http_response(result.payload)
            else:
                message = {429: "Too Many Requests", 504: "Endpoint request timed out"}.get(
                    result.error.http_status, "Internal Server Error"
                )
                answer = shapes.gateway_error(result.error.http_status, message)
        return FunctionResponse(answer.status, tuple(answer.headers), answer.body)

    def metrics(self) -> str:
        """Prometheus text for every pool (counters since the daemon started, gauges now)."""
        return prometheus_text(pool.metrics() for pool in self.pools.values())

    def rows(self) -> list[InstanceRow]:
        """Templates and instances, as ``shoal ps`` rows."""
        rows: list[InstanceRow] = []
        for name, pool in sorted(self.pools.items()):
            snap = pool.snapshot()
            for template in snap.templates:
                rows.append(
                    _row(
                        "template",
                        name,
                        template.generation,
                        template.state,
                        ready=template.pid is not None,
                        pid=template.pid,
                        reason=template.error,
                    )
                )
                if template.standby_pid is not None:
                    rows.append(
                        _row(
                            "standby",
                            name,
                            template.generation,
                            "standby",
                            ready=False,
                            pid=template.standby_pid,
                            reason="forked ahead of the next scale-up; runs nothing until then",
                        )
                    )
            for inst in snap.instances:
                rows.append(
                    _row(
                        "function",
                        name,
                        inst.ordinal,
                        inst.state,
                        ready=inst.state in ("busy", "idle"),
                        pid=inst.pid,
                        reason=f"{inst.invocations} invocations",
                    )
                )
        return rows


def _row(
    kind: Literal["template", "standby", "function"],
    name: str,
    instance: int,
    state: str,
    *,
    ready: bool,
    pid: int | None,
    reason: str | None,
) -> InstanceRow:
    """A ``shoal ps`` row of a function's process: no port, no restarts, no uptime."""
    return InstanceRow(
        kind=kind,
        name=name,
        instance=instance,
        runtime="function",
        state=state,
        ready=ready,
        pid=pid,
        port=None,
        restarts=0,
        uptime=None,
        reason=reason,
    )


__all__ = ["Functions"]
