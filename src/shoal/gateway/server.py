"""The gateway as the daemon sees it: start, stop, and the calls the supervisor and ``apply`` make.

    Gateway(manifest gateway:, compile_routes(manifest), access_log=..., on_demand=...)
      await start(host, port) ──▶ listening; ClientConnection per client (shoal.gateway.proxy)
      set_endpoints(name, [(ordinal, port)])  ◀── every supervisor change (ready replicas)
      drain(name, ordinal, timeout)           ◀── the supervisor's drainer, before a stop
      set_routes(table)                       ◀── shoal apply
      in_flight(name), metrics()              ──▶ the autoscaler, /metrics
      await stop()                            ──▶ stop accepting, finish in flight, close

Shutdown order in :meth:`Gateway.stop`: (1) stop accepting; (2) answer held requests 503;
(3) close idle client connections, let busy ones finish their response, then close them; (4)
past the grace period, drop what is left; (5) close the upstream pools; (6) flush the access log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Iterable

from shoal.gateway.balancing import Backend, Endpoint
from shoal.gateway.exchange import Exchange
from shoal.gateway.invoking import FunctionHook, invoke, unavailable
from shoal.gateway.metrics import AccessLog, AccessSink, RouteStats, ServiceGauges, render
from shoal.gateway.proxy import ClientConnection
from shoal.gateway.routing import RouteTable
from shoal.gateway.tuning import Tuning
from shoal.gateway.upstreams import UpstreamPool
from shoal.manifest.schema import Gateway as GatewayConfig

log = logging.getLogger(__name__)

OnDemand = Callable[[str], None]
"""Called with a service's name when a request is held because it has no ready replica."""


class Gateway:
    """The HTTP data plane: routes, balances, drains, limits, counts."""

    def __init__(
        self,
        config: GatewayConfig,
        routes: RouteTable,
        *,
        access_log: AccessSink | None = None,
        on_demand: OnDemand | None = None,
        functions: FunctionHook | None = None,
        tuning: Tuning | None = None,
    ) -> None:
        self.config = config
        self.tuning = tuning or Tuning()
        self.timeout = float(config.timeout)
        self.max_body = int(config.max_body)
        self.max_header = int(config.max_header)
        self.period = min(self.timeout, self.tuning.keepalive_timeout) / 4
        self.on_demand = on_demand
        self.functions: FunctionHook = functions or unavailable
        self.request_prefix = os.urandom(6).hex().encode("ascii") + b"-"
        self.request_count = 0  # X-Request-Id: the prefix and this counter, unique per process
        self.stopping = False
        self.connections: set[ClientConnection] = set()
        self.backends: dict[str, Backend] = {}
        self.unmatched = RouteStats("-", "-")
        self._stats: dict[tuple[str, str], RouteStats] = {}
        self.table = routes
        self.route_stats: list[RouteStats] = []
        self.set_routes(routes)
        self._sink = access_log
        self.access: AccessLog | None = None
        self._server: asyncio.Server | None = None
        self._port = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._all_closed = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by start

    # ------------------------------------------------------------ lifecycle

    async def start(self, host: str | None = None, port: int | None = None) -> int:
        """Listen (on the manifest's host and port unless given; port 0: any); the bound port."""
        self.loop = asyncio.get_running_loop()
        if self._sink is not None:
            self.access = AccessLog(self._sink, self.loop)
        self._server = await self.loop.create_server(
            lambda: ClientConnection(self),
            host or self.config.host,
            self.config.port if port is None else port,
            backlog=self.tuning.backlog,
            reuse_address=True,
        )
        self._port = int(self._server.sockets[0].getsockname()[1])
        log.info("gateway: listening on %s:%d", host or self.config.host, self._port)
        return self._port

    @property
    def port(self) -> int:
        """The port the gateway listens on (0 before :meth:`start`)."""
        return self._port

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let in-flight requests finish within ``grace`` seconds, close all."""
        grace = self.tuning.stop_grace if grace is None else grace
        self.stopping = True
        # 1. stop accepting
        if self._server is not None:
            self._server.close()
        # 2. held requests will not see a replica from this gateway any more
        for backend in self.backends.values():
            for ex in list(backend.held):
                ex.hold_expired()
        # 3. idle connections close now, busy ones after their response
        for conn in list(self.connections):
            conn.shutdown()
        if not self._quiet():
            self._all_closed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_closed.wait(), grace)
        # 4. past the grace period: drop what is left
        for conn in list(self.connections):
            if conn.busy:
                conn.abort()
            else:
                conn.transport.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # 5. upstream pools
        for backend in self.backends.values():
            backend.close()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        await asyncio.sleep(0)  # let aborted transports report connection_lost
        # 6. the access log
        if self.access is not None:
            self.access.flush()

    def forget(self, conn: ClientConnection) -> None:
        self.connections.discard(conn)
        if self.stopping:
            self.check_quiet()

    def check_quiet(self) -> None:
        """While stopping: wake :meth:`stop` once no connection has a request in flight."""
        if self._quiet():
            self._all_closed.set()

    def _quiet(self) -> bool:
        return not any(conn.busy for conn in self.connections)

    # ------------------------------------------------------------ what the daemon calls

    def set_routes(self, table: RouteTable) -> None:
        """Route with ``table`` from the next request on (counters of a route carry over)."""
        stats = []
        for rule in table.rules:
            key = (rule.label, rule.target)
            if key not in self._stats:
                self._stats[key] = RouteStats(*key)
            stats.append(self._stats[key])
        self.route_stats = stats
        self.table = table

    def set_endpoints(self, name: str, endpoints: Iterable[tuple[int, int]]) -> None:
        """The ready replicas of ``name`` as [(ordinal, host port)]; held requests go now."""
        backend = self.backend(name)
        backend.update(list(endpoints))
        if backend.held and backend.has_usable():
            held = list(backend.held)
            backend.held.clear()
            for ex in held:
                ex.release_held()

    def drain(self, name: str, ordinal: int, timeout: float) -> Awaitable[None]:
        """Take a replica out of rotation now; the awaitable ends when its requests are done.

        It also ends after ``timeout`` seconds, whatever is still in flight (the supervisor then
        stops the replica). Unknown replicas are drained at once.
        """
        backend = self.backends.get(name)
        endpoint = backend.drain(ordinal) if backend is not None else None
        return self._drained(endpoint, timeout)

    async def _drained(self, endpoint: Endpoint | None, timeout: float) -> None:
        if endpoint is None:
            return
        waiter = endpoint.idle()
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            log.warning(
                "gateway: %s still had %d requests after %.1fs of draining",
                endpoint.label,
                endpoint.outstanding,
                timeout,
            )
        finally:
            if waiter in endpoint.waiters:
                endpoint.waiters.remove(waiter)

    def in_flight(self, name: str) -> int:
        """Requests in flight to ``name``, held ones included (the autoscaler's sample)."""
        backend = self.backends.get(name)
        return backend.in_flight if backend is not None else 0

    def metrics(self) -> str:
        """Prometheus text exposition of every route and service."""
        services = [
            ServiceGauges(b.name, b.in_flight, len(b.held), len(b.endpoints))
            for b in self.backends.values()
        ]
        return render([*self._stats.values(), self.unmatched], services)

    # ------------------------------------------------------------ what exchanges call

    def backend(self, name: str) -> Backend:
        backend = self.backends.get(name)
        if backend is None:
            loop = self.loop or asyncio.get_running_loop()
            tuning = self.tuning
            backend = self.backends[name] = Backend(
                name,
                lambda port: UpstreamPool(
                    port, loop, tuning.max_idle_per_endpoint, tuning.upstream_idle_timeout
                ),
                loop.time,
            )
        return backend

    def hold(self, ex: Exchange) -> bool:
        """Hold a request for a service with no ready replica (scale from zero), if allowed."""
        backend = ex.backend
        tuning = self.tuning
        if (
            self.on_demand is None
            or backend is None
            or self.stopping
            or len(backend.held) >= tuning.hold_queue
            or tuning.hold_timeout <= 0
        ):
            return False
        first = not backend.held
        backend.held.append(ex)
        ex.held = True
        ex.hold_timer = self.loop.call_later(tuning.hold_timeout, ex.hold_expired)
        if first:
            try:
                self.on_demand(backend.name)
            except Exception:
                log.exception("gateway: on_demand(%r) failed", backend.name)
        return True

    def new_request_id(self) -> bytes:
        self.request_count += 1
        return self.request_prefix + b"%x" % self.request_count

    def invoke_function(self, ex: Exchange) -> None:
        invoke(ex, self.functions, self._tasks)


__all__ = ["Gateway", "OnDemand"]
