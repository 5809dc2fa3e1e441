"""The events endpoint: the data-plane half of the API, for publishing and nothing else.

The control API (``shoal.api.routes``) is aiohttp: clear, and fast enough to scale, restart or
list things. Publishing is different: services and functions publish on their hot path, and a
bus is judged by its publishes per second. On this kind of machine aiohttp answers a bare 202 at
about a quarter of the rate of a plain asyncio Protocol with httptools, so the bus gets an
endpoint of its own, written like the gateway (STYLE.md habit 14: callbacks, no coroutine per
request, no framework layers), the way AWS keeps SQS's endpoint apart from its control plane.

    POST /v1/topics/{topic}/events   one event (the body, JSON)  -> 202 {"ids": [id]}
    POST /v1/topics/{topic}/batch    a JSON array of events      -> 202 {"ids": [...]}

Same paths, same token (``Authorization: Bearer``), same answers and error bodies as the control
API's routes of the same name; its URL is in ``.shoal/events-url`` and, for functions, in
``SHOAL_EVENTS_URL``. Functions get their own token (``SHOAL_TOKEN``), made per daemon run and
accepted here only: a function can publish, never drive the control API. A 202 is written only
once the event is durable (the bus's group commit).

Per connection, requests are answered in order (HTTP/1.1 pipelining included): each parsed
request joins a queue, its publish starts at once, and responses are written as the head of the
queue completes. Limits: request head 16 KiB (431), body ``max_body`` (413), malformed (400),
other paths (404) and methods (405), as the gateway answers them.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from collections import deque
from collections.abc import Awaitable, Callable
from typing import cast

import httptools

from shoal.errors import ShoalError, ShuttingDown, UnknownName, UsageError

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], Awaitable[list[int]]]

MAX_HEAD = 16 << 10
MAX_BODY = 1 << 20
PATH = re.compile(rb"^/v1/topics/([^/?#]+)/(events|batch)(?:\?.*)?$")
REASONS = {
    202: b"Accepted",
    400: b"Bad Request",
    401: b"Unauthorized",
    404: b"Not Found",
    405: b"Method Not Allowed",
    409: b"Conflict",
    413: b"Payload Too Large",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
}


def error_body(error: str, message: str) -> bytes:
    """The control API's error shape (``ErrorBody``)."""
    return json.dumps({"error": error, "message": message, "problems": []}).encode()


def response(status: int, body: bytes, *, keep_alive: bool) -> bytes:
    head = b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (
        status,
        REASONS.get(status, b"Unknown"),
        len(body),
    )
    return head + (b"\r\n" if keep_alive else b"Connection: close\r\n\r\n") + body


def failure(exc: BaseException) -> tuple[int, bytes]:
    """An exception from a publish, as the control API's middleware maps it."""
    if isinstance(exc, ShuttingDown):
        return 409, error_body("shutting_down", str(exc))
    if isinstance(exc, UnknownName):
        return 404, error_body("not_found", str(exc))
    if isinstance(exc, UsageError):
        return 400, error_body("invalid_request", str(exc))
    if isinstance(exc, ShoalError):
        return 500, error_body(type(exc).__name__, str(exc))
    log.error("events endpoint: a publish failed", exc_info=exc)
    return 500, error_body("internal_error", "internal error (a bug: see the daemon's log)")


class Pending:
    """One parsed request, waiting for its answer (in order)."""

    __slots__ = ("answer", "future", "keep_alive")

    def __init__(self, keep_alive: bool) -> None:
        self.keep_alive = keep_alive
        self.answer: tuple[int, bytes] | None = None
        self.future: asyncio.Future[list[int]] | None = None


class IngestConnection(asyncio.Protocol):
    """One client connection: httptools callbacks, a queue of answers in request order."""

    def __init__(self, server: IngestServer) -> None:
        self.server = server
        self.loop = server.loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.queue: deque[Pending] = deque()
        self.url = b""
        self.auth = b""
        self.head_size = 0
        self.body: list[bytes] = []
        self.body_size = 0
        self.keep_alive = True
        self.refused: tuple[int, bytes] | None = None
        self.closing = False

    # ------------------------------------------------------------------ transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not asyncio's class
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.closing = True
        for item in self.queue:
            if item.future is not None:
                item.future.remove_done_callback(self._settled)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse_now(400, "upgrades are not served here")
        except httptools.HttpParserError:
            status = self.refused[0] if self.refused else 400
            text = "the request head is too large" if status == 431 else "malformed request"
            self._refuse_now(status, text)

    # ------------------------------------------------------------------ parsing

    def on_message_begin(self) -> None:
        self.url = self.auth = b""
        self.head_size = 0
        self.body = []
        self.body_size = 0
        self.refused = None

    def on_url(self, url: bytes) -> None:
        self.url += url
        self._count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        if len(name) == 13 and name.lower() == b"authorization":
            self.auth = value

    def _count(self, size: int) -> None:
        self.head_size += size
        if self.head_size > MAX_HEAD:
            self.refused = (431, b"")
            raise httptools.HttpParserError("head too large")

    def on_headers_complete(self) -> None:
        # read here: httptools says False once the message has ended
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, chunk: bytes) -> None:
        self.body_size += len(chunk)
        if self.body_size <= self.server.max_body:
            self.body.append(chunk)

    def on_message_complete(self) -> None:
        item = Pending(self.keep_alive)
        self.queue.append(item)
        self._start(item)
        self._flush()

    def _start(self, item: Pending) -> None:
        """Refuse the request just parsed (its answer set now), or start its publish."""
        match = PATH.match(self.url)
        if match is None:
            item.answer = 404, error_body("not_found", "this endpoint serves only publishes")
        elif self.parser.get_method() != b"POST":
            item.answer = 405, error_body("method_not_allowed", "publish with POST")
        elif not any(hmac.compare_digest(self.auth, token) for token in self.server.expected):
            item.answer = (
                401,
                error_body("unauthorized", "missing or wrong token (see .shoal/token)"),
            )
        elif self.body_size > self.server.max_body:
            text = f"the body is over {self.server.max_body} bytes"
            item.answer = 413, error_body("payload_too_large", text)
        else:
            try:
                topic = _unquote(match.group(1))
            except ValueError:  # a bad %XX, or not UTF-8
                item.answer = 400, error_body("invalid_request", "the topic name is not valid")
                return
            server = self.server
            publish = server.publish if match.group(2) == b"events" else server.publish_batch
            try:
                future = asyncio.ensure_future(publish(topic, b"".join(self.body)), loop=self.loop)
            except Exception as exc:  # a publish that fails before it can be awaited
                item.answer = failure(exc)
            else:
                item.future = future
                future.add_done_callback(self._settled)

    # ------------------------------------------------------------------ answering

    def _settled(self, future: asyncio.Future[list[int]]) -> None:
        self._flush()

    def _flush(self) -> None:
        """Write every answer at the head of the queue that is ready, in order."""
        transport = self.transport
        while self.queue and not self.closing and transport is not None:
            item = self.queue[0]
            if item.answer is None:
                future = item.future
                if future is None or not future.done():
                    return
                if future.cancelled():
                    item.answer = (409, error_body("shutting_down", "the daemon stopped"))
                elif (exc := future.exception()) is not None:
                    item.answer = failure(exc)
                else:
                    item.answer = (202, b'{"ids":%s}' % json.dumps(future.result()).encode())
            self.queue.popleft()
            status, body = item.answer
            keep = item.keep_alive and not self.server.stopping
            transport.write(response(status, body, keep_alive=keep))
            if not keep:
                self.closing = True
                transport.close()
                return

    def _refuse_now(self, status: int, text: str) -> None:
        """A request that cannot be parsed: answer after the ones before it, then close."""
        item = Pending(keep_alive=False)
        item.answer = (status, error_body("invalid_request", text))
        self.queue.append(item)
        self._flush()
        if self.transport is not None and not self.closing:
            self.transport.pause_reading()


def _unquote(raw: bytes) -> str:
    """A percent-encoded path segment (``orders%2Ecreated``), strictly UTF-8."""
    out = bytearray()
    i = 0
    while i < len(raw):
        byte = raw[i]
        if byte == 0x25:  # %
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
            continue
        out.append(byte)
        i += 1
    return out.decode("utf-8")


class IngestServer:
    """The events endpoint's listener."""

    def __init__(
        self,
        publish: Publish,
        publish_batch: Publish,
        *tokens: str,
        max_body: int = MAX_BODY,
    ) -> None:
        """``tokens``: each is accepted (the daemon's, and the publish-only one functions get)."""
        self.publish = publish
        self.publish_batch = publish_batch
        self.expected = tuple(f"Bearer {token}".encode() for token in tokens)
        self.max_body = max_body
        self.loop = asyncio.get_running_loop()
        self.connections: set[IngestConnection] = set()
        self.stopping = False
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await self.loop.create_server(
            lambda: IngestConnection(self), host, port, reuse_address=True, backlog=1024
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Stop listening; answers already owed are written, then every connection closes."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            if not conn.queue and conn.transport is not None:
                conn.transport.close()
        if self._server is not None:
            await self._server.wait_closed()


__all__ = ["IngestServer", "error_body", "failure", "response"]
