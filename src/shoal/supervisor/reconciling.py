"""The reconcile loop: the thin executor around the pure planner.

    manifest -> desired.desired_services ─┐
    runtimes + probes -> Instance table ──┴─> planning.plan(...) -> actions -> runtimes

One named task runs the loop; it sleeps until something changes (an instance exits, a probe
flips, ``scale``/``restart``/``apply``/``shutdown`` is called) or the plan's wake-up time comes.
Each Start and Stop runs in its own named task so a slow stop never delays a restart elsewhere.
Every state change is written to the store before it is shown, so a restarted daemon finds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field

from shoal.errors import ShoalError, UnknownName
from shoal.logs import LogStore
from shoal.manifest import Project, Service
from shoal.runtimes.base import Exit, Handle, Runtime
from shoal.store import InstanceRecord, Store, state_dir
from shoal.supervisor.desired import desired_services, instance_spec, service_of
from shoal.supervisor.model import (
    LIVE_STATES,
    Action,
    Backoff,
    DesiredService,
    GiveUp,
    ObservedInstance,
    Start,
    State,
    Stop,
)
from shoal.supervisor.planning import plan
from shoal.supervisor.ports import PortAllocator
from shoal.supervisor.probing import Prober

log = logging.getLogger(__name__)

DELIBERATE_STOPS = frozenset({"shutdown", "removed"})
"""Stop reasons of instances a daemon ended on purpose: the next start forgets them."""

Drainer = Callable[[str, int, float], Awaitable[None]]
"""Called before an instance is stopped: take it out of rotation and wait for its requests."""

Listener = Callable[[], None]
"""Called after any change of instance state or readiness (cheap; no arguments)."""


@dataclass(eq=False)
class Instance:
    """One instance as the supervisor tracks it (mutable; the planner sees a frozen copy)."""

    name: str
    ordinal: int
    revision: str
    runtime: str
    state: State = "starting"
    ready: bool = False
    unhealthy: bool = False
    restarts: int = 0
    started_at: float | None = None
    exited_at: float | None = None
    exit_code: int | None = None
    backoff_until: float | None = None
    stop_requested: bool = False
    stop_reason: str | None = None
    restart_after_stop: bool = False
    given_up: bool = False
    host_port: int | None = None
    handle: Handle | None = None
    prober: Prober | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def label(self) -> str:
        return f"{self.name}#{self.ordinal}"

    @property
    def pid(self) -> int | None:
        return self.handle.pid if self.handle is not None else None

    def observed(self) -> ObservedInstance:
        return ObservedInstance(
            name=self.name,
            ordinal=self.ordinal,
            revision=self.revision,
            state=self.state,
            ready=self.ready,
            unhealthy=self.unhealthy,
            restarts=self.restarts,
            started_at=self.started_at,
            exited_at=self.exited_at,
            exit_code=self.exit_code,
            backoff_until=self.backoff_until,
            stop_requested=self.stop_requested,
            stop_reason=self.stop_reason,
            restart_requested=self.restart_after_stop,
            given_up=self.given_up,
        )


async def _no_drain(name: str, ordinal: int, timeout: float) -> None:
    return None


class Supervisor:
    """Keeps the services of one project running as the manifest says."""

    def __init__(
        self,
        project: Project,
        store: Store,
        logs: LogStore,
        runtimes: Callable[[str], Runtime],
        *,
        clock: Callable[[], float] = time.time,
        drainer: Drainer = _no_drain,
    ) -> None:
        self.project = project
        self.store = store
        self.logs = logs
        self._runtime_of = runtimes
        self._clock = clock
        self._drainer = drainer
        self._ports = PortAllocator()
        self._state = state_dir(project.file)
        # manual scales survive a daemon crash (acknowledged state), not a `shoal down`
        self._scale = {k: v for k, v in store.scales().items() if k in project.manifest.services}
        for name, replicas in sorted(self._scale.items()):
            logs.append("shoal", f"kept from before the daemon stopped: scale {name}={replicas}")
        self._generations: dict[str, int] = {}
        self.desired: dict[str, DesiredService] = desired_services(project, self._scale)
        self.instances: dict[tuple[str, int], Instance] = {}
        self.waiting: dict[str, str] = {}
        self._listeners: list[Listener] = []
        self._dirty = asyncio.Event()
        self._settled = asyncio.Event()  # set when nothing is live during shutdown
        self._shutting_down = False
        self._loop_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Adopt what a previous daemon left, then start reconciling."""
        await self._adopt()
        self._loop_task = asyncio.create_task(self._run(), name="supervisor:reconcile")
        self._loop_task.add_done_callback(_report_end)
        self._changed()

    async def shutdown(self, timeout: float | None = None) -> None:
        """Stop every instance in reverse dependency order, then the loop."""
        self._shutting_down = True
        if self._scale:  # a deliberate stop: the next start follows the manifest again
            try:
                self.store.set_scales({}, self._clock())
            except ShoalError as exc:
                self.logs.append("shoal", f"manual scales not cleared ({exc}): kept next start")
        self._changed()
        try:
            await asyncio.wait_for(self._settled.wait(), timeout)
        finally:
            if self._loop_task is not None:
                self._loop_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._loop_task
            for inst in list(self.instances.values()):
                await self._stop_prober(inst)
                for task in list(inst.tasks):
                    task.cancel()
                await asyncio.gather(*inst.tasks, return_exceptions=True)

    async def kill_all(self) -> None:
        """SIGKILL every instance's process group at once (a forced shutdown)."""
        for inst in list(self.instances.values()):
            if inst.handle is not None:
                runtime = self._runtime_of(inst.runtime)
                with contextlib.suppress(ShoalError, OSError):
                    await runtime.signal(inst.handle, signal.SIGKILL)

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    # ------------------------------------------------------------ commands

    def scale(self, name: str, replicas: int) -> None:
        self._require(name)
        self.store.set_scales({**self._scale, name: replicas}, self._clock())  # durable first
        self._scale[name] = replicas
        self._refresh_desired()

    def restart(self, name: str) -> None:
        """Roll every instance of ``name`` (new ones ready before old ones stop)."""
        self._require(name)
        self._generations[name] = self._generations.get(name, 0) + 1
        self._refresh_desired()

    def apply(self, project: Project) -> dict[str, str]:
        """Switch to a new manifest; return what changes per service."""
        before = self.desired
        self.project = project
        kept = {k: v for k, v in self._scale.items() if k in project.manifest.services}
        if kept != self._scale:
            self.store.set_scales(kept, self._clock())
        self._scale = kept
        self._refresh_desired()
        changes: dict[str, str] = {}
        for name in sorted(set(before) | set(self.desired)):
            old, new = before.get(name), self.desired.get(name)
            if old is None:
                changes[name] = "added"
            elif new is None:
                changes[name] = "removed"
            elif old.revision != new.revision:
                changes[name] = "rolling update"
            elif old != new:
                changes[name] = "updated in place"
        return changes

    def _require(self, name: str) -> None:
        if name not in self.desired:
            known = ", ".join(sorted(self.desired)) or "none"
            raise UnknownName(f"no service named {name!r} (services: {known})")

    def _refresh_desired(self) -> None:
        self.desired = desired_services(self.project, self._scale, self._generations)
        self._changed()

    # ------------------------------------------------------------ the loop

    def _changed(self) -> None:
        self._dirty.set()
        for listener in self._listeners:
            try:
                listener()
            except Exception:  # a broken listener never stops supervision
                log.exception("supervisor listener failed")

    async def _run(self) -> None:
        while True:
            self._dirty.clear()
            now = self._clock()
            desired = self.desired
            observed = [i.observed() for i in self.instances.values()]
            result = plan(desired, observed, now, shutting_down=self._shutting_down)
            self.waiting = dict(result.waiting)
            for action in result.actions:
                self._execute(action)
            if self._shutting_down and not any(
                i.state in LIVE_STATES or i.tasks for i in self.instances.values()
            ):
                self._settled.set()
            timeout = None if result.wake_at is None else max(0.0, result.wake_at - self._clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), timeout)

    def _execute(self, action: Action) -> None:
        if isinstance(action, Start):
            started = self._register_start(action)
            self._track(started, self._start(action), f"start:{started.label}")
            return
        inst = self.instances.get((action.name, action.ordinal))
        if inst is None:
            return
        if isinstance(action, Stop):
            if not inst.stop_requested:
                inst.stop_requested = True
                inst.stop_reason = action.reason
                inst.restart_after_stop = action.restart
                inst.ready = False
                self._track(inst, self._stop(inst, action.reason), f"stop:{inst.label}")
        elif isinstance(action, Backoff):
            inst.state, inst.backoff_until = "backoff", action.until
            self.logs.append(inst.label, f"restart in {action.until - self._clock():.2f}s")
            self._save(inst)
        elif isinstance(action, GiveUp):
            inst.state, inst.stop_reason, inst.given_up = action.state, action.reason, True
            self.logs.append(inst.label, f"{action.state}: {action.reason}")
            self._save(inst)
        else:  # Forget
            del self.instances[(action.name, action.ordinal)]
            self._ports.release(inst.host_port)
            self.logs.unregister(inst.label)
            self.store.delete_instance("service", inst.name, inst.ordinal)

    def _track(self, inst: Instance, coro: Coroutine[object, object, None], name: str) -> None:
        """Run ``coro`` as a named task owned by ``inst``; re-plan when it ends."""
        task = asyncio.create_task(coro, name=name)
        inst.tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            inst.tasks.discard(t)
            _report_end(t)
            self._changed()

        task.add_done_callback(done)

    # ------------------------------------------------------------ executing

    def _register_start(self, action: Start) -> Instance:
        """Create or reset the instance record synchronously, so the next plan sees it live."""
        key = (action.name, action.ordinal)
        service = service_of(self.project, action.name)
        assert service is not None, action
        inst = self.instances.get(key) or Instance(
            name=action.name,
            ordinal=action.ordinal,
            revision=action.revision,
            runtime=service.runtime,
        )
        inst.revision, inst.runtime, inst.restarts = (
            action.revision,
            service.runtime,
            action.restarts,
        )
        inst.state, inst.ready, inst.unhealthy = "starting", False, False
        inst.exit_code = inst.exited_at = inst.backoff_until = None
        inst.stop_requested, inst.stop_reason, inst.restart_after_stop = False, None, False
        inst.given_up = False
        inst.started_at = self._clock()
        self.instances[key] = inst
        return inst

    async def _start(self, action: Start) -> None:
        inst = self.instances[(action.name, action.ordinal)]
        service = service_of(self.project, inst.name)
        assert service is not None
        runtime = self._runtime_of(service.runtime)
        if service.runtime == "process" and service.port is not None:
            inst.host_port = service.port
        else:
            self._ports.release(inst.host_port)
            inst.host_port = self._ports.allocate(prefer=inst.host_port)
        spec = instance_spec(
            self.project,
            inst.name,
            service,
            ordinal=inst.ordinal,
            revision=inst.revision,
            host_port=inst.host_port,
            log_path=self.logs.raw_path(inst.label),
            state=self._state,
        )
        self.logs.register(inst.label, spec.log_path)
        self._save(inst)
        try:
            handle = await runtime.start(spec)
        except ShoalError as exc:
            self.logs.append(inst.label, f"could not start: {exc}")
            self._ended(inst, Exit(code=None, reason=f"could not start: {exc}"))
            return
        inst.handle = handle
        inst.state = "running"
        reason = "" if not action.reason else f" ({action.reason})"
        self.logs.append(inst.label, f"started pid {handle.pid} port {inst.host_port}{reason}")
        self._watch(inst, runtime, service)

    def _watch(self, inst: Instance, runtime: Runtime, service: Service) -> None:
        """Follow a running instance: its exit, and its health."""
        assert inst.handle is not None
        if service.health is None:
            inst.ready = True
        else:
            inst.prober = Prober(
                service.health,
                host="127.0.0.1",
                port=inst.host_port,
                env=dict(inst.handle.spec.env),
                cwd=inst.handle.spec.workdir,
                on_change=lambda change: self._health_changed(inst, change),
                name=f"probe:{inst.label}",
            )
            inst.prober.start()
        self._save(inst)
        self._changed()
        self._track(inst, self._wait_exit(inst, runtime, inst.handle), f"wait:{inst.label}")

    async def _wait_exit(self, inst: Instance, runtime: Runtime, handle: Handle) -> None:
        exit_ = await runtime.wait(handle)
        if inst.handle is handle:
            self._ended(inst, exit_)

    def _health_changed(self, inst: Instance, change: object) -> None:
        ready = getattr(change, "ready", inst.ready)
        unhealthy = bool(getattr(change, "unhealthy", False))
        detail = str(getattr(change, "detail", ""))
        if inst.stop_requested or inst.state not in ("starting", "running"):
            return
        if ready != inst.ready:
            inst.ready = ready
            self.logs.append(inst.label, ("ready" if ready else "not ready") + f": {detail}")
        if unhealthy and not inst.unhealthy:
            inst.unhealthy = True
            self.logs.append(inst.label, f"unhealthy: {detail}")
        self._save(inst)
        self._changed()

    async def _stop(self, inst: Instance, reason: str) -> None:
        self._changed()  # out of rotation first
        drain = self._drain_of(inst.name)
        await self._drainer(inst.name, inst.ordinal, drain)
        handle = inst.handle
        if handle is None:
            return
        inst.state = "stopping"
        self._save(inst)
        self._changed()
        runtime = self._runtime_of(inst.runtime)
        self.logs.append(inst.label, f"stopping: {reason}")
        exit_ = await runtime.stop(handle, handle.spec.stop_grace)
        if inst.handle is handle:
            self._ended(inst, exit_)

    def _drain_of(self, name: str) -> float:
        service = service_of(self.project, name)
        return service.update.drain if service is not None else 0.0

    def _ended(self, inst: Instance, exit_: Exit) -> None:
        """An instance's run is over (exit, kill, failed start): record why, then re-plan."""
        inst.handle = None
        inst.ready = False
        inst.exited_at = self._clock()
        inst.exit_code = exit_.code
        inst.state = "exited"
        if inst.restart_after_stop:  # stopped because unhealthy: a failure, restarted by policy
            inst.stop_requested, inst.restart_after_stop, inst.exit_code = False, False, None
        elif not inst.stop_requested:
            inst.stop_reason = exit_.reason or "exited"
        self.logs.unregister(inst.label)  # its last output first, then why it ended
        self.logs.append(inst.label, exit_.reason or "exited")
        if inst.prober is not None:
            prober, inst.prober = inst.prober, None
            self._track(inst, prober.stop(), f"unprobe:{inst.label}")
        self._save(inst)
        self._changed()

    async def _stop_prober(self, inst: Instance) -> None:
        if inst.prober is not None:
            prober, inst.prober = inst.prober, None
            await prober.stop()

    # ------------------------------------------------------------ persistence

    def _save(self, inst: Instance) -> None:
        handle = inst.handle
        self.store.upsert_instance(
            InstanceRecord(
                kind="service",
                name=inst.name,
                ordinal=inst.ordinal,
                runtime="process" if inst.runtime == "process" else inst.runtime,  # type: ignore[arg-type]
                state=inst.state,
                updated_at=self._clock(),
                ready=inst.ready,
                pid=handle.pid if handle else None,
                pid_start_time=handle.pid_start_time if handle else None,
                port=inst.host_port,
                restarts=inst.restarts,
                started_at=inst.started_at,
                stopped_at=inst.exited_at,
                exit_code=inst.exit_code,
                stop_reason=inst.stop_reason,
                runtime_ref=handle.runtime_ref if handle else None,
                spec_hash=inst.revision,
            )
        )

    async def _adopt(self) -> None:
        """Find what a previous daemon left: adopt live instances, note the lost ones."""
        for record in self.store.list_instances(kind="service"):
            if record.state not in LIVE_STATES and record.stop_reason in DELIBERATE_STOPS:
                # stopped by `shoal down` (or removed): this start begins afresh, as the
                # manifest says; only what ended on its own before a crash stays settled
                self.store.delete_instance("service", record.name, record.ordinal)
                continue
            service = service_of(self.project, record.name)
            inst = Instance(
                name=record.name,
                ordinal=record.ordinal,
                revision=record.spec_hash or "",
                runtime=record.runtime,
                state=record.state,
                restarts=record.restarts,
                started_at=record.started_at,
                exited_at=record.stopped_at,
                exit_code=record.exit_code,
                stop_reason=record.stop_reason,
                host_port=record.port,
            )
            self.instances[(record.name, record.ordinal)] = inst
            if record.state == "backoff":
                inst.backoff_until = self._clock()  # restart now: the delay has passed
            inst.given_up = record.state in ("exited", "fatal")  # settled before the crash
            if record.state in LIVE_STATES and record.pid is None:
                await self._sweep(record.runtime, inst)
                continue
            if record.state not in LIVE_STATES or record.pid is None:
                continue
            runtime = self._runtime_of(record.runtime)
            spec = instance_spec(
                self.project,
                record.name,
                service or Service.model_validate({"command": ["true"]}),
                ordinal=record.ordinal,
                revision=inst.revision,
                host_port=record.port,
                log_path=self.logs.raw_path(inst.label),
            )
            candidate = Handle(
                spec=spec,
                pid=record.pid,
                pid_start_time=record.pid_start_time,
                host_port=record.port,
                runtime_ref=record.runtime_ref,
                started_at=record.started_at or 0.0,
            )
            adopted = await runtime.adopt(candidate)
            if adopted is None:
                self._ended(inst, Exit(code=None, reason="lost while shoal was down"))
                continue
            if record.port is not None:
                self._ports.claim(record.port)
            inst.handle = adopted
            inst.state = "running"
            self.logs.register(inst.label, spec.log_path)
            self.logs.append(inst.label, f"adopted pid {adopted.pid} after a daemon restart")
            if service is not None:
                self._watch(inst, runtime, service)
            else:
                self._save(inst)

    async def _sweep(self, runtime_name: str, inst: Instance) -> None:
        """The previous daemon died between starting ``inst`` and recording its pid: find it by
        the identity in its environment and kill it, so no orphan keeps its port."""
        sweep = getattr(self._runtime_of(runtime_name), "sweep", None)
        if sweep is not None:
            match = {
                "SHOAL_STATE": str(self._state),
                "SHOAL_SERVICE": inst.name,
                "SHOAL_INSTANCE": str(inst.ordinal),
            }
            await sweep(match)
        self._ended(inst, Exit(code=None, reason="lost while shoal was down (start not recorded)"))

    # ------------------------------------------------------------ views

    def snapshot(self) -> list[Instance]:
        return sorted(self.instances.values(), key=lambda i: (i.name, i.ordinal))

    def ready_endpoints(self, name: str) -> list[tuple[int, int]]:
        """(ordinal, host port) of every ready instance of ``name``: where traffic may go."""
        return [
            (i.ordinal, i.host_port)
            for i in self.snapshot()
            if i.name == name and i.ready and not i.stop_requested and i.host_port is not None
        ]


def _report_end(task: asyncio.Task[None]) -> None:
    """Log how a background task ended if it failed (habit 11: no silent task deaths)."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("task %s failed", task.get_name(), exc_info=exc)


__all__ = ["Drainer", "Instance", "Supervisor"]
