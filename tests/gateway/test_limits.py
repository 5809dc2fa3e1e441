"""Every status the gateway answers itself, each with a small JSON body, and the server lives on."""

from __future__ import annotations

import asyncio

import pytest

from tests.gateway.conftest import RigFactory
from tests.gateway.wire import Client, Message, Request, echo, get, response_bytes

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(5)]

API = {"api": {"routes": ["/api"]}}


async def raw(port: int, data: bytes, *, closes: bool = True) -> Message:
    """Send raw bytes on a new connection; the response. Malformed requests close the
    connection after their answer; a clean request answered with an error keeps it."""
    client = await Client.open(port)
    try:
        await client.send(data)
        response = await client.response()
        if closes:
            assert await client.closed_by_peer(), "the gateway kept a broken connection open"
            assert response.header("connection") == "close"
        else:
            assert response.header("connection") is None
            again = await client.request("GET", "/api/again")
            assert again.status in (response.status, 200)
        return response
    finally:
        await client.close()


def assert_error(r: Message, status: int) -> None:
    assert r.status == status, (r.status, r.body)
    assert r.header("content-type") == "application/json"
    assert isinstance(r.json()["message"], str)
    assert len(r.body) < 200


async def test_unknown_route_is_404(make_rig: RigFactory) -> None:
    rig = await make_rig(API, replicas={"api": [echo]})
    assert_error(await raw(rig.port, b"GET /nope HTTP/1.1\r\nHost: a\r\n\r\n", closes=False), 404)
    assert_error(await raw(rig.port, b"GET /apix HTTP/1.1\r\nHost: a\r\n\r\n", closes=False), 404)
    body = b"POST /nope HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
    assert_error(await raw(rig.port, body), 404)  # a body it will not read: closed
    assert (await get(rig.port, "/api/fine")).status == 200


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST /api HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"GET /api HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /api HTTP/1.1\r\n\r\n",
        b"GET /api HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n",
        b"GET /api HTTP/9.9\r\nHost: a\r\n\r\n",
        b"GET api HTTP/1.1\r\nHost: a\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS hello on the plain port
    ],
    ids=[
        "garbage",
        "bad-length",
        "two-lengths",
        "length-and-chunked",
        "other-coding",
        "two-hosts",
        "no-host",
        "bad-header-name",
        "bad-version",
        "relative-target",
        "tls",
    ],
)
async def test_malformed_requests_are_400(make_rig: RigFactory, request_bytes: bytes) -> None:
    rig = await make_rig(API, replicas={"api": [echo]})
    assert_error(await raw(rig.port, request_bytes), 400)
    assert (await get(rig.port, "/api/still")).status == 200
    assert rig.backends["api"][0].requests[-1].target == "/api/still"
    assert len(rig.backends["api"][0].requests) == 1  # nothing malformed reached the replica


async def test_header_too_large_is_431(make_rig: RigFactory) -> None:
    rig = await make_rig(API, replicas={"api": [echo]}, gateway={"max_header": "4K"})
    big = b"x" * 5000
    assert_error(
        await raw(rig.port, b"GET /api HTTP/1.1\r\nHost: a\r\nX-Big: " + big + b"\r\n\r\n"), 431
    )
    many = b"".join(b"X-H%d: %b\r\n" % (i, b"y" * 100) for i in range(50))
    assert_error(await raw(rig.port, b"GET /api HTTP/1.1\r\nHost: a\r\n" + many + b"\r\n"), 431)
    # a head that never ends is cut off as it grows, not buffered
    client = await Client.open(rig.port)
    await client.send(b"GET /api HTTP/1.1\r\nHost: a\r\nX-Endless: ")
    for _ in range(8):
        await client.send(b"z" * 1024)
    assert_error(await client.response(), 431)
    await client.close()
    assert_error(
        await raw(rig.port, b"GET /api/" + b"p" * 5000 + b" HTTP/1.1\r\nHost: a\r\n\r\n"), 414
    )


async def test_body_too_large_is_413(make_rig: RigFactory) -> None:
    rig = await make_rig(API, replicas={"api": [echo]}, gateway={"max_body": "1K"})
    r = await raw(rig.port, b"POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\n\r\n")
    assert_error(r, 413)
    assert rig.backends["api"][0].requests == []


async def test_no_ready_replica_is_503_with_retry_after(make_rig: RigFactory) -> None:
    rig = await make_rig(API)
    r = await raw(rig.port, b"GET /api HTTP/1.1\r\nHost: a\r\n\r\n", closes=False)
    assert_error(r, 503)
    assert r.header("retry-after") == "1"
    assert "api" in r.json()["message"]  # type: ignore[operator]


async def test_a_slow_upstream_is_504(make_rig: RigFactory) -> None:
    async def stuck(request: Request, writer: asyncio.StreamWriter) -> None:
        await request.body()
        await asyncio.sleep(3)

    rig = await make_rig(API, replicas={"api": [stuck]}, gateway={"timeout": "300ms"})
    loop = asyncio.get_running_loop()
    start = loop.time()
    client = await Client.open(rig.port)
    assert_error(await client.request("GET", "/api"), 504)
    assert 0.29 <= loop.time() - start < 1.0
    await client.close()


async def test_a_stalled_response_after_its_head_drops_the_connection(
    make_rig: RigFactory,
) -> None:
    async def stalls(request: Request, writer: asyncio.StreamWriter) -> None:
        await request.body()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        await asyncio.sleep(3)

    rig = await make_rig(API, replicas={"api": [stalls]}, gateway={"timeout": "300ms"})
    client = await Client.open(rig.port)
    await client.send(b"GET /api HTTP/1.1\r\nHost: a\r\n\r\n")
    with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
        await client.response()
    await client.close()


async def test_upstream_that_closes_without_answering_is_502(make_rig: RigFactory) -> None:
    async def hangs_up(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.close()

    rig = await make_rig(API, replicas={"api": [hangs_up]})
    data = b"POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"
    assert_error(await raw(rig.port, data, closes=False), 502)


async def test_upstream_that_answers_garbage_is_502(make_rig: RigFactory) -> None:
    async def garbage(request: Request, writer: asyncio.StreamWriter) -> None:
        await request.body()
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")

    rig = await make_rig(API, replicas={"api": [garbage]})
    assert_error(await raw(rig.port, b"GET /api HTTP/1.1\r\nHost: a\r\n\r\n", closes=False), 502)


async def test_refused_methods_and_expectations(make_rig: RigFactory) -> None:
    rig = await make_rig(API, replicas={"api": [echo]})
    assert_error(await raw(rig.port, b"TRACE /api HTTP/1.1\r\nHost: a\r\n\r\n", closes=False), 405)
    assert_error(await raw(rig.port, b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n"), 405)
    r = await raw(rig.port, b"GET /api HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n")
    assert_error(r, 417)


async def test_errors_are_counted_under_no_route(make_rig: RigFactory) -> None:
    rig = await make_rig(API, replicas={"api": [echo]})
    await raw(rig.port, b"GET /nope HTTP/1.1\r\nHost: a\r\n\r\n", closes=False)
    text = rig.gateway.metrics()
    assert 'shoal_gateway_requests_total{route="-",target="-",code="4xx"} 1' in text
    assert 'shoal_gateway_requests_total{route="/api",target="api",code="2xx"} 1' in text  # again


async def test_an_idle_keep_alive_connection_is_closed(make_rig: RigFactory) -> None:
    from shoal.gateway import Tuning

    rig = await make_rig(API, replicas={"api": [echo]}, tuning=Tuning(keepalive_timeout=0.2))
    client = await Client.open(rig.port)
    assert (await client.request("GET", "/api")).status == 200
    assert await client.closed_by_peer(timeout=1.0)
    await client.close()


async def test_upstream_errors_pass_through_unchanged(make_rig: RigFactory) -> None:
    async def big_error(request: Request, writer: asyncio.StreamWriter) -> None:
        await request.body()
        writer.write(response_bytes(500, b"upstream trace", {"Content-Type": "text/plain"}))

    rig = await make_rig(API, replicas={"api": [big_error]})
    r = await get(rig.port, "/api")
    assert r.status == 500  # the upstream's own errors pass through unchanged
    assert r.body == b"upstream trace"


EVIL = response_bytes(200, b"EVIL!", {"X-Evil": "1"})


async def test_a_response_nobody_asked_for_is_dropped_with_its_connection(
    make_rig: RigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Bytes after a response, in the same read, never reach the client: forwarded, a second
    response would answer the client's next request (response queue poisoning)."""

    async def smuggles(request: Request, writer: asyncio.StreamWriter) -> None:
        await request.body()
        if request.target == "/api/1":
            writer.write(response_bytes(200, b"first") + EVIL)
        elif request.target == "/api/3":  # a 204 whose "body" is really more bytes
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n" + b"HTTP/1.1 200 OK\r\n\r\n")
        else:
            writer.write(response_bytes(200, request.target.encode()))

    rig = await make_rig(API, replicas={"api": [smuggles]})
    client = await Client.open(rig.port)
    try:
        one = await client.request("GET", "/api/1")
        assert (one.status, one.body, one.has("x-evil")) == (200, b"first", False)
        two = await client.request("GET", "/api/2")
        assert (two.status, two.body) == (200, b"/api/2")
        three = await client.request("GET", "/api/3")
        assert (three.status, three.body) == (204, b"")
        four = await client.request("GET", "/api/4")
        assert (four.status, four.body) == (200, b"/api/4")
    finally:
        await client.close()
    backend = rig.backends["api"][0]
    conns = [r.conn for r in backend.requests]
    assert conns[1] != conns[0] and conns[3] != conns[2], conns  # the out-of-step ones closed
    warnings = [r.getMessage() for r in caplog.records if "after its response" in r.getMessage()]
    assert len(warnings) == 2, warnings
    assert f"api#0 sent {len(EVIL)} bytes after its response to GET /api/1" in warnings[0]


async def test_bytes_past_a_body_already_on_its_way_drop_both_connections(
    make_rig: RigFactory,
) -> None:
    """The head went out in an earlier read: where the response ends in the last piece is not
    known, so the client's connection is dropped (its response cut short), as mid-response."""

    async def overruns(request: Request, writer: asyncio.StreamWriter) -> None:
        await request.body()
        if request.target == "/api/1":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b"cd" + EVIL)
        else:
            writer.write(response_bytes(200, b"fine"))

    rig = await make_rig(API, replicas={"api": [overruns]})
    client = await Client.open(rig.port)
    try:
        await client.send(b"GET /api/1 HTTP/1.1\r\nHost: a\r\n\r\n")
        with pytest.raises(asyncio.IncompleteReadError):
            await client.response()
    finally:
        await client.close()
    after = await get(rig.port, "/api/2")
    assert (after.status, after.body) == (200, b"fine")
    backend = rig.backends["api"][0]
    assert backend.requests[1].conn != backend.requests[0].conn
