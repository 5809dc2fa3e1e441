"""Working with the supervisor: draining before a stop, a rolling update under load, stopping."""

from __future__ import annotations

import asyncio

import pytest

from tests.gateway.conftest import RigFactory
from tests.gateway.wire import Backend, Client, Handler, Request, echo, get, response_bytes

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(5)]

API = {"api": {"routes": ["/api"]}}


def gated() -> tuple[asyncio.Event, Handler]:
    gate = asyncio.Event()

    async def handler(request: Request, writer: asyncio.StreamWriter) -> None:
        await request.body()
        if request.target == "/api/slow":
            await gate.wait()
        writer.write(response_bytes(200, b"ok"))

    return gate, handler


async def test_drain_waits_for_in_flight_and_takes_no_new_requests(
    make_rig: RigFactory,
) -> None:
    gate, handler = gated()
    rig = await make_rig(API, replicas={"api": [handler, handler]})
    first, second = rig.backends["api"]
    clients = [await Client.open(rig.port) for _ in range(2)]
    for client in clients:
        await client.send(b"GET /api/slow HTTP/1.1\r\nHost: x\r\n\r\n")
    while first.in_flight + second.in_flight < 2:
        await asyncio.sleep(0.01)
    drained = asyncio.ensure_future(rig.gateway.drain("api", 0, 5.0))
    await asyncio.sleep(0.05)
    assert not drained.done()  # replica 0 still has a request
    before = len(first.requests)
    for _ in range(5):
        assert (await get(rig.port, "/api/fast")).status == 200
    assert len(first.requests) == before  # out of rotation at once
    gate.set()
    for client in clients:
        assert (await client.response()).status == 200
        await client.close()
    await asyncio.wait_for(drained, 1.0)


async def test_drain_gives_up_after_its_timeout(make_rig: RigFactory) -> None:
    gate, handler = gated()
    rig = await make_rig(API, replicas={"api": [handler]})
    client = await Client.open(rig.port)
    await client.send(b"GET /api/slow HTTP/1.1\r\nHost: x\r\n\r\n")
    while rig.backends["api"][0].in_flight < 1:
        await asyncio.sleep(0.01)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await rig.gateway.drain("api", 0, 0.2)
    assert 0.19 <= loop.time() - start < 0.6
    gate.set()
    assert (await client.response()).status == 200  # still answered: nothing was cut
    await client.close()
    await rig.gateway.drain("api", 7, 1.0)  # an unknown replica drains at once
    await rig.gateway.drain("nope", 0, 1.0)


async def test_a_drained_replica_stays_out_until_it_comes_back_anew(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(API, replicas={"api": [echo, echo]})
    a, b = rig.backends["api"]
    await rig.gateway.drain("api", 0, 1.0)
    rig.ready("api")  # a late listener call still listing it: it stays out
    for _ in range(4):
        await get(rig.port, "/api")
    assert len(a.requests) == 0
    rig.gateway.set_endpoints("api", [(1, b.port)])  # stopped and gone
    rig.gateway.set_endpoints("api", [(0, a.port), (1, b.port)])  # restarted: back
    for _ in range(4):
        await get(rig.port, "/api")
    assert len(a.requests) == 2


async def test_rolling_update_under_load_fails_nothing(make_rig: RigFactory) -> None:
    async def work(request: Request, writer: asyncio.StreamWriter) -> None:
        await request.body()
        await asyncio.sleep(0.005)
        writer.write(response_bytes(200, b"ok"))

    rig = await make_rig(API, replicas={"api": [work, work]})
    gw = rig.gateway
    statuses: list[int] = []
    stop = asyncio.Event()

    async def load() -> None:
        client = await Client.open(rig.port)
        try:
            while not stop.is_set():
                statuses.append((await client.request("GET", "/api")).status)
        finally:
            await client.close()

    loaders = [asyncio.create_task(load()) for _ in range(8)]
    live = dict(enumerate(rig.backends["api"]))
    for new_ordinal in (2, 3):  # replace both replicas, one at a time, as the supervisor does
        fresh = Backend(work)
        await fresh.start()
        rig.backends["api"].append(fresh)
        live[new_ordinal] = fresh
        gw.set_endpoints("api", [(i, b.port) for i, b in live.items()])  # surge: ready
        await asyncio.sleep(0.05)
        old_ordinal = min(live)
        old = live.pop(old_ordinal)
        gw.set_endpoints("api", [(i, b.port) for i, b in live.items()])  # out of rotation
        await gw.drain("api", old_ordinal, 2.0)
        await old.stop()  # SIGTERM after the drain
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*loaders)
    assert len(statuses) > 50
    assert set(statuses) == {200}


async def test_stop_finishes_in_flight_requests_and_closes_idle_ones(
    make_rig: RigFactory,
) -> None:
    gate, handler = gated()
    rig = await make_rig(API, replicas={"api": [handler]})
    idle = await Client.open(rig.port)
    assert (await idle.request("GET", "/api/fast")).status == 200
    busy = await Client.open(rig.port)
    await busy.send(b"GET /api/slow HTTP/1.1\r\nHost: x\r\n\r\n")
    while rig.backends["api"][0].in_flight < 1:
        await asyncio.sleep(0.01)
    stopping = asyncio.ensure_future(rig.gateway.stop(grace=2.0))
    assert await idle.closed_by_peer(timeout=1.0)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", rig.port)
    gate.set()
    r = await busy.response()
    assert r.status == 200
    assert r.header("connection") == "close"
    await asyncio.wait_for(stopping, 2.0)
    await idle.close()
    await busy.close()


async def test_stop_drops_what_outlives_the_grace_period(make_rig: RigFactory) -> None:
    gate, handler = gated()
    rig = await make_rig(API, replicas={"api": [handler]})
    busy = await Client.open(rig.port)
    await busy.send(b"GET /api/slow HTTP/1.1\r\nHost: x\r\n\r\n")
    while rig.backends["api"][0].in_flight < 1:
        await asyncio.sleep(0.01)
    await asyncio.wait_for(rig.gateway.stop(grace=0.1), 1.0)
    assert await busy.closed_by_peer(timeout=1.0)
    await busy.close()
    gate.set()
