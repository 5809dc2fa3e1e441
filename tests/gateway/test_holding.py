"""Scale from zero: requests wait in a bounded queue while a service has no ready replica."""

from __future__ import annotations

import asyncio

import pytest

from shoal.gateway import Tuning
from tests.gateway.conftest import RigFactory
from tests.gateway.wire import Backend, Client, echo, get

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(5)]

API = {"api": {"routes": ["/api"]}}


async def test_held_requests_go_when_a_replica_is_ready(make_rig: RigFactory) -> None:
    asked: list[str] = []
    rig = await make_rig(API, on_demand=asked.append)
    backend = Backend(echo)
    await backend.start()
    rig.backends["api"] = [backend]
    pending = [asyncio.ensure_future(get(rig.port, f"/api/{i}")) for i in range(5)]
    while rig.gateway.in_flight("api") < 5:
        await asyncio.sleep(0.01)
    assert asked == ["api"]  # once for the first held request, not per request
    assert 'shoal_gateway_service_held{service="api"} 5' in rig.gateway.metrics()
    await asyncio.sleep(0.1)
    assert not any(p.done() for p in pending)
    rig.ready("api")  # the first replica starts: everything held goes to it
    responses = await asyncio.gather(*pending)
    assert [r.status for r in responses] == [200] * 5
    assert sorted(r.json()["target"] for r in responses) == [f"/api/{i}" for i in range(5)]  # type: ignore[type-var]
    assert rig.gateway.in_flight("api") == 0


async def test_held_requests_get_503_after_the_wait(make_rig: RigFactory) -> None:
    asked: list[str] = []
    rig = await make_rig(API, on_demand=asked.append, tuning=Tuning(hold_timeout=0.2))
    loop = asyncio.get_running_loop()
    start = loop.time()
    r = await get(rig.port, "/api")
    assert r.status == 503
    assert r.header("retry-after") == "1"
    assert 0.19 <= loop.time() - start < 1.0
    assert rig.gateway.in_flight("api") == 0
    await get(rig.port, "/api")
    assert asked == ["api", "api"]  # asked again: the first start came to nothing


async def test_the_queue_is_bounded(make_rig: RigFactory) -> None:
    rig = await make_rig(
        API, on_demand=lambda name: None, tuning=Tuning(hold_queue=2, hold_timeout=2.0)
    )
    held = [asyncio.ensure_future(get(rig.port, "/api")) for _ in range(2)]
    while rig.gateway.in_flight("api") < 2:
        await asyncio.sleep(0.01)
    r = await get(rig.port, "/api")
    assert r.status == 503  # over the bound: answered at once
    for task in held:
        task.cancel()
    await asyncio.gather(*held, return_exceptions=True)


async def test_without_on_demand_nothing_is_held(make_rig: RigFactory) -> None:
    rig = await make_rig(API)
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert (await get(rig.port, "/api")).status == 503
    assert loop.time() - start < 0.2


async def test_a_held_client_that_leaves_is_forgotten(make_rig: RigFactory) -> None:
    rig = await make_rig(API, on_demand=lambda name: None)
    client = await Client.open(rig.port)
    await client.send(b"GET /api HTTP/1.1\r\nHost: x\r\n\r\n")
    while rig.gateway.in_flight("api") < 1:
        await asyncio.sleep(0.01)
    await client.close()
    while rig.gateway.in_flight("api"):
        await asyncio.sleep(0.01)
    assert len(rig.gateway.backends["api"].held) == 0


async def test_held_upload_with_expect_waits_for_a_replica(make_rig: RigFactory) -> None:
    rig = await make_rig(API, on_demand=lambda name: None)
    backend = Backend(echo)
    await backend.start()
    rig.backends["api"] = [backend]
    client = await Client.open(rig.port)
    await client.send(
        b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
    )
    while rig.gateway.in_flight("api") < 1:
        await asyncio.sleep(0.01)
    rig.ready("api")
    assert (await client.response()).status == 100  # only once a replica is there
    await client.send(b"data")
    r = await client.response()
    assert r.json()["body"] == 4
    await client.close()


async def test_stopping_answers_held_requests(make_rig: RigFactory) -> None:
    rig = await make_rig(API, on_demand=lambda name: None)
    held = asyncio.ensure_future(get(rig.port, "/api"))
    while rig.gateway.in_flight("api") < 1:
        await asyncio.sleep(0.01)
    await rig.gateway.stop(grace=1.0)
    assert (await held).status == 503
