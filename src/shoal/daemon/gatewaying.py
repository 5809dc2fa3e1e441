"""Keeping the gateway and the supervisor in step (the daemon's wiring between the two).

    supervisor change ──▶ gateway.set_endpoints(name, ready replicas)   (only ready ones serve)
    supervisor stop   ──▶ gateway.drain(name, ordinal, drain)           (out of rotation first)
    held request      ──▶ on_demand(name) ──▶ scale from zero
    every tick        ──▶ in-flight samples ──▶ autoscaling.decide ──▶ supervisor.scale
    shoal scale NAME=N ──▶ scaled(name, N): a fresh window; below min, autoscaling paused

The autoscaler ticks every :data:`TICK` seconds (Knative's KPA ticks every 2 s), sampling each
autoscaled service's in-flight requests at the gateway. A manual scale starts a fresh window (the
samples from before it no longer count, so the old load does not undo it at the next tick). A
manual scale to zero of a service whose ``min`` is above zero pauses its autoscaling, scale from
zero on a request included (as Kubernetes disables a HorizontalPodAutoscaler while its target has
zero replicas), until a manual scale above zero; with ``min: 0`` a request starts it as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable

from shoal.gateway.autoscaling import ScalerState, decide
from shoal.gateway.server import Gateway
from shoal.supervisor.reconciling import Supervisor

log = logging.getLogger(__name__)

TICK = 2.0
"""Seconds between autoscaler decisions."""


class GatewayLink:
    """Feeds the gateway the supervisor's ready set and scales autoscaled services."""

    def __init__(
        self, gateway: Gateway, supervisor: Supervisor, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.gateway = gateway
        self.supervisor = supervisor
        self._clock = clock
        self._samples: dict[str, deque[tuple[float, float]]] = {}
        self._states: dict[str, ScalerState] = {}
        self._known: dict[str, list[tuple[int, int]]] = {}
        self._paused: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def sync(self) -> None:
        """Push every service's ready endpoints to the gateway (only when they changed)."""
        for name in self.supervisor.desired:
            ready = self.supervisor.ready_endpoints(name)
            if self._known.get(name) != ready:
                self._known[name] = ready
                self.gateway.set_endpoints(name, ready)

    def scaled(self, name: str, replicas: int) -> str | None:
        """A manual scale of ``name``; what it means for autoscaling (None: not autoscaled)."""
        service = self.supervisor.project.manifest.services.get(name)
        if service is None or service.autoscale is None:
            return None
        settings = service.autoscale
        self._samples.pop(name, None)  # a fresh window: the old load must not undo this
        self._states.pop(name, None)
        if replicas == 0 and settings.min > 0:
            self._paused.add(name)
            return (
                f"autoscaling paused while at 0, below its min {settings.min} (requests get 503 "
                f"once the gateway's hold times out); `shoal scale {name}=N` resumes it"
            )
        self._paused.discard(name)
        if replicas == 0:
            return f"autoscaling on (0-{settings.max} replicas): a request starts it again"
        return f"autoscaling on ({settings.min}-{settings.max} replicas): it may change this"

    def on_demand(self, name: str) -> None:
        """A request waits for a service with no ready replica: make sure one is coming."""
        service = self.supervisor.project.manifest.services.get(name)
        desired = self.supervisor.desired.get(name)
        if service is None or desired is None or service.autoscale is None or name in self._paused:
            return
        if desired.replicas == 0:
            self.supervisor.scale(name, max(1, service.autoscale.min))

    def start(self) -> None:
        if any(s.autoscale for s in self.supervisor.project.manifest.services.values()):
            self._task = asyncio.create_task(self._autoscale(), name="gateway:autoscaler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _autoscale(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            try:
                self.tick()
            except Exception:  # a bug here must not stop supervision; say so and keep going
                log.exception("autoscaler tick failed")

    def tick(self) -> None:
        now = self._clock()
        for name, service in self.supervisor.project.manifest.services.items():
            settings = service.autoscale
            desired = self.supervisor.desired.get(name)
            if settings is None or desired is None or name in self._paused:
                continue
            samples = self._samples.setdefault(name, deque())
            samples.append((now, float(self.gateway.in_flight(name))))
            while samples and samples[0][0] < now - settings.window:
                samples.popleft()
            ready = len(self.supervisor.ready_endpoints(name))
            decision = decide(list(samples), ready, settings, now, self._states.get(name))
            self._states[name] = decision.state
            if decision.replicas != desired.replicas:
                log.info("autoscale %s: %d -> %d", name, desired.replicas, decision.replicas)
                self.supervisor.scale(name, decision.replicas)


__all__ = ["TICK", "GatewayLink"]
