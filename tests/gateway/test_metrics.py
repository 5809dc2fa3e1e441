"""Counters, the Prometheus text, the access log; and the endpoint bookkeeping, without sockets."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from shoal.gateway.balancing import Backend
from shoal.gateway.metrics import (
    AccessLog,
    RouteStats,
    ServiceGauges,
    format_entries,
    render,
)
from shoal.gateway.upstreams import UpstreamPool
from tests.gateway.conftest import RigFactory
from tests.gateway.wire import Client, echo, get


def test_render_is_prometheus_text() -> None:
    api = RouteStats("/api", "api")
    for status, seconds in [(200, 0.0004), (201, 0.003), (404, 0.02), (503, 2.0), (499, 0.1)]:
        api.observe(status, seconds)
    api.in_flight = 2
    odd = RouteStats('sh"op/\\x', "shop")
    text = render([api, odd], [ServiceGauges("api", 3, 1, 2)])
    lines = text.splitlines()
    assert 'shoal_gateway_requests_total{route="/api",target="api",code="2xx"} 2' in lines
    assert 'shoal_gateway_requests_total{route="/api",target="api",code="4xx"} 2' in lines
    assert 'shoal_gateway_requests_total{route="/api",target="api",code="5xx"} 1' in lines
    bucket = 'shoal_gateway_request_duration_seconds_bucket{route="/api",target="api",le='
    assert bucket + '"0.0005"} 1' in lines
    assert bucket + '"0.005"} 2' in lines
    assert bucket + '"2.5"} 5' in lines
    assert bucket + '"+Inf"} 5' in lines
    assert 'shoal_gateway_request_duration_seconds_count{route="/api",target="api"} 5' in lines
    assert 'shoal_gateway_requests_in_flight{route="/api",target="api"} 2' in lines
    assert 'shoal_gateway_service_in_flight{service="api"} 3' in lines
    assert 'shoal_gateway_service_held{service="api"} 1' in lines
    assert 'shoal_gateway_service_endpoints{service="api"} 2' in lines
    assert 'route="sh\\"op/\\\\x"' in text
    for line in lines:
        assert line.startswith("# ") or line.startswith("shoal_gateway_"), line
    types = [line.split()[3] for line in lines if line.startswith("# TYPE")]
    assert types == ["counter", "histogram", "gauge", "gauge", "gauge", "gauge"]


def test_status_classes() -> None:
    stats = RouteStats("/", "web")
    for status in (0, 101, 200, 299, 302, 404, 499, 500, 599, 600, 999):
        stats.observe(status, 0.001)
    assert stats.by_class() == [1, 2, 1, 2, 4]  # 600-999 count as 5xx; no status, not at all
    assert stats.count == 11


def test_access_lines() -> None:
    text = format_entries(
        [
            (b"GET", b"/api/items?x=1", 200, 1024, 0.81, b"api#0"),
            (b"POST", b"", 503, 60, 1500.0, b"-"),
        ]
    )
    assert text.split("\n") == [
        "GET /api/items?x=1 200 1024B 0.81ms api#0",
        "POST - 503 60B 1500.00ms -",
    ]
    usual = format_entries([(b"GET", b"/a", 200, 2, 1.234, b"api#0")] * 3)
    assert usual == "\n".join(["GET /a 200 2B 1.23ms api#0"] * 3)
    forged = format_entries([(b"GET", b"/x\nGET /admin 200", 404, 0, 1.0, b"-")])
    assert "\n" not in forged
    assert forged.startswith("GET /x\\nGET /admin 200 404 0B 1.00ms -")


@pytest.mark.parametrize(
    "target",
    [b"/x\rY", b"/\x00", b"/\x7f", b"/\xa0", b"/a b", b"/" + b"a" * 600, b""],
)
def test_access_lines_in_a_batch_stay_one_line_each(target: bytes) -> None:
    usual = (b"GET", b"/ok", 200, 2, 1.0, b"api#0")
    lines = format_entries([usual, (b"GET", target, 400, 0, 1.0, b"-"), usual]).split("\n")
    assert len(lines) == 3
    assert lines[0] == lines[2] == "GET /ok 200 2B 1.00ms api#0"
    assert lines[1].isprintable() and len(lines[1]) < 600
    assert lines[1].startswith("GET /" if target else "GET - 400")


class FakeLoop:
    def __init__(self) -> None:
        self.scheduled: list[Any] = []

    def call_later(self, delay: float, callback: Any) -> asyncio.TimerHandle:
        handle = asyncio.TimerHandle(0.0, callback, (), cast(asyncio.AbstractEventLoop, self))
        self.scheduled.append(handle)
        return handle

    def get_debug(self) -> bool:
        return False

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        pass


def test_access_log_batches() -> None:
    got: list[str] = []
    loop = FakeLoop()
    access = AccessLog(got.append, cast(asyncio.AbstractEventLoop, loop))
    entry = (b"GET", b"/", 200, 2, 0.001, b"s#0")
    for _ in range(3):
        access.add(entry)
    assert got == [] and len(loop.scheduled) == 1  # one flush scheduled for the batch
    loop.scheduled[0]._run()
    assert len(got) == 1 and got[0].count("\n") == 2  # one call, three lines
    access.add(entry)
    assert len(loop.scheduled) == 2  # the next batch has its own flush
    access.flush()
    assert len(got) == 2
    access.flush()
    assert len(got) == 2  # nothing to flush, nothing sent


def test_a_failing_sink_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    def broken(text: str) -> None:
        raise OSError("disk full")

    access = AccessLog(broken, cast(asyncio.AbstractEventLoop, FakeLoop()))
    for _ in range(3):
        access.add((b"GET", b"/", 200, 0, 0.0, b"-"))
        access.flush()
    assert caplog.text.count("access log sink failed") == 1


def backend(clock: list[float]) -> Backend:
    loop = cast(asyncio.AbstractEventLoop, FakeLoop())
    return Backend("api", lambda port: UpstreamPool(port, loop, 4, 1.0), lambda: clock[0])


def test_pick_least_outstanding_then_round_robin() -> None:
    b = backend([0.0])
    b.update([(0, 1000), (1, 1001), (2, 1002)])
    picks = [b.pick() for _ in range(6)]
    assert [p.ordinal for p in picks if p] == [1, 2, 0, 1, 2, 0]
    b.endpoints[0].outstanding = 1
    b.endpoints[1].outstanding = 3
    b.endpoints[2].outstanding = 1
    assert {b.pick().ordinal for _ in range(4)} == {0, 2}  # type: ignore[union-attr]
    assert b.pick(avoid=b.endpoints[0]).ordinal == 2  # type: ignore[union-attr]


def test_ejection_expires_or_is_refreshed() -> None:
    clock = [0.0]
    b = backend(clock)
    b.update([(0, 1000), (1, 1001)])
    b.eject(b.endpoints[0], 10.0)
    assert {b.pick().ordinal for _ in range(4)} == {1}  # type: ignore[union-attr]
    clock[0] = 11.0
    assert {b.pick().ordinal for _ in range(4)} == {0, 1}  # type: ignore[union-attr]
    b.eject(b.endpoints[1], 10.0)
    b.update([(0, 1000), (1, 1001)])  # the supervisor calls again: refreshed
    assert {b.pick().ordinal for _ in range(4)} == {0, 1}  # type: ignore[union-attr]
    b.eject(b.endpoints[0], 10.0)
    b.eject(b.endpoints[1], 10.0)
    assert b.pick() is None
    assert not b.has_usable()


def test_update_retire_and_drain() -> None:
    b = backend([0.0])
    b.update([(0, 1000), (1, 1001)])
    first = b.endpoints[0]
    first.outstanding = 2
    b.update([(1, 1001)])  # replica 0 gone, with requests still open: kept for a drain
    assert first.retired and b.find(0) is first
    assert b.drain(0) is first
    first.outstanding = 0
    first.settle(b)
    b.update([(1, 1001)])
    assert b.find(0) is None  # forgotten once drained, idle and gone from the set
    assert b.drain(5) is None
    b.update([(0, 2000), (1, 1001)])  # a new replica 0 on another port: a new endpoint
    assert b.find(0) is not first and b.find(0).port == 2000  # type: ignore[union-attr]


def test_replaced_port_is_a_new_endpoint() -> None:
    b = backend([0.0])
    b.update([(0, 1000)])
    old = b.endpoints[0]
    b.update([(0, 1001)])
    assert b.endpoints[0] is not old and old.retired


@pytest.mark.asyncio
@pytest.mark.timeout(5)
async def test_metrics_and_access_log_from_real_traffic(make_rig: RigFactory) -> None:
    lines: list[str] = []
    rig = await make_rig(
        {"api": {"routes": ["/api"]}}, replicas={"api": [echo]}, access_log=lines.append
    )
    client = await Client.open(rig.port)
    for i in range(3):
        assert (await client.request("GET", f"/api/{i}")).status == 200
    await client.close()
    assert (await get(rig.port, "/nope")).status == 404
    text = rig.gateway.metrics()
    assert 'shoal_gateway_requests_total{route="/api",target="api",code="2xx"} 3' in text
    assert 'shoal_gateway_requests_in_flight{route="/api",target="api"} 0' in text
    assert 'shoal_gateway_service_endpoints{service="api"} 1' in text
    while not lines:
        await asyncio.sleep(0.01)
    logged = "\n".join(lines).split("\n")
    assert len(logged) == 4
    method, path, status, size, duration, upstream = logged[0].split(" ")
    assert (method, path, status, upstream) == ("GET", "/api/0", "200", "api#0")
    assert size.endswith("B") and duration.endswith("ms")
    assert logged[-1].startswith("GET /nope 404 ")


@pytest.mark.asyncio
@pytest.mark.timeout(5)
async def test_set_routes_applies_to_the_next_request(make_rig: RigFactory) -> None:
    from shoal.gateway import compile_routes
    from tests.gateway.conftest import manifest

    rig = await make_rig({"api": {"routes": ["/api"]}}, replicas={"api": [echo]})
    client = await Client.open(rig.port)
    assert (await client.request("GET", "/v2/x")).status == 404
    rig.gateway.set_routes(compile_routes(manifest({"api": {"routes": ["/v2"]}})))
    assert (await client.request("GET", "/v2/x")).status == 200
    await client.close()
    assert (await get(rig.port, "/api/x")).status == 404
