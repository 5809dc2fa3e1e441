"""Upstream connections: keep-alive pools to the replicas, and the response side of the proxy.

    Endpoint.pool.idle ──pop──▶ an idle UpstreamConnection (LIFO) ──or── connect (a task each)
    UpstreamConnection ──httptools response parser (framing only)──▶ responding.head/data/done
    responding ──back to pool.idle (bounded, swept when idle too long) ──or── closed

Every upstream is a loopback port (``127.0.0.1``): replicas never listen elsewhere. A connection
frames its responses with one httptools parser for its whole life (a fresh one after a HEAD: the
parser cannot be told a HEAD response has no body) and hands the bytes, unchanged, to
:mod:`shoal.gateway.responding`, which cuts hop-by-hop headers from the head.
After a ``101 Switching Protocols`` the connection becomes one end of a raw tunnel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from shoal.gateway import responding

if TYPE_CHECKING:
    from shoal.gateway.exchange import Exchange
    from shoal.gateway.proxy import ClientConnection

log = logging.getLogger(__name__)

_MAX_HEAD = 64 << 10  # bytes of response head accepted from an upstream


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection to a replica; serves one exchange at a time.

    The parser only frames: it has no header or body callbacks, so it builds no Python objects
    per header or body piece. Bytes are forwarded as they came: the head once it is complete
    (trimmed by :func:`shoal.gateway.responding.head`), then the body unchanged.
    """

    __slots__ = (
        "buf",
        "closed",
        "done",
        "exchange",
        "extra",
        "keep_alive",
        "mark",
        "parser",
        "pool",
        "reading_paused",
        "status",
        "transport",
        "tunnel",
    )

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # connection_made
        self.parser = HttpResponseParser(self)
        self.exchange: Exchange | None = None
        self.tunnel: ClientConnection | None = None
        self.buf = b""  # the response so far, until its head is complete
        self.status = 0  # of the response being read; 0 until its head is complete
        self.keep_alive = False
        self.done = False
        self.extra = False  # a second message began after the response, in the same read
        self.closed = False
        self.reading_paused = False
        self.mark = 0  # the pool's sweep count when it went idle

    # ------------------------------------------------------------ transport events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.transport.write(data)
            return
        exchange = self.exchange
        if exchange is None:  # nothing was asked: a broken or confused upstream
            self.abort()
            return
        exchange.conn.ticks += 1
        head_sent = self.status != 0  # (a local: feed_data changes self.status behind mypy)
        if (  # responding.head's conditions for an unchanged response, inline (the hot path)
            not head_sent
            and len(data) == self.pool.usual_size
            and not self.buf
            and exchange.plain
            and data.startswith(self.pool.usual_head)
            and data.startswith(b"\r\n", len(self.pool.usual_head))
            and not exchange.close_after
            and not exchange.conn.discard
            and not exchange.conn.gw.stopping
        ):
            responding.whole(exchange, self, data)  # a whole usual response: no parsing
            return
        if head_sent:  # body bytes
            try:
                self.parser.feed_data(data)
            except HttpParserError:
                if not self.extra:
                    responding.broken(exchange, self, "the upstream sent an invalid response")
                    return
            if self.extra:  # where the response ends in ``data`` is not known: drop both sides
                responding.overrun(exchange, self)
                return
            responding.data(exchange, data)
            if self.done:
                responding.done(exchange, self)
            return
        buf = self.buf + data if self.buf else data
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade as upgrade:
            if not self.extra:
                responding.upgrade(exchange, self, buf, len(buf) - len(data) + upgrade.args[0])
                return
        except HttpParserError:
            if not self.extra:
                responding.broken(exchange, self, "the upstream sent an invalid response")
                return
        if self.extra:  # bytes after the response: the client gets the response alone
            buf = responding.cut(exchange, self, buf)
        if self.status == 0:  # the head is not complete yet
            if len(buf) > _MAX_HEAD:
                responding.broken(exchange, self, "the upstream's response head is too large")
                return
            self.buf = buf
            return
        self.buf = b""
        responding.head(exchange, self, buf)  # and, if the response is complete, done

    def eof_received(self) -> bool | None:
        return None  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.tunnel is not None:
            tunnel, self.tunnel = self.tunnel, None
            tunnel.transport.close()
            return
        exchange = self.exchange
        if exchange is not None:
            self.exchange = None
            responding.lost(exchange, self)
        else:
            self.pool.discard(self)

    def pause_writing(self) -> None:
        client = self.tunnel or (self.exchange.conn if self.exchange is not None else None)
        if client is not None:
            client.pause(client.PAUSE_UPSTREAM)

    def resume_writing(self) -> None:
        client = self.tunnel or (self.exchange.conn if self.exchange is not None else None)
        if client is not None:
            client.resume(client.PAUSE_UPSTREAM)

    # ------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        if self.done:  # a response nobody asked for, or bytes past this one's end
            self.extra = True

    def on_headers_complete(self) -> None:
        if self.extra:
            return  # the next message's head: not this response's status
        status = self.parser.get_status_code()
        if status >= 200 or status == 101:  # interim responses (100, 103) are not forwarded
            self.status = status
            self.keep_alive = self.parser.should_keep_alive()  # False once the message ended

    def on_message_complete(self) -> None:
        if self.status:
            self.done = True

    # ------------------------------------------------------------ life in the pool

    def next_response(self, *, fresh_parser: bool) -> None:
        """Ready for the next exchange; a HEAD response needs a new parser (see the module)."""
        self.status = 0
        self.done = False
        self.extra = False
        self.buf = b""
        if fresh_parser:
            self.parser = HttpResponseParser(self)

    def start_tunnel(self, client: ClientConnection) -> None:
        self.exchange = None
        self.tunnel = client
        self.resume_reading()

    def pause_reading(self) -> None:
        if not self.reading_paused and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()

    def abort(self) -> None:
        """Drop the connection now (its exchange, if any, must already be detached)."""
        self.exchange = None
        if not self.closed:
            self.closed = True
            self.transport.abort()


Connected = Callable[[UpstreamConnection | None, BaseException | None], None]


class UpstreamPool:
    """Idle keep-alive connections to one endpoint (a stack: the warmest goes first).

    Idle connections are swept every half ``idle_timeout``: one idle across three sweeps (more
    than the timeout, at most 1.5 times it) is closed. Releasing a connection costs no clock
    read: it only remembers the sweep count.
    """

    __slots__ = (
        "closed",
        "connecting",
        "idle",
        "idle_timeout",
        "loop",
        "max_idle",
        "port",
        "sweeps",
        "timer",
        "usual_head",
        "usual_size",
        "usual_status",
    )

    def __init__(
        self, port: int, loop: asyncio.AbstractEventLoop, max_idle: int, idle_timeout: float
    ) -> None:
        self.port = port
        self.loop = loop
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.idle: list[UpstreamConnection] = []
        self.connecting: set[asyncio.Task[None]] = set()
        self.closed = False
        self.sweeps = 0
        self.timer: asyncio.TimerHandle | None = None
        self.usual_head = b""  # the last response head found usual (see responding.head)
        self.usual_size = -1  # bytes of a whole response with that head (-1: not known)
        self.usual_status = 0  # its status code

    def connect(self, done: Connected) -> asyncio.Task[None]:
        """Open a new connection; ``done(connection, None)`` or ``done(None, error)`` follows."""
        task = self.loop.create_task(self._connect(done), name=f"gateway:connect:{self.port}")
        self.connecting.add(task)
        task.add_done_callback(self.connecting.discard)
        return task

    async def _connect(self, done: Connected) -> None:
        try:
            _, up = await self.loop.create_connection(
                lambda: UpstreamConnection(self), "127.0.0.1", self.port
            )
        except OSError as exc:
            done(None, exc)
            return
        done(up, None)

    def release(self, up: UpstreamConnection) -> None:
        """Take a connection back after a complete exchange (or close it if it cannot stay)."""
        up.exchange = None
        if up.closed:
            return
        if self.closed or not up.keep_alive or len(self.idle) >= self.max_idle:
            up.closed = True
            up.transport.close()
            return
        up.resume_reading()  # an idle connection must notice the upstream closing it
        up.mark = self.sweeps
        self.idle.append(up)
        if self.timer is None:
            self.arm()

    def arm(self) -> None:
        self.timer = self.loop.call_later(self.idle_timeout / 2, self._sweep)

    def discard(self, up: UpstreamConnection) -> None:
        """An idle connection was closed by the upstream."""
        with contextlib.suppress(ValueError):
            self.idle.remove(up)

    def _sweep(self) -> None:
        self.sweeps += 1
        idle = self.idle
        while idle and self.sweeps - idle[0].mark >= 3:
            up = idle.pop(0)
            up.closed = True
            up.transport.close()
        self.timer = None
        if idle:
            self.arm()

    def close_idle(self) -> None:
        idle, self.idle = self.idle, []
        for up in idle:
            up.closed = True
            up.transport.close()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def close(self) -> None:
        """Close every idle connection and stop connecting; in-use ones close on release."""
        self.closed = True
        self.close_idle()
        for task in list(self.connecting):
            task.cancel()


__all__ = ["UpstreamConnection", "UpstreamPool"]
