"""The daemon's one async entry point: it owns the start order, signals and the shutdown order.

Start: (1) take the folder's lock, (2) open the store and record the manifest revision, (3) start
the log store and open the event bus (publishes are durable from here), (4) serve the control
API and the events endpoint on 127.0.0.1 and publish their URLs, the token and the pid,
(5) open the gateway (requests for a service not ready yet wait, bounded), (6) start the
function templates, (7) let runtimes prepare, (8) start the supervisor, which adopts what a
previous daemon left and reconciles, (9) start event deliveries, (10) start the schedules (a
job run missed while down runs now).

Shutdown, on SIGINT/SIGTERM or ``POST /v1/shutdown`` (a second signal forces):
  1. stop accepting changes (scale/apply/restart answer 409 from now on)
  2. pause schedules, stop event deliveries (a batch in flight is delivered again next start)
  3. close the gateway (in-flight requests finish), then drain and stop every instance, in
     reverse dependency order, each with its grace period
  4. stop the API and withdraw its URL and pid files
  5. close the event bus, flush the log store, close the store, release the lock
Forced: every instance's process group gets SIGKILL, then steps 4-5.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from shoal.api import endpoint
from shoal.api.ingest import IngestServer
from shoal.api.routes import build_app
from shoal.daemon.eventing import Events
from shoal.daemon.functioning import Functions
from shoal.daemon.gatewaying import GatewayLink
from shoal.daemon.locking import DaemonLock
from shoal.daemon.plane import Plane
from shoal.daemon.scheduling import Scheduling
from shoal.errors import GatewayUnavailable
from shoal.gateway import Gateway, compile_routes
from shoal.logs import LogStore
from shoal.manifest import Project
from shoal.runtimes.base import Runtime
from shoal.runtimes.registry import load_runtime
from shoal.store import Store, default_db_path, state_dir
from shoal.supervisor.reconciling import Supervisor

log = logging.getLogger(__name__)


class Runtimes:
    """Runtimes by name, loaded on first use (no container in the manifest: no docker import)."""

    def __init__(self) -> None:
        self._loaded: dict[str, Runtime] = {}

    def __call__(self, name: str) -> Runtime:
        if name not in self._loaded:
            self._loaded[name] = load_runtime(name)
        return self._loaded[name]

    async def prepare(self, project: Project, progress: Callable[[str], None]) -> None:
        """Let each runtime get ready for its services before any starts (build container
        images, bake VM images: slow steps that report ``progress`` lines). A runtime opts in
        with ``async def prepare(project, services: list[str], progress)``; ``start`` must still
        work without it (an ``apply`` may bring a new build), so this only moves the wait and its
        progress to the front."""
        for name, runtime in self._loaded.items():
            prepare = getattr(runtime, "prepare", None)
            if prepare is None:
                continue
            services = sorted(n for n, s in project.manifest.services.items() if s.runtime == name)
            await prepare(project, services, progress)

    async def close(self) -> None:
        for runtime in self._loaded.values():
            await runtime.close()


@dataclass
class Daemon:
    """A running daemon's parts, handed to ``on_started`` (the foreground view uses them)."""

    project: Project
    state: Path
    url: str
    plane: Plane
    supervisor: Supervisor
    logs: LogStore
    stop: asyncio.Event
    forced: asyncio.Event = field(default_factory=asyncio.Event)


async def run(
    project: Project,
    *,
    on_started: Callable[[Daemon], None] | None = None,
    handle_signals: bool = True,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the control plane for ``project`` until asked to stop."""
    state = state_dir(project.file)
    lock = DaemonLock(state)
    runtimes = Runtimes()
    for runtime in sorted({s.runtime for s in project.manifest.services.values()}):
        runtimes(runtime)  # a runtime this install lacks is an error now, not a crash loop later
    lock.acquire()  # (1)
    store = Store.open(default_db_path(project.file))  # (2)
    logs = LogStore(state / "logs")
    runner: web.AppRunner | None = None
    ingest: IngestServer | None = None
    events: Events | None = None
    stop = stop or asyncio.Event()
    forced = asyncio.Event()
    loop = asyncio.get_running_loop()
    try:
        manifest_json = json.dumps(project.manifest.model_dump(mode="json"), sort_keys=True)
        store.record_revision(project.digest, manifest_json, str(project.file), now=time.time())
        await logs.start()  # (3)
        logs.append("shoal", f"daemon starting for {project.manifest.name} ({project.file})")
        for notice in not_run_yet(project):
            logs.append("shoal", notice)
        link: GatewayLink | None = None
        functions = Functions(project, store, logs)
        gateway = Gateway(
            project.manifest.gateway,
            compile_routes(project.manifest),
            access_log=lambda text: logs.append("gateway", text),
            on_demand=lambda name: link.on_demand(name) if link is not None else None,
            functions=functions.hook,
        )
        supervisor = Supervisor(project, store, logs, runtimes, drainer=gateway.drain)
        events = Events(
            project,
            default_db_path(project.file),
            functions,
            on_log=lambda text: logs.append("shoal", text),
        )
        scheduling = Scheduling(project, store, logs, runtimes, events, state=state)
        link = GatewayLink(gateway, supervisor)
        supervisor.subscribe(link.sync)

        def applied(new: Project) -> None:
            gateway.set_routes(compile_routes(new.manifest))
            scheduling.apply(new)  # jobs and schedules; topics change at the next start

        plane = Plane(
            project.file,
            supervisor,
            logs,
            on_shutdown=stop.set,
            on_apply=applied,
            on_scale=link.scaled,
            metrics=gateway.metrics,
            functions=functions,
            events=events,
            scheduling=scheduling,
        )
        await events.open()  # (3b) the bus's own connection: publishes are durable from now
        token = endpoint.new_token(state)  # (4)
        runner = web.AppRunner(build_app(plane, token), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, reuse_address=True)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}"
        publish_token = secrets.token_urlsafe(32)  # for functions: the events endpoint only
        ingest = IngestServer(plane.publish, plane.publish_batch, token, publish_token)  # (4b)
        events_url = f"http://127.0.0.1:{await ingest.start()}"
        endpoint.publish(state, url, events_url)
        if handle_signals:
            _install_signals(loop, stop, forced)
        gw = project.manifest.gateway
        try:
            await gateway.start(gw.host, gw.port)  # (5) before any service: requests wait, not fail
        except OSError as exc:
            raise GatewayUnavailable(
                f"the gateway cannot listen on {gw.host}:{gw.port}: {exc.strerror}; "
                "set gateway.port in the manifest (another shoal or server may hold it)"
            ) from exc
        logs.append("shoal", f"gateway on http://{gw.host}:{gateway.port}")
        functions.extra_env.update(  # for shoal.events.publish; not the control API's token
            SHOAL_EVENTS_URL=events_url, SHOAL_TOKEN=publish_token
        )
        await functions.start()  # (6) templates import their handlers now: errors show at once
        await runtimes.prepare(project, lambda text: logs.append("shoal", text))  # (7) images
        await supervisor.start()  # (8)
        link.start()
        events.deliver()  # (9) event triggers and asynchronous invocations
        await scheduling.start()  # (10) schedules (a job run missed while down runs now)
        daemon = Daemon(project, state, url, plane, supervisor, logs, stop, forced)
        if on_started is not None:
            on_started(daemon)
        logs.append("shoal", f"control API on {url}")
        await stop.wait()
        # ---- shutdown, in order
        plane.closing = True  # 1. no more changes
        await scheduling.pause()  # 2. no more fires
        await events.stop_delivering()  # 2b. batches in flight are redelivered next start
        logs.append("shoal", "shutting down: stopping every instance")
        await link.stop()
        await gateway.stop()  # 3a. stop accepting; requests in flight finish
        await functions.stop()  # 3b. function instances and templates
        await scheduling.stop()  # 3b'. job runs in progress are stopped and recorded
        stopping = asyncio.create_task(supervisor.shutdown(), name="supervisor:shutdown")  # 3c.
        forced_wait = asyncio.create_task(forced.wait(), name="shutdown:force-watch")
        await asyncio.wait({stopping, forced_wait}, return_when=asyncio.FIRST_COMPLETED)
        if forced.is_set() and not stopping.done():
            logs.append("shoal", "forced: killing every instance")
            await supervisor.kill_all()
            stopping.cancel()
        forced_wait.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopping
        with contextlib.suppress(asyncio.CancelledError):
            await forced_wait
        logs.append("shoal", "daemon stopped")
    finally:
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        endpoint.withdraw(state)  # 4.
        if ingest is not None:
            await ingest.stop()
        if runner is not None:
            await runner.cleanup()
        if events is not None:
            await events.stop()  # 5a. the bus's connection
        await runtimes.close()
        await logs.stop()  # 5.
        store.close()
        lock.release()


def not_run_yet(project: Project) -> list[str]:
    """What the manifest declares that this version validates but does not run yet (said
    plainly at start, never skipped silently). Everything runs now: schedules, jobs, topics."""
    return []


def _install_signals(
    loop: asyncio.AbstractEventLoop, stop: asyncio.Event, forced: asyncio.Event
) -> None:
    def on_signal(signum: int) -> None:
        if stop.is_set():
            forced.set()  # a second Ctrl-C forces
        else:
            stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)


__all__ = ["Daemon", "Runtimes", "not_run_yet", "run"]
