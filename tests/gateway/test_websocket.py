"""Websocket upgrades pass through as a raw tunnel; other upgrades are served as plain HTTP."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct

import pytest

from tests.gateway.conftest import RigFactory
from tests.gateway.wire import Client, Request, echo, read_head, response_bytes

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(5)]

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WS = {"ws": {"routes": ["/ws"]}}


def accept_of(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def frame(payload: bytes, *, mask: bool, opcode: int = 1) -> bytes:
    head = bytes([0x80 | opcode])
    size = len(payload)
    bit = 0x80 if mask else 0
    if size < 126:
        head += bytes([bit | size])
    else:
        head += bytes([bit | 126]) + struct.pack("!H", size)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first, second = await reader.readexactly(2)
    size = second & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", await reader.readexactly(2))
    key = await reader.readexactly(4) if second & 0x80 else None
    payload = await reader.readexactly(size)
    if key is not None:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return first & 0x0F, payload


async def ws_echo(request: Request, writer: asyncio.StreamWriter) -> None:
    """A minimal websocket server: handshake, then echo text frames until a close frame."""
    if (request.header("upgrade") or "").lower() != "websocket":
        await request.body()
        writer.write(response_bytes(426, b"websocket only", {"Upgrade": "websocket"}))
        return
    key = request.header("sec-websocket-key") or ""
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_of(key).encode() + b"\r\n\r\n"
    )
    while True:
        opcode, payload = await read_frame(request.reader)
        if opcode == 8:
            writer.write(frame(payload, mask=False, opcode=8))
            await writer.drain()
            writer.close()
            return
        writer.write(frame(b"echo: " + payload, mask=False))
        await writer.drain()


async def handshake(port: int, target: str = "/ws/chat") -> tuple[Client, list[tuple[str, str]]]:
    client = await Client.open(port)
    key = base64.b64encode(os.urandom(16)).decode()
    await client.send(
        f"GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    first, headers = await read_head(client.reader)
    assert first[1] == "101", first
    values = {k.lower(): v for k, v in headers}
    assert values["sec-websocket-accept"] == accept_of(key)
    assert values["upgrade"].lower() == "websocket"
    assert values["connection"].lower() == "upgrade"
    return client, headers


async def test_websocket_is_tunnelled_both_ways(make_rig: RigFactory) -> None:
    rig = await make_rig(WS, replicas={"ws": [ws_echo]})
    client, _ = await handshake(rig.port)
    for text in (b"hello", b"x" * 1000, b"again"):
        await client.send(frame(text, mask=True))
        assert await read_frame(client.reader) == (1, b"echo: " + text)
    await client.send(frame(b"", mask=True, opcode=8))
    assert (await read_frame(client.reader))[0] == 8
    assert await client.closed_by_peer()
    await client.close()
    assert rig.gateway.metrics().count('code="1xx"} 1') == 1


async def test_frames_sent_right_after_the_handshake_arrive(make_rig: RigFactory) -> None:
    rig = await make_rig(WS, replicas={"ws": [ws_echo]})
    client = await Client.open(rig.port)
    key = base64.b64encode(os.urandom(16)).decode()
    await client.send(
        f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        + frame(b"early", mask=True)
    )
    first, _ = await read_head(client.reader)
    assert first[1] == "101"
    assert await read_frame(client.reader) == (1, b"echo: early")
    await client.close()


async def test_a_client_leaving_closes_the_tunnel(make_rig: RigFactory) -> None:
    rig = await make_rig(WS, replicas={"ws": [ws_echo]})
    client, _ = await handshake(rig.port)
    await client.close()
    endpoint = rig.gateway.backends["ws"].endpoints[0]
    while endpoint.outstanding:
        await asyncio.sleep(0.01)
    while rig.backends["ws"][0].in_flight:
        await asyncio.sleep(0.01)


async def test_a_refused_upgrade_is_a_normal_response_then_close(make_rig: RigFactory) -> None:
    async def refuses(request: Request, writer: asyncio.StreamWriter) -> None:
        await request.body()
        writer.write(response_bytes(403, b"no"))

    rig = await make_rig(WS, replicas={"ws": [refuses]})
    client = await Client.open(rig.port)
    await client.send(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: a2V5a2V5a2V5a2V5a2V5aw==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    r = await client.response()
    assert r.status == 403
    assert r.header("connection") == "close"
    assert await client.closed_by_peer()
    await client.close()


async def test_other_upgrades_are_served_as_plain_http(make_rig: RigFactory) -> None:
    rig = await make_rig({"api": {"routes": ["/api"]}}, replicas={"api": [echo]})
    client = await Client.open(rig.port)
    await client.send(
        b"GET /api HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
    )
    r = await client.response()
    assert r.status == 200
    pairs = r.json()["headers"]
    assert isinstance(pairs, list)
    headers = {k.lower() for k, _ in pairs}
    assert "upgrade" not in headers
    assert "http2-settings" not in headers
    await client.close()


async def test_an_unasked_switch_is_502(make_rig: RigFactory) -> None:
    async def switches(request: Request, writer: asyncio.StreamWriter) -> None:
        await request.body()
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")

    rig = await make_rig({"api": {"routes": ["/api"]}}, replicas={"api": [switches]})
    client = await Client.open(rig.port)
    r = await client.request("GET", "/api")
    assert r.status == 502
    await client.close()
