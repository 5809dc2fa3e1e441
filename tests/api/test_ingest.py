"""The events endpoint over real sockets: answers in order, the control API's errors, limits.

The publish it calls is a small in-memory one here, so each answer can be reached on purpose;
the daemon's real bus behind it is exercised in tests/daemon/test_events.py (the SDK inside a
function publishes through this endpoint) and tests/daemon/test_events_durability.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from shoal.api.ingest import IngestServer
from shoal.errors import ShuttingDown, UnknownName, UsageError

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(20)]

TOKEN = "t0ken"
AUTH = f"Authorization: Bearer {TOKEN}\r\n"


class Bus:
    """Publishes in memory; a topic named ``slow`` waits for ``release``; ``gone`` is unknown."""

    def __init__(self) -> None:
        self.events: list[tuple[str, bytes]] = []
        self.release = asyncio.Event()
        self.closing = False

    async def publish(self, topic: str, body: bytes) -> list[int]:
        if self.closing:
            raise ShuttingDown("the daemon is shutting down")
        if topic == "gone":
            raise UnknownName("no topic named 'gone'")
        if topic == "boom":
            raise RuntimeError("a bug")
        try:
            json.loads(body)
        except ValueError:
            raise UsageError("the event is not JSON") from None
        if topic == "slow":
            await self.release.wait()
        self.events.append((topic, body))
        return [len(self.events)]

    async def publish_batch(self, topic: str, body: bytes) -> list[int]:
        ids = []
        for item in json.loads(body):
            ids += await self.publish(topic, json.dumps(item).encode())
        return ids


@pytest_asyncio.fixture
async def served() -> AsyncIterator[tuple[IngestServer, Bus]]:
    bus = Bus()
    server = IngestServer(bus.publish, bus.publish_batch, TOKEN, max_body=1024)
    await server.start()
    yield server, bus
    await server.stop()


def post(path: str, body: bytes, *, auth: str = AUTH, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\n{auth}{extra}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def exchange(
    port: int, data: bytes, answers: int = 1
) -> list[tuple[int, dict[str, str], bytes]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    out = []
    try:
        for _ in range(answers):
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            headers = dict(line.split(": ", 1) for line in lines[1:] if line)
            body = await reader.readexactly(int(headers["Content-Length"]))
            out.append((int(lines[0].split()[1]), headers, body))
    finally:
        writer.close()
    return out


async def test_publish_answers_202_with_the_id(served: tuple[IngestServer, Bus]) -> None:
    server, bus = served
    [(status, headers, body)] = await exchange(
        server.port, post("/v1/topics/orders.created/events", b'{"id": 1}')
    )
    assert (status, json.loads(body)) == (202, {"ids": [1]})
    assert headers["Content-Type"] == "application/json"
    assert bus.events == [("orders.created", b'{"id": 1}')]


async def test_batch_and_percent_encoded_topic(served: tuple[IngestServer, Bus]) -> None:
    server, bus = served
    [(status, _, body)] = await exchange(
        server.port, post("/v1/topics/orders%2Ecreated/batch", b'[{"a": 1}, {"b": 2}]')
    )
    assert (status, json.loads(body)) == (202, {"ids": [1, 2]})
    assert [t for t, _ in bus.events] == ["orders.created", "orders.created"]


@pytest.mark.parametrize(
    ("request_bytes", "status", "error"),
    [
        (post("/v1/topics/t/events", b"{}", auth=""), 401, "unauthorized"),
        (post("/v1/topics/t/events", b"{}", auth="Authorization: Bearer nope\r\n"), 401, None),
        (post("/v1/topics/gone/events", b"{}"), 404, "not_found"),
        (post("/v1/instances", b"{}"), 404, "not_found"),
        (post("/v1/topics/t/events", b"not json"), 400, "invalid_request"),
        (post("/v1/topics/%ff/events", b"{}"), 400, "invalid_request"),
        (post("/v1/topics/t/events", b"x" * 2000), 413, "payload_too_large"),
        (post("/v1/topics/boom/events", b"{}"), 500, "internal_error"),
        (b"GET /v1/topics/t/events HTTP/1.1\r\nHost: x\r\n" + AUTH.encode() + b"\r\n", 405, None),
    ],
)
async def test_refusals_use_the_control_apis_statuses_and_shape(
    served: tuple[IngestServer, Bus], request_bytes: bytes, status: int, error: str | None
) -> None:
    server, bus = served
    [(got, _, body)] = await exchange(server.port, request_bytes)
    answer = json.loads(body)
    assert got == status and set(answer) == {"error", "message", "problems"}
    if error is not None:
        assert answer["error"] == error
    assert bus.events == []


async def test_pipelined_answers_keep_request_order(served: tuple[IngestServer, Bus]) -> None:
    """A slow publish first, a fast one after it on the same connection: answered in order."""
    server, bus = served
    data = post("/v1/topics/slow/events", b'{"n": 1}') + post("/v1/topics/fast/events", b"{}")
    task = asyncio.ensure_future(exchange(server.port, data, answers=2))
    await asyncio.sleep(0.1)
    assert not task.done() and bus.events == [("fast", b"{}")]  # published, answer held back
    bus.release.set()
    answers = await task
    assert [json.loads(b) for _, _, b in answers] == [{"ids": [2]}, {"ids": [1]}]


async def test_keep_alive_serves_many_then_close_is_honoured(
    served: tuple[IngestServer, Bus],
) -> None:
    server, _ = served
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    for n in range(3):
        writer.write(post("/v1/topics/t/events", b"{}"))
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 202 Accepted\r\n"), n
        assert b"Connection: close" not in head
        await reader.readexactly(len(b'{"ids":[0]}') + len(str(n + 1)) - 1)
    writer.write(post("/v1/topics/t/events", b"{}", extra="Connection: close\r\n"))
    answer = await reader.read()  # to the end: the server closes
    writer.close()
    assert b"Connection: close" in answer and answer.startswith(b"HTTP/1.1 202")


async def test_malformed_and_oversized_heads_get_4xx_and_the_server_keeps_serving(
    served: tuple[IngestServer, Bus],
) -> None:
    server, _ = served
    [(status, _, _)] = await exchange(server.port, b"BREW /pot HTCPCP/1.0\r\n\r\n")
    assert status == 400
    huge = post("/v1/topics/t/events", b"{}", extra=f"X-Pad: {'a' * 20000}\r\n")
    [(status, _, _)] = await exchange(server.port, huge)
    assert status == 431
    [(status, _, _)] = await exchange(server.port, post("/v1/topics/t/events", b"{}"))
    assert status == 202


async def test_shutting_down_is_409(served: tuple[IngestServer, Bus]) -> None:
    server, bus = served
    bus.closing = True
    [(status, _, body)] = await exchange(server.port, post("/v1/topics/t/events", b"{}"))
    assert status == 409 and json.loads(body)["error"] == "shutting_down"
