"""Balancing across replicas over real sockets: least outstanding, retries, ejection, pools."""

from __future__ import annotations

import asyncio
import socket

import pytest

from shoal.gateway import Tuning
from tests.gateway.conftest import FAST, RigFactory
from tests.gateway.wire import Client, Request, echo, get, response_bytes

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(5)]

API = {"api": {"routes": ["/api"]}}


def free_port() -> int:
    """A port nothing listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_least_outstanding_requests(make_rig: RigFactory) -> None:
    gate = asyncio.Event()

    async def slow(request: Request, writer: asyncio.StreamWriter) -> None:
        await request.body()
        if request.target == "/api/slow":
            await gate.wait()
        writer.write(response_bytes(200, b"ok"))

    rig = await make_rig(API, replicas={"api": [slow, slow]})
    a, b = rig.backends["api"]
    clients = [await Client.open(rig.port) for _ in range(2)]
    for client in clients:  # two slow requests: one on each replica
        await client.send(b"GET /api/slow HTTP/1.1\r\nHost: x\r\n\r\n")
    while a.in_flight + b.in_flight < 2:
        await asyncio.sleep(0.01)
    assert a.in_flight == b.in_flight == 1
    third = await Client.open(rig.port)
    await third.send(b"GET /api/slow HTTP/1.1\r\nHost: x\r\n\r\n")
    while a.in_flight + b.in_flight < 3:
        await asyncio.sleep(0.01)
    busy = a if a.in_flight == 2 else b
    free = b if busy is a else a
    # the fast ones go to the replica with fewer outstanding, every time
    for _ in range(4):
        assert (await get(rig.port, "/api/fast")).status == 200
    assert [r.target for r in free.requests].count("/api/fast") == 4
    gate.set()
    for client in [*clients, third]:
        assert (await client.response()).status == 200
        await client.close()


async def test_ties_are_broken_round_robin(make_rig: RigFactory) -> None:
    rig = await make_rig(API, replicas={"api": [echo, echo, echo]})
    for _ in range(9):
        assert (await get(rig.port, "/api")).status == 200
    assert [len(b.requests) for b in rig.backends["api"]] == [3, 3, 3]


async def test_refused_endpoint_is_retried_elsewhere_and_ejected(make_rig: RigFactory) -> None:
    rig = await make_rig(API, replicas={"api": [echo]})
    good = rig.backends["api"][0]
    dead = free_port()
    rig.gateway.set_endpoints("api", [(0, dead), (1, good.port)])
    for _ in range(6):  # a POST too: nothing was sent to the refusing one
        assert (await get(rig.port, "/api")).status == 200
        client = await Client.open(rig.port)
        assert (await client.request("POST", "/api", body=b"data")).status == 200
        await client.close()
    assert len(good.requests) == 12
    backend = rig.gateway.backends["api"]
    ejected = [e for e in backend.endpoints if e.ejected_until]
    assert [e.ordinal for e in ejected] == [0]
    # the supervisor says it is ready again (its listener is back): back in rotation
    replacement = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", dead)
    try:
        rig.gateway.set_endpoints("api", [(0, dead), (1, good.port)])
        assert not any(e.ejected_until for e in backend.endpoints)
    finally:
        replacement.close()
        await replacement.wait_closed()


async def test_every_endpoint_refusing_is_502_then_503(make_rig: RigFactory) -> None:
    rig = await make_rig(API)
    rig.gateway.set_endpoints("api", [(0, free_port())])
    r = await get(rig.port, "/api")
    assert r.status == 502
    r = await get(rig.port, "/api")
    assert r.status == 503  # the only replica is ejected: none is ready
    assert r.header("retry-after") == "1"


async def test_ejection_ends_after_its_time(make_rig: RigFactory) -> None:
    rig = await make_rig(API, tuning=Tuning(eject_for=0.2))
    dead = free_port()
    rig.gateway.set_endpoints("api", [(0, dead)])
    assert (await get(rig.port, "/api")).status == 502
    backend = rig.gateway.backends["api"]
    assert backend.pick() is None
    await asyncio.sleep(0.25)
    assert backend.pick() is backend.endpoints[0]


async def test_a_stale_pooled_connection_is_retried(make_rig: RigFactory) -> None:
    async def one_per_connection(request: Request, writer: asyncio.StreamWriter) -> None:
        await request.body()
        # answers keep-alive, then closes the connection a moment later (a server's idle
        # timeout racing the gateway's next request)
        writer.write(response_bytes(200, b"ok"))
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()

    rig = await make_rig(API, replicas={"api": [one_per_connection]})
    client = await Client.open(rig.port)
    for _ in range(3):
        assert (await client.request("GET", "/api")).status == 200
        await asyncio.sleep(0.1)
    for _ in range(3):  # straight after: the pooled connection may be closing
        assert (await client.request("GET", "/api")).status == 200
    await client.close()


async def test_a_non_idempotent_request_is_not_replayed(make_rig: RigFactory) -> None:
    async def dies(request: Request, writer: asyncio.StreamWriter) -> None:
        await request.body()
        writer.transport.abort()

    rig = await make_rig(API, replicas={"api": [dies, dies]})
    client = await Client.open(rig.port)
    r = await client.request("POST", "/api", body=b"once")
    assert r.status == 502
    await client.close()
    assert sum(len(b.requests) for b in rig.backends["api"]) == 1
    client = await Client.open(rig.port)
    r = await client.request("PUT", "/api", body=b"twice is fine")
    assert r.status == 502  # retried once, on the other replica, which died too
    await client.close()
    assert sum(len(b.requests) for b in rig.backends["api"]) == 3


async def test_upstream_pool_is_bounded_and_idle_connections_expire(
    make_rig: RigFactory,
) -> None:
    gate = asyncio.Event()

    async def slow(request: Request, writer: asyncio.StreamWriter) -> None:
        await request.body()
        await gate.wait()
        writer.write(response_bytes(200, b"ok"))

    tuning = Tuning(max_idle_per_endpoint=2, upstream_idle_timeout=0.2, keepalive_timeout=5)
    rig = await make_rig(API, replicas={"api": [slow]}, tuning=tuning)
    clients = [await Client.open(rig.port) for _ in range(4)]
    for client in clients:
        await client.send(b"GET /api HTTP/1.1\r\nHost: x\r\n\r\n")
    backend = rig.backends["api"][0]
    while backend.in_flight < 4:
        await asyncio.sleep(0.01)
    gate.set()
    for client in clients:
        assert (await client.response()).status == 200
        await client.close()
    pool = rig.gateway.backends["api"].endpoints[0].pool
    assert len(pool.idle) == 2
    await asyncio.sleep(0.5)
    assert pool.idle == []
    assert FAST.max_idle_per_endpoint > 2
