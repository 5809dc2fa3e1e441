"""Fixtures for the gateway tests: uvloop, a gateway on port 0 in front of real test backends.

``make_rig(services, replicas={...})`` builds a manifest, compiles its routes, starts a
:class:`~shoal.gateway.Gateway` on 127.0.0.1:0 and one :class:`~tests.gateway.wire.Backend` per
handler given for a service, and tells the gateway those are the service's ready endpoints. At
teardown everything is stopped and the test fails if a task is left behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
import uvloop

from shoal.gateway import FunctionHook, Gateway, Tuning, compile_routes
from shoal.manifest import Manifest
from tests.gateway.wire import Backend, Handler

FAST = Tuning(
    keepalive_timeout=5.0,
    upstream_idle_timeout=5.0,
    hold_timeout=1.0,
    eject_for=30.0,
    stop_grace=1.0,
)


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The gateway runs on uvloop in the daemon: test it there."""
    return {"uvloop": uvloop.new_event_loop}


@dataclass
class Rig:
    gateway: Gateway
    port: int
    backends: dict[str, list[Backend]] = field(default_factory=dict)

    def ready(self, name: str) -> None:
        """Tell the gateway every backend of ``name`` is ready (ordinal = position)."""
        self.gateway.set_endpoints(name, [(i, b.port) for i, b in enumerate(self.backends[name])])


RigFactory = Callable[..., Awaitable[Rig]]


def manifest(
    services: dict[str, dict[str, Any]] | None = None,
    functions: dict[str, dict[str, Any]] | None = None,
    gateway: dict[str, Any] | None = None,
) -> Manifest:
    return Manifest.model_validate(
        {
            "name": "test",
            "gateway": gateway or {},
            "services": {
                name: {"command": ["true"], **spec} for name, spec in (services or {}).items()
            },
            "functions": functions or {},
        }
    )


@pytest_asyncio.fixture
async def make_rig() -> AsyncIterator[RigFactory]:
    rigs: list[Rig] = []

    async def make(
        services: dict[str, dict[str, Any]] | None = None,
        *,
        replicas: dict[str, list[Handler]] | None = None,
        functions: dict[str, dict[str, Any]] | None = None,
        gateway: dict[str, Any] | None = None,
        tuning: Tuning = FAST,
        function_hook: FunctionHook | None = None,
        **options: Any,
    ) -> Rig:
        m = manifest(services, functions, gateway)
        gw = Gateway(
            m.gateway, compile_routes(m), tuning=tuning, functions=function_hook, **options
        )
        port = await gw.start("127.0.0.1", 0)
        rig = Rig(gw, port)
        rigs.append(rig)
        for name, handlers in (replicas or {}).items():
            rig.backends[name] = []
            for handler in handlers:
                backend = Backend(handler)
                await backend.start()
                rig.backends[name].append(backend)
            rig.ready(name)
        return rig

    yield make
    for rig in rigs:
        await rig.gateway.stop(grace=0.5)
        for backends in rig.backends.values():
            for backend in backends:
                await backend.stop()
    await asyncio.sleep(0)
    current = asyncio.current_task()
    leaked = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert not leaked, f"test leaked tasks: {leaked}"
