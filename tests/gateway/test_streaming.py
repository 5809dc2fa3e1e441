"""Bodies stream through both ways without being buffered whole, with flow control."""

from __future__ import annotations

import asyncio

import pytest

from tests.gateway.conftest import RigFactory
from tests.gateway.wire import Client, Request, body_chunks, read_head, response_bytes

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(5)]


async def test_a_slow_response_streams_to_the_client(make_rig: RigFactory) -> None:
    release = asyncio.Event()

    async def slow(request: Request, writer: asyncio.StreamWriter) -> None:
        await request.body()
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await release.wait()  # the rest only once the client has seen the first part
        writer.write(b"4\r\nlast\r\n0\r\n\r\n")

    rig = await make_rig({"s": {"routes": ["/s"]}}, replicas={"s": [slow]})
    client = await Client.open(rig.port)
    await client.send(b"GET /s HTTP/1.1\r\nHost: a\r\n\r\n")
    _, headers = await read_head(client.reader)
    pieces = body_chunks(client.reader, headers, until_close=False)
    assert await anext(pieces) == b"first"
    release.set()
    assert [p async for p in pieces] == [b"last"]
    await client.close()


async def test_a_slow_upload_streams_to_the_replica(make_rig: RigFactory) -> None:
    got_first = asyncio.Event()
    received: list[bytes] = []

    async def reader(request: Request, writer: asyncio.StreamWriter) -> None:
        async for piece in request.chunks():
            received.append(piece)
            got_first.set()
        writer.write(response_bytes(200, b"%d" % sum(map(len, received))))

    rig = await make_rig({"u": {"routes": ["/u"]}}, replicas={"u": [reader]})
    client = await Client.open(rig.port)
    await client.send(b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhello")
    await asyncio.wait_for(got_first.wait(), 2)  # before the client sends the rest
    assert b"".join(received) == b"hello"
    await client.send(b"world")
    r = await client.response()
    assert r.body == b"10"
    await client.close()


async def test_a_chunked_upload_streams_and_keeps_its_framing(make_rig: RigFactory) -> None:
    got_first = asyncio.Event()

    async def reader(request: Request, writer: asyncio.StreamWriter) -> None:
        total = 0
        async for piece in request.chunks():
            total += len(piece)
            got_first.set()
        writer.write(response_bytes(200, b"%d" % total))

    rig = await make_rig({"u": {"routes": ["/u"]}}, replicas={"u": [reader]})
    client = await Client.open(rig.port)
    await client.send(
        b"POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    )
    await asyncio.wait_for(got_first.wait(), 2)
    await client.send(b"6\r\n world\r\n0\r\n\r\n")
    assert (await client.response()).body == b"11"
    await client.close()


async def test_large_bodies_both_ways_with_a_slow_reader(make_rig: RigFactory) -> None:
    size = 4 << 20

    async def mirror(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        async for piece in request.chunks():
            writer.write(piece)
            await writer.drain()

    rig = await make_rig(
        {"m": {"routes": ["/m"]}}, replicas={"m": [mirror]}, gateway={"max_body": "8M"}
    )
    client = await Client.open(rig.port)
    block = bytes(range(256)) * 256  # 64 KiB

    async def upload() -> None:
        await client.send(b"POST /m HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size)
        for _ in range(size // len(block)):
            await client.send(block)

    sender = asyncio.create_task(upload())
    _, headers = await read_head(client.reader)
    total = 0
    async for piece in body_chunks(client.reader, headers, until_close=False):
        total += len(piece)
        if total < size // 2:
            await asyncio.sleep(0.001)  # a slow reader: the gateway must pause, not buffer all
    await sender
    assert total == size
    await client.close()


async def test_chunked_upload_over_max_body_is_413_as_it_streams(make_rig: RigFactory) -> None:
    async def reader(request: Request, writer: asyncio.StreamWriter) -> None:
        await request.body()
        writer.write(response_bytes(200, b"ok"))

    rig = await make_rig(
        {"u": {"routes": ["/u"]}}, replicas={"u": [reader]}, gateway={"max_body": "10K"}
    )
    client = await Client.open(rig.port)
    await client.send(b"POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    piece = b"x" * 4096
    for _ in range(4):  # 16 KiB in chunks: the fourth crosses the limit
        await client.send(b"%x\r\n%b\r\n" % (len(piece), piece))
    r = await client.response()
    assert r.status == 413
    assert r.header("connection") == "close"
    assert await client.closed_by_peer()
    await client.close()
