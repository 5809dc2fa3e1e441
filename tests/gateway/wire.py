"""HTTP/1.1 on the wire for the gateway tests: a raw client and a scriptable backend.

Both are written on asyncio streams, byte for byte, so tests see exactly what the gateway sends
(framing, headers, connection reuse) and can misbehave on purpose (slow bodies, garbage,
half-sent requests). Neither is fast or complete; both are strict about what they parse.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class Message:
    """A request (``first`` = method, target) or response (``first`` = status) as received."""

    first: tuple[str, ...]
    headers: list[tuple[str, str]]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    def has(self, name: str) -> bool:
        return any(k.lower() == name.lower() for k, _ in self.headers)

    @property
    def status(self) -> int:
        return int(self.first[0])

    @property
    def method(self) -> str:
        return self.first[0]

    @property
    def target(self) -> str:
        return self.first[1]

    def json(self) -> dict[str, object]:
        data: dict[str, object] = json.loads(self.body)
        return data


async def read_head(reader: asyncio.StreamReader) -> tuple[list[str], list[tuple[str, str]]]:
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")[:-2]
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name, value.strip()))
    return lines[0].split(" ", 2), headers


async def body_chunks(
    reader: asyncio.StreamReader, headers: list[tuple[str, str]], *, until_close: bool
) -> AsyncIterator[bytes]:
    """The body's pieces as they arrive, by Content-Length, chunked framing or connection end."""
    message = Message(("",), headers)
    te = message.header("transfer-encoding")
    length = message.header("content-length")
    if te is not None:
        assert te.lower() == "chunked", te
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            if size == 0:
                assert await reader.readuntil(b"\r\n") == b"\r\n"
                return
            yield await reader.readexactly(size)
            assert await reader.readexactly(2) == b"\r\n"
    elif length is not None:
        left = int(length)
        while left:
            piece = await reader.read(min(left, 65536))
            if not piece:
                raise asyncio.IncompleteReadError(b"", left)
            left -= len(piece)
            yield piece
    elif until_close:
        while piece := await reader.read(65536):
            yield piece


class Client:
    """One client connection to the gateway (keep-alive unless told otherwise)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def request(
        self,
        method: str = "GET",
        target: str = "/",
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        *,
        head: bool = False,
    ) -> Message:
        await self.send(encode_request(method, target, headers, body))
        return await self.response(head=head or method == "HEAD")

    async def response(self, *, head: bool = False) -> Message:
        first, headers = await read_head(self.reader)
        message = Message(tuple(first[1:]), headers)
        if head or message.status in (204, 304) or 100 <= message.status < 200:
            return message
        close = (message.header("connection") or "").lower() == "close"
        message.body = b"".join(
            [p async for p in body_chunks(self.reader, headers, until_close=close)]
        )
        return message

    async def closed_by_peer(self, timeout: float = 2.0) -> bool:
        """Whether the gateway closed the connection (EOF, after any bytes left)."""
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(65536):
                    pass
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        return True


def encode_request(
    method: str = "GET",
    target: str = "/",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> bytes:
    headers = {"Host": "test.local", **(headers or {})}
    if body is not None and "Transfer-Encoding" not in headers:
        headers.setdefault("Content-Length", str(len(body)))
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode("latin-1") + b"\r\n" + (body or b"")


async def get(port: int, target: str = "/", **kwargs: object) -> Message:
    """One request on a fresh connection, closed afterwards."""
    client = await Client.open(port)
    try:
        return await client.request("GET", target, **kwargs)  # type: ignore[arg-type]
    finally:
        await client.close()


@dataclass
class Request:
    """A request as the backend received it; ``read_body`` streams its body."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    reader: asyncio.StreamReader
    conn: int

    def header(self, name: str) -> str | None:
        return Message(("",), self.headers).header(name)

    def chunks(self) -> AsyncIterator[bytes]:
        return body_chunks(self.reader, self.headers, until_close=False)

    async def body(self) -> bytes:
        return b"".join([p async for p in self.chunks()])


Handler = Callable[[Request, asyncio.StreamWriter], Awaitable[None]]


def response_bytes(
    status: int = 200, body: bytes = b"", headers: dict[str, str] | None = None
) -> bytes:
    headers = {"Content-Length": str(len(body)), **(headers or {})}
    head = f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode("latin-1") + b"\r\n" + body


async def echo(request: Request, writer: asyncio.StreamWriter) -> None:
    """Answer with what was asked: method, target, headers, body size, connection number."""
    body = await request.body()
    data = {
        "method": request.method,
        "target": request.target,
        "headers": request.headers,
        "body": len(body),
        "conn": request.conn,
    }
    payload = json.dumps(data).encode()
    writer.write(response_bytes(200, payload, {"Content-Type": "application/json"}))


@dataclass
class Backend:
    """A replica for tests: keep-alive HTTP/1.1, one handler for every request."""

    handler: Handler = echo
    port: int = 0
    connections: int = 0
    requests: list[Request] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self, port: int = 0) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        conn = self.connections
        try:
            while True:
                try:
                    first, headers = await read_head(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                request = Request(first[0], first[1], headers, reader, conn)
                self.requests.append(request)
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
                try:
                    await self.handler(request, writer)
                    await writer.drain()
                finally:
                    self.in_flight -= 1
                if (request.header("connection") or "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:
            # stopped by stop(): end quietly, or asyncio's streams log the cancelled task and
            # never close its transport
            return
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


__all__ = [
    "Backend",
    "Client",
    "Handler",
    "Message",
    "Request",
    "echo",
    "encode_request",
    "get",
    "response_bytes",
]
