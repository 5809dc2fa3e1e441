"""The gateway's curated public API: what the daemon integrates against."""

from __future__ import annotations

import asyncio
import inspect
import socket

import pytest

import shoal.gateway
from shoal.gateway import Gateway, Tuning, compile_routes
from tests.gateway.conftest import manifest


def test_all_names_exist_and_are_sorted() -> None:
    exported = shoal.gateway.__all__
    assert exported == sorted(exported, key=lambda s: (not s.isupper(), s))
    for name in exported:
        assert hasattr(shoal.gateway, name), name


def test_the_gateway_api() -> None:
    for method in ("start", "stop", "set_routes", "set_endpoints", "drain", "in_flight", "metrics"):
        assert callable(getattr(Gateway, method)), method
    assert inspect.iscoroutinefunction(Gateway.start)
    assert inspect.iscoroutinefunction(Gateway.stop)
    assert not inspect.iscoroutinefunction(Gateway.drain)  # removes from rotation when called


@pytest.mark.asyncio
@pytest.mark.timeout(5)
async def test_start_listens_where_the_manifest_says() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    m = manifest({"api": {"routes": ["/api"]}}, gateway={"port": port})
    gateway = Gateway(m.gateway, compile_routes(m), tuning=Tuning(stop_grace=0.5))
    assert gateway.port == 0
    assert await gateway.start() == port
    assert gateway.port == port
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()
    await writer.wait_closed()
    await gateway.stop()
