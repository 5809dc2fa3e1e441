"""One request and its response: the state that spans the client side and the upstream side.

    ClientConnection (proxy) ──dispatch/request_body/request_done──▶ Exchange
    Exchange ──Backend.pick, pool, connect──▶ UpstreamConnection ──▶ replica
    UpstreamConnection ──responding.head/data/done/lost──▶ the client (see shoal.gateway.responding)

An exchange is created when the client parser sees a message begin and ends in :meth:`finish`
(metrics, access log, the endpoint's outstanding count, the next pipelined request). Everything
here runs in protocol callbacks: no coroutine per request; a task only to open a new upstream
connection or to await a function hook. The usual path (an idle pooled connection, a response
in one read) is written out inline, because on this path every call shows in the figures.

Failures: :meth:`fail` answers with a small JSON error (or, once a response has started, drops
the client connection). A connection refused is retried once on another replica (nothing was
sent, whatever the method); a connection lost before any response byte is retried once for an
idempotent method whose body (if any, up to 64 KiB) is still at hand.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from time import perf_counter
from typing import TYPE_CHECKING

from shoal.gateway.messages import (
    CONTINUE,
    LAST_CHUNK,
    error_response,
)
from shoal.gateway.metrics import BUCKETS

if TYPE_CHECKING:
    from shoal.gateway.balancing import Backend, Endpoint
    from shoal.gateway.metrics import RouteStats
    from shoal.gateway.proxy import ClientConnection
    from shoal.gateway.routing import Rule
    from shoal.gateway.upstreams import UpstreamConnection

_CRLF = b"\r\n"
_REPLAY_LIMIT = 64 << 10  # request body bytes kept to resend on a retry
NOTHING_YET: list[bytes] = []  # the replay buffer of a request with no body byte yet (shared)


class Exchange:
    """A request from the client, forwarded to one upstream, and the response coming back."""

    __slots__ = (
        "backend",
        "body_in",
        "bytes_out",
        "chunk_out",
        "chunked",
        "close_after",
        "conn",
        "connecting",
        "connection",
        "continued",
        "dispatched",
        "endpoint",
        "error",
        "expect",
        "finished",
        "function_body",
        "function_task",
        "head",
        "head_method",
        "held",
        "hold_timer",
        "host",
        "http11",
        "invoked",
        "keep_alive",
        "length",
        "method",
        "parts",
        "pending",
        "pending_size",
        "plain",
        "replay",
        "replay_size",
        "req_done",
        "request_id",
        "retried",
        "rule",
        "start",
        "stats",
        "status",
        "target",
        "tokens",
        "until_close",
        "up_target",
        "upgrade",
        "upstream",
        "xff",
    )

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.start = perf_counter()
        # the request, as parsed
        self.parts: list[bytes] = [b""]  # [request line, name, ": ", value, "\r\n", ...]
        self.method = b""
        self.target = b""
        self.host: bytes | None = None
        self.xff: bytes | None = None
        self.request_id: bytes | None = None
        self.tokens: set[bytes] | None = None
        self.connection = False  # the request had a Connection header
        self.upgrade: bytes | None = None
        self.length = -1
        self.chunked = False
        self.expect = False
        self.keep_alive = True
        self.http11 = True
        self.head_method = False
        self.body_in = 0
        self.req_done = False
        self.plain = False  # keep-alive HTTP/1.1, not HEAD, no upgrade: the fast paths apply
        # routing, the replica, retries, holding, functions
        self.rule: Rule | None = None
        self.stats: RouteStats | None = None
        self.up_target = b""
        self.head = b""
        self.backend: Backend | None = None
        self.endpoint: Endpoint | None = None
        self.upstream: UpstreamConnection | None = None
        self.connecting: asyncio.Task[None] | None = None
        self.pending: list[bytes] | None = None
        self.pending_size = 0
        self.replay: list[bytes] | None = None
        self.replay_size = 0
        self.retried = False
        self.dispatched = False
        self.continued = False
        self.held = False
        self.hold_timer: asyncio.TimerHandle | None = None
        self.function_body: list[bytes] | None = None
        self.invoked = False
        self.function_task: asyncio.Task[None] | None = None
        # the response
        self.status = 0
        self.bytes_out = 0
        self.chunk_out = False
        self.until_close = False
        self.close_after = False
        self.error: bytes | None = None
        self.finished = False

    # ------------------------------------------------------------ the request side

    def dispatch(self) -> None:
        """Start forwarding (the exchange is the connection's current one, its head is parsed)."""
        if self.error is not None:
            self._write_error(self.error)
            return
        rule = self.rule
        assert rule is not None and self.stats is not None
        self.dispatched = True
        self.stats.in_flight += 1
        conn = self.conn
        if rule.kind == "function":
            if self.req_done:
                conn.gw.invoke_function(self)
            elif self.expect:
                self.continued = True
                conn.transport.write(CONTINUE)
            return
        backend = conn.gw.backends.get(rule.target) or conn.gw.backend(rule.target)
        self.backend = backend
        backend.in_flight += 1
        endpoints = backend.endpoints
        if len(endpoints) != 1 or endpoints[0].ejected_until or self.expect:
            self.pick(None)
            return
        # the usual case, inline: one replica, an idle connection to it
        endpoint = self.endpoint = endpoints[0]
        endpoint.outstanding += 1
        idle = endpoint.pool.idle
        if not idle:
            self.connecting = endpoint.pool.connect(self._connected)
            return
        up = self.upstream = idle.pop()
        up.exchange = self
        if self.pending:
            self._attach(up)
            return
        up.transport.write(self.head)
        if conn.write_paused:
            up.pause_reading()

    def pick(self, avoid: Endpoint | None, *, may_hold: bool = True) -> None:
        backend = self.backend
        assert backend is not None
        endpoint = backend.pick(avoid)
        if endpoint is None and avoid is not None:
            endpoint = backend.pick(None)
        if endpoint is not None:
            self._use(endpoint)
            return
        gw = self.conn.gw
        if may_hold and not self.retried and gw.hold(self):
            return
        if self.retried:
            self.fail(502, f"could not reach a replica of {backend.name}")
        else:
            retry_after = gw.tuning.retry_after
            self.fail(503, f"no ready replica of {backend.name}", retry_after=retry_after)

    def _use(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        endpoint.outstanding += 1
        if self.expect and not self.continued and not self.req_done:
            self.continued = True
            self.conn.transport.write(CONTINUE)
        idle = endpoint.pool.idle
        if idle:
            self._attach(idle.pop())
        else:
            self.connecting = endpoint.pool.connect(self._connected)

    def _attach(self, up: UpstreamConnection) -> None:
        self.upstream = up
        up.exchange = self
        pending = self.pending
        if pending:
            up.transport.write(b"".join((self.head, *pending)))
            self.pending = None
            conn = self.conn
            if self.pending_size > conn.gw.tuning.buffer_limit:
                conn.resume(conn.PAUSE_PENDING)
            self.pending_size = 0
        else:
            up.transport.write(self.head)
        if self.conn.write_paused:
            up.pause_reading()

    def release_held(self) -> None:
        """The service has an endpoint again: pick one now."""
        self.held = False
        if self.hold_timer is not None:
            self.hold_timer.cancel()
            self.hold_timer = None
        self.pick(None, may_hold=False)

    def hold_expired(self) -> None:
        """Nothing came up in time for a held request."""
        self.hold_timer = None
        if self.held:
            self._drop_upstream()  # leaves the hold queue
            backend = self.backend
            name = backend.name if backend is not None else "the service"
            retry_after = self.conn.gw.tuning.retry_after
            self.fail(503, f"no ready replica of {name}", retry_after=retry_after)

    def _connected(self, up: UpstreamConnection | None, exc: BaseException | None) -> None:
        self.connecting = None
        if self.finished or self.endpoint is None:
            if up is not None:  # a healthy new connection nobody waits for: pool it
                up.keep_alive = True
                up.pool.release(up)
            return
        if up is None:
            endpoint = self.endpoint
            assert self.backend is not None
            self.backend.eject(endpoint, self.conn.gw.tuning.eject_for)
            self.drop_endpoint()
            if self.retried:
                self.fail(502, f"could not connect to {endpoint.label}")
            else:  # nothing was sent: another replica may take it, whatever the method
                self.retried = True
                self.pick(endpoint)
            return
        self._attach(up)

    def send_up(self, data: bytes) -> None:
        """Request bytes (body, or websocket data before the switch) towards the upstream."""
        replay = self.replay
        if replay is not None:
            self.replay_size += len(data)
            if self.replay_size > _REPLAY_LIMIT:
                self.replay = None
            else:
                if replay is NOTHING_YET:
                    replay = self.replay = []
                replay.append(data)
        up = self.upstream
        if up is not None:
            up.transport.write(data)
            return
        if self.pending is None:
            self.pending = []
        self.pending.append(data)
        self.pending_size += len(data)
        conn = self.conn
        if self.pending_size > conn.gw.tuning.buffer_limit:
            conn.pause(conn.PAUSE_PENDING)

    def request_body(self, data: bytes) -> None:
        self.body_in += len(data)
        if self.function_body is not None:
            self.function_body.append(data)
        elif self.chunked:
            self.send_up(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            self.send_up(data)

    def request_done(self) -> None:
        """The request's end, for chunked bodies, functions and websockets (the rest is inline)."""
        self.req_done = True
        if self.chunked and self.function_body is None:
            self.send_up(LAST_CHUNK)
        if self.function_body is not None and self.dispatched and not self.invoked:
            self.conn.gw.invoke_function(self)

    def timed_out(self) -> None:
        """No byte moved for ``gateway.timeout``: 504, or a dropped connection mid-response."""
        if self.status == 0:
            self.fail(504, "the upstream did not answer in time")
        else:
            self._drop_upstream()
            self.conn.abort()
            self.finish()

    # ------------------------------------------------------------ endings

    def fail(self, status: int, message: str, *, retry_after: int = 0, allow: str = "") -> None:
        """Answer with an error (or drop the connection, mid-response).

        The connection stays open if the request was read whole and parsed cleanly (a 503, a
        504 after a complete request); otherwise it closes after the answer.
        """
        if self.finished:
            return
        conn = self.conn
        close = conn.discard or not self.req_done or not self.keep_alive or self.close_after
        response = error_response(
            status, message, retry_after=retry_after, allow=allow, close=close
        )
        self.close_after = close
        if conn.current is not self:  # pipelined behind another: answer in order
            self.error = response
            self.status = status
            conn.stop_reading()
            return
        self._drop_upstream()
        if self.status == 0:
            self.status = status
            if not conn.lingering:
                conn.transport.write(response)
        else:
            conn.abort()
        self.finish()

    def _write_error(self, response: bytes) -> None:
        self.conn.transport.write(response)  # close_after was set with the error
        self.finish()

    def client_lost(self) -> None:
        """The client went away: stop everything this exchange started."""
        if self.finished:
            return
        self._drop_upstream()
        if self.status == 0:
            self.status = 499  # nginx's word for "client closed request"
        self.finish()

    def _drop_upstream(self) -> None:
        up = self.upstream
        if up is not None:
            self.upstream = None
            up.abort()
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None
        if self.function_task is not None:
            self.function_task.cancel()
            self.function_task = None
        if self.held:
            self.held = False
            if self.hold_timer is not None:
                self.hold_timer.cancel()
                self.hold_timer = None
            if self.backend is not None and self in self.backend.held:
                self.backend.held.remove(self)

    def drop_endpoint(self) -> None:
        endpoint = self.endpoint
        if endpoint is not None:
            self.endpoint = None
            endpoint.outstanding -= 1
            if endpoint.outstanding == 0 and (endpoint.waiters or endpoint.retired):
                endpoint.settle(self.backend)

    def finish(self) -> None:
        """The exchange is over: count it, log it, free its endpoint, let the next one go."""
        if self.finished:
            return
        self.finished = True
        served = self.endpoint
        if served is not None:
            self.endpoint = None
            served.outstanding -= 1
            if served.outstanding == 0 and (served.waiters or served.retired):
                served.settle(self.backend)
        conn = self.conn
        gw = conn.gw
        stats = self.stats
        if self.dispatched:
            assert stats is not None
            stats.in_flight -= 1
            if self.backend is not None:
                self.backend.in_flight -= 1
        elif stats is None:
            stats = gw.unmatched
        seconds = perf_counter() - self.start
        status = self.status
        stats.codes[status] += 1  # a status has three digits (llhttp's and ours)
        stats.buckets[bisect_left(BUCKETS, seconds)] += 1
        stats.sum += seconds
        access = gw.access
        if access is not None:
            entries = access.entries
            upstream = served.name if served is not None else b"-"
            entries.append(
                (self.method, self.target, status, self.bytes_out, seconds * 1e3, upstream)
            )
            if len(entries) == 1:
                access.added()
        if (  # the usual end: nothing queued behind, the connection stays for the next request
            conn.current is self
            and self.plain
            and not self.close_after
            and not conn.queue
            and not conn.special
            and not gw.stopping
        ):
            conn.current = None
            return
        conn.exchange_done(self)


__all__ = ["NOTHING_YET", "Exchange"]
