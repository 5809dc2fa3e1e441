"""Proxying over real sockets: what reaches the replica, what comes back, and connection reuse."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.gateway.conftest import RigFactory
from tests.gateway.wire import Client, Message, Request, echo, get, response_bytes

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(5)]

API = {"api": {"routes": [{"path": "/api", "strip_prefix": True}, "/keep"]}}


def seen(message: Message) -> dict[str, object]:
    """The echo backend's view of the request."""
    return message.json()


def headers_of(message: Message) -> dict[str, str]:
    data = seen(message)
    pairs = data["headers"]
    assert isinstance(pairs, list)
    return {k.lower(): v for k, v in pairs}


async def test_forwards_to_the_route_and_strips_the_prefix(make_rig: RigFactory) -> None:
    rig = await make_rig(API, replicas={"api": [echo]})
    r = await get(rig.port, "/api/items?page=2")
    assert r.status == 200
    assert seen(r)["target"] == "/items?page=2"
    r = await get(rig.port, "/keep/items")
    assert seen(r)["target"] == "/keep/items"
    r = await get(rig.port, "/api")
    assert seen(r)["target"] == "/"


async def test_adds_forwarding_headers_and_a_request_id(make_rig: RigFactory) -> None:
    rig = await make_rig(API, replicas={"api": [echo]})
    r = await get(rig.port, "/api/x", headers={"Host": "Shop.Local:8000"})
    h = headers_of(r)
    assert h["x-forwarded-for"] == "127.0.0.1"
    assert h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-host"] == "Shop.Local:8000"
    assert h["host"] == "Shop.Local:8000"
    assert len(h["x-request-id"]) > 8
    r2 = await get(rig.port, "/api/x")
    assert headers_of(r2)["x-request-id"] != h["x-request-id"]


async def test_keeps_a_clients_request_id_and_appends_to_its_forwarded_for(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(API, replicas={"api": [echo]})
    r = await get(
        rig.port,
        "/api/x",
        headers={
            "X-Request-Id": "abc-123",
            "X-Forwarded-For": "10.0.0.1",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "evil.example",
        },
    )
    h = headers_of(r)
    assert h["x-request-id"] == "abc-123"
    assert h["x-forwarded-for"] == "10.0.0.1, 127.0.0.1"
    assert h["x-forwarded-proto"] == "http"  # the gateway's word, never the client's
    assert h["x-forwarded-host"] == "test.local"
    r = await get(rig.port, "/api/x", headers={"X-Request-Id": "bad id with spaces"})
    assert headers_of(r)["x-request-id"] != "bad id with spaces"


async def test_strips_hop_by_hop_request_headers(make_rig: RigFactory) -> None:
    rig = await make_rig(API, replicas={"api": [echo]})
    r = await get(
        rig.port,
        "/api/x",
        headers={
            "Connection": "keep-alive, X-Secret",
            "X-Secret": "hop",
            "Keep-Alive": "timeout=5",
            "Proxy-Authorization": "Basic eA==",
            "TE": "trailers",
            "Trailer": "X-T",
            "Upgrade": "h2c",
            "X-Kept": "yes",
        },
    )
    h = headers_of(r)
    for name in ("connection", "x-secret", "keep-alive", "proxy-authorization", "te", "trailer"):
        assert name not in h, name
    assert "upgrade" not in h
    assert h["x-kept"] == "yes"


async def hop_heavy(request: Request, writer: asyncio.StreamWriter) -> None:
    await request.body()
    writer.write(
        response_bytes(
            200,
            b"hello",
            {
                "Connection": "keep-alive, X-Internal",
                "X-Internal": "secret",
                "Keep-Alive": "timeout=5",
                "Proxy-Authenticate": "Basic",
                "Trailer": "X-T",
                "Upgrade": "h2c",
                "X-App": "kept",
            },
        )
    )


async def test_strips_hop_by_hop_response_headers(make_rig: RigFactory) -> None:
    rig = await make_rig(API, replicas={"api": [hop_heavy]})
    r = await get(rig.port, "/api/x")
    assert r.status == 200
    assert r.body == b"hello"
    for name in ("x-internal", "keep-alive", "proxy-authenticate", "trailer", "upgrade"):
        assert not r.has(name), name
    assert r.header("connection") is None
    assert r.header("x-app") == "kept"


async def plain_keepalive(request: Request, writer: asyncio.StreamWriter) -> None:
    await request.body()
    writer.write(response_bytes(200, b"ok", {"Connection": "keep-alive", "X-App": "1"}))


async def test_the_usual_response_passes_unchanged(make_rig: RigFactory) -> None:
    # "Connection: keep-alive" is what the gateway says of its own connection to this client
    # too (RFC 9110 §7.6.1: an intermediary may replace the field with its own options)
    rig = await make_rig(API, replicas={"api": [plain_keepalive]})
    client = await Client.open(rig.port)
    await client.send(b"GET /api/x HTTP/1.1\r\nHost: a\r\n\r\n")
    raw = await client.reader.readuntil(b"ok")
    await client.send(b"GET /api/y HTTP/1.1\r\nHost: a\r\n\r\n")  # and the connection lives on
    again = await client.reader.readuntil(b"ok")
    await client.close()
    expected = (
        b"HTTP/1.1 200 X\r\nContent-Length: 2\r\nConnection: keep-alive\r\nX-App: 1\r\n\r\nok"
    )
    assert raw == again == expected


HEADS = [
    {"X-App": "1"},
    {"X-App": "1"},  # the same head again: known usual
    {"X-App": "1", "Keep-Alive": "timeout=5"},  # the same head, then a hop-by-hop line
    {"X-App": "2", "Connection": "close, X-App"},
    {"X-App": "1"},
]


async def heads_in_turn(request: Request, writer: asyncio.StreamWriter) -> None:
    await request.body()
    index = int(request.target.rsplit("/", 1)[1])
    writer.write(response_bytes(200, b"ok", HEADS[index]))


async def test_a_head_like_the_last_usual_one_is_checked_from_where_it_differs(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(API, replicas={"api": [heads_in_turn]})
    for index, sent in enumerate(HEADS):
        r = await get(rig.port, f"/api/{index}")
        assert r.status == 200 and r.body == b"ok"
        assert not r.has("keep-alive"), index
        if "Connection" in sent:
            assert not r.has("x-app")  # named by Connection: hop-by-hop
        else:
            assert r.header("x-app") == sent["X-App"]


USUAL = {"Connection": "keep-alive", "X-App": "1"}


async def same_head(request: Request, writer: asyncio.StreamWriter) -> None:
    """The same head every time (Content-Length 2); a HEAD answer without its body; a split
    answer (head, then the body later) for ``/split``."""
    await request.body()
    whole = response_bytes(200, b"ok", USUAL)
    if request.method == "HEAD":
        writer.write(whole[:-2])
    elif request.target.endswith("/split"):
        writer.write(whole[:-2])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"ok")
    else:
        writer.write(whole)


async def test_whole_usual_responses_skip_parsing_and_the_parser_stays_in_step(
    make_rig: RigFactory,
) -> None:
    # After the first usual response, a whole response with the same head in one read is sent
    # on unparsed; a HEAD answer, a split one and the next whole ones must all still frame right
    # on the one upstream connection.
    rig = await make_rig(API, replicas={"api": [same_head]})
    client = await Client.open(rig.port)
    sequence = ["GET /a", "GET /b", "GET /c", "HEAD /d", "GET /e", "GET /split", "GET /f"]
    for step in sequence:
        method, target = step.split()
        r = await client.request(method, f"/api{target}")
        assert r.status == 200, step
        assert r.header("x-app") == "1" and r.header("content-length") == "2", step
        assert r.body == (b"" if method == "HEAD" else b"ok"), step
    await client.close()
    backend = rig.backends["api"][0]
    assert len(backend.requests) == len(sequence)
    assert backend.connections == 1


async def test_keep_alive_reuses_connections_on_both_sides(make_rig: RigFactory) -> None:
    rig = await make_rig(API, replicas={"api": [echo]})
    client = await Client.open(rig.port)
    for i in range(5):
        r = await client.request("GET", f"/api/{i}")
        assert r.status == 200
        assert r.header("connection") is None
    await client.close()
    other = await Client.open(rig.port)
    assert (await other.request("GET", "/api/again")).status == 200
    await other.close()
    backend = rig.backends["api"][0]
    assert len(backend.requests) == 6
    assert backend.connections == 1  # one pooled upstream connection served all six


async def test_http10_client_gets_a_closed_or_kept_connection_as_asked(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(API, replicas={"api": [echo]})
    client = await Client.open(rig.port)
    await client.send(b"GET /api/x HTTP/1.0\r\n\r\n")
    r = await client.response()
    assert r.status == 200
    assert await client.closed_by_peer()
    await client.close()
    client = await Client.open(rig.port)
    await client.send(b"GET /api/x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    r = await client.response()
    assert r.header("connection") == "keep-alive"
    await client.send(b"GET /api/y HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    r = await client.response()
    assert seen(r)["target"] == "/y"
    await client.close()


async def test_connection_close_from_the_client_is_honoured(make_rig: RigFactory) -> None:
    rig = await make_rig(API, replicas={"api": [echo]})
    client = await Client.open(rig.port)
    r = await client.request("GET", "/api/x", headers={"Connection": "close"})
    assert r.status == 200
    assert r.header("connection") == "close"
    assert await client.closed_by_peer()
    await client.close()


async def test_head_gets_headers_and_no_body(make_rig: RigFactory) -> None:
    async def head_aware(request: Request, writer: asyncio.StreamWriter) -> None:
        await request.body()
        body = b"x" * 100
        head = response_bytes(200, body, {"X-Method": request.method})
        writer.write(head[: -len(body)] if request.method == "HEAD" else head)

    rig = await make_rig(API, replicas={"api": [head_aware]})
    client = await Client.open(rig.port)
    r = await client.request("HEAD", "/api/x")
    assert r.status == 200
    assert r.header("content-length") == "100"
    assert r.header("x-method") == "HEAD"
    r = await client.request("GET", "/api/x")  # the same connections still work after a HEAD
    assert r.body == b"x" * 100
    r = await client.request("HEAD", "/api/x")
    assert r.header("content-length") == "100"
    await client.close()
    assert rig.backends["api"][0].connections == 1


async def test_chunked_and_close_delimited_responses(make_rig: RigFactory) -> None:
    async def chunked(request: Request, writer: asyncio.StreamWriter) -> None:
        await request.body()
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in (b"hello ", b"chunked ", b"world"):
            writer.write(b"%x\r\n%b\r\n" % (len(part), part))
            await writer.drain()
        writer.write(b"0\r\n\r\n")

    async def until_close(request: Request, writer: asyncio.StreamWriter) -> None:
        await request.body()
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
        await writer.drain()
        writer.close()

    rig = await make_rig(
        {"c": {"routes": ["/c"]}, "e": {"routes": ["/e"]}},
        replicas={"c": [chunked], "e": [until_close]},
    )
    client = await Client.open(rig.port)
    r = await client.request("GET", "/c")
    assert r.header("transfer-encoding") == "chunked"
    assert r.body == b"hello chunked world"
    r = await client.request("GET", "/e")  # re-framed as chunks for a keep-alive client
    assert r.header("transfer-encoding") == "chunked"
    assert r.body == b"until the end"
    r = await client.request("GET", "/c")
    assert r.body == b"hello chunked world"
    await client.close()


async def test_204_and_304_have_no_body(make_rig: RigFactory) -> None:
    async def empty(request: Request, writer: asyncio.StreamWriter) -> None:
        await request.body()
        status = 204 if request.target == "/n/none" else 304
        writer.write(f'HTTP/1.1 {status} X\r\nETag: "1"\r\n\r\n'.encode())

    rig = await make_rig({"n": {"routes": ["/n"]}}, replicas={"n": [empty]})
    client = await Client.open(rig.port)
    assert (await client.request("GET", "/n/none")).status == 204
    assert (await client.request("GET", "/n/cached")).status == 304
    assert (await client.request("GET", "/n/none")).status == 204
    await client.close()


async def test_expect_100_continue(make_rig: RigFactory) -> None:
    rig = await make_rig(API, replicas={"api": [echo]})
    client = await Client.open(rig.port)
    await client.send(
        b"POST /api/upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    interim = await client.response()
    assert interim.status == 100
    await client.send(b"hello")
    r = await client.response()
    assert r.status == 200
    assert seen(r)["body"] == 5
    assert "expect" not in headers_of(r)  # answered by the gateway, not passed on
    await client.close()


async def test_expect_100_continue_is_not_sent_for_a_body_too_large(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(API, replicas={"api": [echo]}, gateway={"max_body": "1K"})
    client = await Client.open(rig.port)
    await client.send(
        b"POST /api/upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n"
        b"Expect: 100-continue\r\n\r\n"
    )
    r = await client.response()
    assert r.status == 413
    await client.close()


async def test_pipelined_requests_are_answered_in_order(make_rig: RigFactory) -> None:
    async def slow_first(request: Request, writer: asyncio.StreamWriter) -> None:
        await request.body()
        if request.target == "/first":
            await asyncio.sleep(0.1)
        writer.write(response_bytes(200, request.target.encode()))

    rig = await make_rig(
        {"p": {"routes": ["/"]}}, replicas={"p": [slow_first, slow_first, slow_first]}
    )
    client = await Client.open(rig.port)
    await client.send(
        b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /second HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /third HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    bodies = [(await client.response()).body for _ in range(3)]
    assert bodies == [b"/first", b"/second", b"/third"]
    await client.close()


async def test_post_body_reaches_the_replica(make_rig: RigFactory) -> None:
    rig = await make_rig(API, replicas={"api": [echo]})
    client = await Client.open(rig.port)
    body = json.dumps({"x": "y" * 10000}).encode()
    r = await client.request("POST", "/api/items", body=body)
    assert seen(r)["body"] == len(body)
    r = await client.request(
        "PUT",
        "/api/items",
        headers={"Transfer-Encoding": "chunked"},
        body=b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    assert seen(r)["body"] == 11
    assert headers_of(r)["transfer-encoding"] == "chunked"
    await client.close()


async def test_interim_responses_are_not_forwarded(make_rig: RigFactory) -> None:
    async def hints(request: Request, writer: asyncio.StreamWriter) -> None:
        await request.body()
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(response_bytes(200, b"final"))

    rig = await make_rig(API, replicas={"api": [hints]})
    client = await Client.open(rig.port)
    for _ in range(2):
        r = await client.request("GET", "/api/x")
        assert (r.status, r.body) == (200, b"final")
        assert not r.has("link")
    await client.close()


async def test_http10_requests_go_upstream_as_http10(make_rig: RigFactory) -> None:
    versions: list[str] = []

    async def version(request: Request, writer: asyncio.StreamWriter) -> None:
        await request.body()
        versions.append(request.header("connection") or "")
        writer.write(response_bytes(200, b"ok"))

    rig = await make_rig(API, replicas={"api": [version]})
    client = await Client.open(rig.port)
    await client.send(b"GET /api/x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert (await client.response()).body == b"ok"
    await client.close()
    assert versions == ["keep-alive"]  # an HTTP/1.0 request asks for keep-alive explicitly
