"""The client side of the proxy: one asyncio Protocol per client connection (the hot path).

    client bytes ──httptools request parser──▶ on_url (a new Exchange) / on_header /
        on_headers_complete (limits, routing, the upstream request head) ──▶ Exchange.dispatch
        on_body / on_message_complete ──▶ Exchange.request_body / request_done
    responding.head/data ──▶ client bytes (written straight to the transport)

Plain callbacks, no coroutine per request (STYLE.md habit 14, after uvicorn's httptools
protocol). Per connection: one parser for its life, a queue of pipelined exchanges answered in
order, and one timer with a period of a quarter of the shorter timeout: reads on either side bump
a counter, and a timeout is that many quiet periods in a row, so no request reads the clock.

Malformed requests are refused with a 4xx by raising :class:`Reject` inside a parser callback
(which stops the parser) and answering once the parser has returned; the connection then closes
*lingering*: our side is shut for writing and what the client still sends is read and dropped
for a moment, so the client reads its 4xx instead of a reset. A clean request that has no route
(404, 405) or no replica (503) is answered on a connection that stays open.

Flow control both ways: the client's reading pauses for any reason in :attr:`paused` (upstream
write buffer full, body waiting for an upstream connection, pipelined requests queued); when the
client's write buffer is full, the upstream connection's reading pauses.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING

from httptools import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserUpgrade,
    HttpRequestParser,
)

from shoal.gateway.balancing import Endpoint
from shoal.gateway.exchange import NOTHING_YET, Exchange
from shoal.gateway.messages import (
    CHUNKED,
    CONNECTION,
    CONTENT_LENGTH,
    EXPECT,
    FORWARDED_FOR,
    HOST,
    IDEMPOTENT,
    REQUEST_HEADERS,
    REQUEST_ID,
    TRANSFER_ENCODING,
    UPGRADE,
    connection_tokens,
    error_response,
    is_chunked,
    sane_request_id,
    without_headers,
)
from shoal.gateway.routing import REFUSED_METHODS, RouteError

if TYPE_CHECKING:
    from shoal.gateway.server import Gateway
    from shoal.gateway.upstreams import UpstreamConnection

log = logging.getLogger(__name__)

_COLON = b": "
_CRLF = b"\r\n"
_PLAIN_TOKENS = frozenset((b"close", b"keep-alive", b"upgrade"))
_FORWARDED_HOST = (
    b"X-Forwarded-For: %b\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: %b\r\n"
    b"X-Request-Id: %b\r\n"
)
_FORWARDED = b"X-Forwarded-For: %b\r\nX-Forwarded-Proto: http\r\nX-Request-Id: %b\r\n"
_FORWARDED_USUAL = _FORWARDED_HOST.replace(b"X-Request-Id: %b", b"X-Request-Id: %b%x")
_LINGER = 2.0  # seconds a closing connection keeps reading (and dropping) what the client sends


class Reject(Exception):
    """Raised in a parser callback: answer the request with this status and close."""

    def __init__(self, status: int, message: str, allow: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.allow = allow


class ClientConnection(asyncio.Protocol):
    """One client connection: parses requests, hands them to exchanges, writes responses."""

    PAUSE_UPSTREAM = 1
    PAUSE_PENDING = 2
    PAUSE_PIPELINE = 4
    PAUSE_STOPPED = 8

    __slots__ = (
        "client_ip",
        "closed",
        "current",
        "discard",
        "gw",
        "head_bytes",
        "head_size",
        "in_head",
        "lingering",
        "loop",
        "max_body",
        "max_header",
        "parser",
        "parsing",
        "paused",
        "queue",
        "quiet",
        "seen",
        "special",
        "ticks",
        "timer",
        "transport",
        "tunnel",
        "tunnel_endpoint",
        "upgrading",
        "write_paused",
    )

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.loop = gw.loop
        self.max_header = gw.max_header
        self.max_body = gw.max_body
        self.parser = HttpRequestParser(self)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # connection_made
        self.client_ip = b""
        self.current: Exchange | None = None  # the exchange whose response is next
        self.parsing: Exchange | None = None  # the exchange the parser is filling
        self.queue: deque[Exchange] = deque()  # pipelined behind the current one
        self.upgrading: Exchange | None = None
        self.tunnel: UpstreamConnection | None = None
        self.tunnel_endpoint: Endpoint | None = None
        self.special = False  # tunnel, upgrading or discard: data_received's slow path
        self.paused = 0
        self.write_paused = False
        self.in_head = True
        self.head_bytes = 0
        self.head_size = 0
        self.discard = False
        self.lingering = False
        self.closed = False
        self.ticks = 0  # bumped by every read on either side: the timer's sign of life
        self.seen = 0
        self.quiet = 0  # timer periods in a row without a tick
        self.timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------ transport events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.client_ip = str(peer[0]).encode("ascii") if peer else b"unknown"
        self.gw.connections.add(self)
        self.timer = self.loop.call_later(self.gw.period, self._on_timer)

    def data_received(self, data: bytes) -> None:
        if self.special:
            self._special_data(data)
            return
        self.ticks += 1
        if self.in_head:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade as upgrade:
            self._upgraded(data[upgrade.args[0] :])
        except HttpParserCallbackError as exc:
            reason = exc.__context__
            if isinstance(reason, Reject):
                self.reject(reason.status, reason.message, reason.allow)
            else:
                log.error("gateway: bug while reading a request", exc_info=reason)
                self.reject(500, "the gateway failed on this request")
        except HttpParserError:
            self.reject(400, "malformed request")
        else:
            if self.in_head and self.head_bytes > self.max_header:
                self.reject(431, "request header fields too large")

    def _special_data(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.transport.write(data)
        elif self.upgrading is not None:
            self.upgrading.send_up(data)
        # else: discarding what follows an error

    def eof_received(self) -> bool | None:
        # A client that stops sending has gone, as nginx sees it too: requests in flight are
        # abandoned (499) and the connection closes; held requests free their place at once.
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.gw.forget(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.tunnel is not None:
            up, self.tunnel = self.tunnel, None
            up.tunnel = None
            up.abort()
            endpoint, self.tunnel_endpoint = self.tunnel_endpoint, None
            if endpoint is not None:
                endpoint.outstanding -= 1
                if endpoint.outstanding == 0:
                    endpoint.settle(self.gw.backends.get(endpoint.service))
        exchanges = [self.current, *self.queue, self.parsing, self.upgrading]
        self.current, self.parsing, self.upgrading = None, None, None
        self.queue.clear()
        for ex in exchanges:
            if ex is not None:
                ex.client_lost()

    def pause_writing(self) -> None:
        self.write_paused = True
        up = self.tunnel
        if up is None and self.current is not None:
            up = self.current.upstream
        if up is not None:
            up.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        up = self.tunnel
        if up is None and self.current is not None:
            up = self.current.upstream
        if up is not None:
            up.resume_reading()

    # ------------------------------------------------------------ parser callbacks

    def on_url(self, url: bytes) -> None:
        ex = self.parsing
        if ex is None:  # a new message (on_url always comes first; no on_message_begin needed)
            ex = self.parsing = Exchange(self)
            self.in_head = True
            self.head_size = len(url)
            if self.current is None:
                self.current = ex
            else:
                self.queue.append(ex)
                self.pause(self.PAUSE_PIPELINE)
            ex.target = url
        else:
            ex.target += url
            self.head_size += len(url)
        if self.head_size > self.max_header:
            raise Reject(414, "the request target is too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        ex = self.parsing
        assert ex is not None
        self.head_size += len(name) + len(value) + 4
        if self.head_size > self.max_header:
            raise Reject(431, "request header fields too large")
        code = REQUEST_HEADERS.get(name.lower())
        if code is None:
            ex.parts += (name, _COLON, value, _CRLF)
        elif code == HOST:
            if ex.host is not None:
                raise Reject(400, "more than one Host header")
            ex.host = value
            ex.parts += (name, _COLON, value, _CRLF)
        else:
            self._special_header(ex, code, name, value)

    def _special_header(self, ex: Exchange, code: int, name: bytes, value: bytes) -> None:
        if code == CONTENT_LENGTH:
            try:
                ex.length = int(value)
            except ValueError:
                raise Reject(400, "invalid Content-Length") from None
            ex.parts += (name, _COLON, value, _CRLF)
        elif code == TRANSFER_ENCODING:
            if not is_chunked(value):
                raise Reject(400, "only the chunked transfer coding is accepted")
            ex.chunked = True
        elif code == CONNECTION:
            ex.connection = True
            extra = connection_tokens(value) - _PLAIN_TOKENS
            if extra:
                ex.tokens = extra if ex.tokens is None else ex.tokens | extra
        elif code == FORWARDED_FOR:
            ex.xff = value if ex.xff is None else ex.xff + b", " + value
        elif code == REQUEST_ID:
            if sane_request_id(value):
                ex.request_id = value
        elif code == UPGRADE:
            if value.strip().lower() == b"websocket":
                ex.upgrade = value
        elif code == EXPECT:
            if value.strip().lower() != b"100-continue":
                raise Reject(417, "only Expect: 100-continue is supported")
            ex.expect = True
        # DROP and REWRITTEN headers are not forwarded

    def on_headers_complete(self) -> None:
        ex = self.parsing
        assert ex is not None
        self.in_head = False
        self.head_bytes = 0
        parser = self.parser
        method = ex.method = parser.get_method()
        # should_keep_alive() reads False once the message has ended: read it now. Keep-alive
        # without a Connection header means HTTP/1.1, which spares the (slow) version string.
        keep_alive = ex.keep_alive = parser.should_keep_alive()
        if (not keep_alive or ex.connection) and parser.get_http_version() != "1.1":
            ex.http11 = False
        elif ex.host is None:
            raise Reject(400, "a Host header is required")
        if parser.should_upgrade():
            self._upgrade_request(ex, method)
        elif ex.upgrade is not None:
            ex.upgrade = None
        if ex.length <= 0 and not ex.chunked:
            ex.req_done = True  # no body: the request is whole now (on_message_complete follows)
        gw = self.gw
        table = gw.table
        hit = table.answers.get(ex.target if table.plain else (ex.host, method, ex.target))
        if hit is None or method in REFUSED_METHODS:
            try:
                hit = table.match(ex.host, method, ex.target)
            except RouteError as exc:
                self._refuse(ex, exc)
                return
        rule, target = hit
        if ex.length > self.max_body:
            raise Reject(413, "the request body is too large")
        ex.rule = rule
        ex.stats = gw.route_stats[rule.index]
        ex.up_target = target
        if method in IDEMPOTENT:
            ex.replay = NOTHING_YET
            if method == b"HEAD":
                ex.head_method = True
        if rule.kind == "function":
            ex.function_body = []
        else:  # the request head for the upstream, written here: it is on every request
            parts = ex.parts
            if ex.tokens:
                parts = without_headers(parts, ex.tokens)
            if ex.http11:
                parts[0] = b"%b %b HTTP/1.1\r\n" % (method, target)
            else:  # an HTTP/1.0 client gets an HTTP/1.0 answer: ask the upstream for one
                parts[0] = b"%b %b HTTP/1.0\r\nConnection: keep-alive\r\n" % (method, target)
            xff = self.client_ip if ex.xff is None else ex.xff + b", " + self.client_ip
            if ex.request_id is None and ex.host is not None:  # the usual: one format
                gw.request_count += 1
                parts.append(_FORWARDED_USUAL % (xff, ex.host, gw.request_prefix, gw.request_count))
            else:
                rid = ex.request_id or gw.new_request_id()
                if ex.host is not None:
                    parts.append(_FORWARDED_HOST % (xff, ex.host, rid))
                else:
                    parts.append(_FORWARDED % (xff, rid))
            if ex.chunked:
                parts.append(CHUNKED)
            if ex.upgrade is not None:
                parts += (b"Connection: Upgrade\r\nUpgrade: ", ex.upgrade, _CRLF)
            parts.append(_CRLF)
            ex.head = b"".join(parts)
            ex.plain = (
                keep_alive
                and ex.http11
                and not ex.head_method
                and ex.upgrade is None
                and not ex.close_after
            )
        if ex is self.current:
            ex.dispatch()

    def _refuse(self, ex: Exchange, exc: RouteError) -> None:
        """No route (404, 405, a bad path): a body-less request is answered on a live connection."""
        if ex.length > 0 or ex.chunked or exc.status == 400:
            raise Reject(exc.status, exc.message, exc.allow)
        close = not ex.keep_alive or ex.close_after
        ex.close_after = close
        ex.status = exc.status
        ex.error = error_response(exc.status, exc.message, allow=exc.allow, close=close)
        if ex is self.current:
            ex.dispatch()

    def _upgrade_request(self, ex: Exchange, method: bytes) -> None:
        if method == b"CONNECT":
            raise Reject(405, "CONNECT is not supported")
        if ex.length > 0 or ex.chunked:
            raise Reject(400, "an upgrade request may not carry a body")
        if ex.upgrade is None:  # h2c and friends: answered as plain HTTP/1.1, then closed
            ex.close_after = True

    def on_body(self, body: bytes) -> None:
        ex = self.parsing
        assert ex is not None
        if ex.body_in + len(body) > self.max_body:
            raise Reject(413, "the request body is too large")
        ex.request_body(body)

    def on_message_complete(self) -> None:
        ex = self.parsing
        assert ex is not None
        self.parsing = None
        self.in_head = True
        ex.req_done = True
        if ex.chunked or ex.upgrade is not None or ex.function_body is not None:
            if ex.upgrade is not None:
                self.upgrading = ex  # what follows the head belongs to the websocket
                self.special = True
            ex.request_done()

    # ------------------------------------------------------------ exchanges

    def exchange_done(self, ex: Exchange) -> None:
        """An exchange ended: start the next pipelined one, or close, or wait for more."""
        if self.upgrading is ex and self.tunnel is None:
            self.upgrading = None
            self.special = self.discard
        if ex is not self.current:
            if ex in self.queue:
                self.queue.remove(ex)
            return
        self.current = None
        if self.closed or self.tunnel is not None:
            return
        gw = self.gw
        closing = ex.close_after or not ex.keep_alive or gw.stopping
        if self.queue and (not closing or self.queue[0].error is not None):
            nxt = self.current = self.queue.popleft()
            if not self.queue:
                self.resume(self.PAUSE_PIPELINE)
            if nxt.rule is not None or nxt.error is not None:
                nxt.dispatch()
            return
        if closing:
            self.linger()
            if gw.stopping:
                gw.check_quiet()

    def start_tunnel(self, up: UpstreamConnection, endpoint: Endpoint | None) -> None:
        """After a 101: client bytes go straight to ``up`` and back, until either side closes."""
        self.tunnel = up
        self.tunnel_endpoint = endpoint
        self.upgrading = None
        self.special = True
        up.start_tunnel(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.paused = 0
        self.transport.resume_reading()

    def _upgraded(self, rest: bytes) -> None:
        ex = self.upgrading
        if ex is None or ex.finished:
            self.stop_reading()  # a refused or non-websocket upgrade: nothing more is read
            return
        if rest:
            ex.send_up(rest)

    def reject(self, status: int, message: str, allow: str = "") -> None:
        """Answer the request being parsed with an error; nothing after it is read."""
        if self.lingering or self.closed:  # already answered and closing: nothing to add
            self.stop_reading()
            return
        ex = self.parsing
        self.parsing = None
        if ex is None:
            ex = Exchange(self)
            if self.current is None:
                self.current = ex
            else:
                self.queue.append(ex)
        self.stop_reading()
        ex.fail(status, message, allow=allow)

    # ------------------------------------------------------------ writing and pausing

    def pause(self, reason: int) -> None:
        if not self.paused and not self.closed:
            self.transport.pause_reading()
        self.paused |= reason

    def resume(self, reason: int) -> None:
        if self.paused & reason:
            self.paused &= ~reason
            if not self.paused and not self.closed and not self.discard:
                self.transport.resume_reading()

    def stop_reading(self) -> None:
        self.discard = self.special = True
        self.pause(self.PAUSE_STOPPED)

    def linger(self) -> None:
        """Close after what is written: shut our side, drop what still comes, then close."""
        if self.lingering or self.closed:
            return
        self.lingering = self.discard = self.special = True
        transport = self.transport
        if transport.is_closing() or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        if self.paused:
            self.paused = 0
            transport.resume_reading()
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(_LINGER, self._on_timer)

    def abort(self) -> None:
        """Drop the client connection now (a response cannot be completed)."""
        if not self.closed:
            self.transport.abort()

    @property
    def busy(self) -> bool:
        """A request is in flight (or a tunnel open): what the gateway's stop waits for."""
        return (self.current is not None or self.tunnel is not None) and not self.closed

    def shutdown(self) -> None:
        """The gateway stops: close now if idle, else after the response in flight."""
        if not self.busy:
            self.linger()

    # ------------------------------------------------------------ the one timer

    def _on_timer(self) -> None:
        """Every ``gw.period``: time out an exchange or an idle connection that stayed quiet.

        Reads bump :attr:`ticks`; a timeout is so many periods in a row without one, so the hot
        path never reads the clock. An exchange in flight times out after ``gateway.timeout``
        (at most a period more), an idle connection after the keep-alive timeout.
        """
        self.timer = None
        if self.closed or self.tunnel is not None:
            return
        if self.lingering:
            self.transport.close()
            return
        gw = self.gw
        if self.ticks != self.seen:
            self.seen = self.ticks
            self.quiet = 0
        else:
            self.quiet += 1
            quiet_for = self.quiet * gw.period + 1e-6
            ex = self.current
            if ex is not None and ex.dispatched and not ex.finished:
                if not ex.held and quiet_for >= gw.timeout:
                    ex.timed_out()
                    return
            elif quiet_for >= gw.tuning.keepalive_timeout:
                if ex is None:
                    self.linger()  # idle past the keep-alive timeout
                else:
                    self.transport.close()  # a request that stalled while being sent
                return
        self.timer = self.loop.call_later(gw.period, self._on_timer)


__all__ = ["ClientConnection", "Reject"]
