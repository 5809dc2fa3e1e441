"""Balancing: which ready replica of a service takes the next request.

    supervisor ──set_endpoints──▶ Backend.update ──▶ Endpoint (one per ready replica)
    exchange ──Backend.pick──▶ Endpoint (least outstanding, ties round-robin) ──▶ its UpstreamPool

A :class:`Backend` is one service as the gateway sees it: the endpoints in rotation, the requests
held while it has none (scale from zero), and its in-flight count (what the autoscaler samples).
An :class:`Endpoint` is one replica: its outstanding requests, whether it is ejected (it refused a
connection: out until the supervisor refreshes it, or ``eject_for`` passes) or draining (out of
rotation for good, its waiters resolved when its last request ends), and its connection pool.

No I/O here beyond the pool handles; the exchange counts an endpoint's outstanding requests
itself (inline, on the hot path) and calls :meth:`Endpoint.settle` when one drops to zero.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from shoal.gateway.upstreams import UpstreamPool

if TYPE_CHECKING:
    from shoal.gateway.exchange import Exchange


class Endpoint:
    """One ready replica: a loopback port, its outstanding requests and its connections."""

    __slots__ = (
        "draining",
        "ejected_until",
        "label",
        "name",
        "ordinal",
        "outstanding",
        "pool",
        "port",
        "retired",
        "service",
        "waiters",
    )

    def __init__(self, name: str, ordinal: int, port: int, pool: UpstreamPool) -> None:
        self.service = name
        self.ordinal = ordinal
        self.port = port
        self.label = f"{name}#{ordinal}"
        self.name = self.label.encode()  # the access log's "upstream"
        self.outstanding = 0
        self.ejected_until = 0.0
        self.draining = False
        self.retired = False
        self.pool = pool
        self.waiters: list[asyncio.Future[None]] = []

    def __repr__(self) -> str:
        return f"<Endpoint {self.label} :{self.port} outstanding={self.outstanding}>"

    @property
    def in_rotation(self) -> bool:
        return not (self.draining or self.retired)

    def wake(self) -> None:
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.waiters.clear()

    def settle(self, backend: Backend | None) -> None:
        """The last outstanding request ended: wake drain waiters, forget a retired endpoint."""
        if self.waiters:
            self.wake()
        if self.retired and backend is not None:
            backend.forget_idle()

    def idle(self) -> asyncio.Future[None]:
        """A future resolved once no request is outstanding (at once if none is)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.outstanding == 0:
            waiter.set_result(None)
        else:
            self.waiters.append(waiter)
        return waiter


class Backend:
    """A service's endpoints in rotation, its held requests and its in-flight count."""

    __slots__ = ("_clock", "_make_pool", "_rr", "endpoints", "held", "in_flight", "name", "retired")

    def __init__(
        self,
        name: str,
        make_pool: Callable[[int], UpstreamPool],
        clock: Callable[[], float],
    ) -> None:
        self.name = name
        self._make_pool = make_pool
        self._clock = clock
        self._rr = 0
        self.endpoints: list[Endpoint] = []
        self.retired: dict[tuple[int, int], Endpoint] = {}  # out of the set, requests still open
        self.held: deque[Exchange] = deque()
        self.in_flight = 0

    def pick(self, avoid: Endpoint | None = None) -> Endpoint | None:
        """The usable endpoint with the fewest outstanding requests; ties go round-robin."""
        endpoints = self.endpoints
        count = len(endpoints)
        if count == 1:
            only = endpoints[0]
            if only is avoid or (only.ejected_until and only.ejected_until > self._clock()):
                return None
            return only
        if count == 0:
            return None
        start = self._rr = (self._rr + 1) % count
        best: Endpoint | None = None
        now = 0.0
        for i in range(count):
            endpoint = endpoints[(start + i) % count]
            if endpoint is avoid:
                continue
            if endpoint.ejected_until:
                now = now or self._clock()
                if endpoint.ejected_until > now:
                    continue
                endpoint.ejected_until = 0.0
            if best is None or endpoint.outstanding < best.outstanding:
                best = endpoint
        return best

    def has_usable(self) -> bool:
        now = self._clock()
        return any(e.ejected_until <= now for e in self.endpoints)

    def eject(self, endpoint: Endpoint, seconds: float) -> None:
        """Take an endpoint that refused a connection out of rotation for a while."""
        endpoint.ejected_until = self._clock() + seconds
        endpoint.pool.close_idle()

    def update(self, ready: list[tuple[int, int]]) -> None:
        """Make ``ready`` [(ordinal, port)] the rotation; listed endpoints are un-ejected."""
        current = {(e.ordinal, e.port): e for e in self.endpoints}
        wanted: list[Endpoint] = []
        for ordinal, port in ready:
            endpoint = current.pop((ordinal, port), None)
            if endpoint is None:
                old = self.retired.get((ordinal, port))
                if old is not None and old.draining:
                    continue  # drained for a stop: never back in rotation
                endpoint = Endpoint(self.name, ordinal, port, self._make_pool(port))
            elif endpoint.draining:
                continue
            endpoint.ejected_until = 0.0
            wanted.append(endpoint)
        for endpoint in current.values():
            self.retire(endpoint)
        self.endpoints = wanted
        listed = set(ready)
        for key, endpoint in list(self.retired.items()):
            if endpoint.draining and key not in listed and endpoint.outstanding == 0:
                del self.retired[key]  # drained, stopped and gone from the set: forget it
                endpoint.pool.close()

    def retire(self, endpoint: Endpoint) -> None:
        """Out of the set: no new requests; kept (for drain) while requests are outstanding."""
        endpoint.retired = True
        if endpoint in self.endpoints:
            self.endpoints = [e for e in self.endpoints if e is not endpoint]
        endpoint.pool.close_idle()
        endpoint.pool.closed = True
        self.retired[endpoint.ordinal, endpoint.port] = endpoint
        self.forget_idle()

    def forget_idle(self) -> None:
        """Drop retired endpoints that no request refers to any more."""
        for key, endpoint in list(self.retired.items()):
            if endpoint.outstanding == 0 and not endpoint.waiters and not endpoint.draining:
                del self.retired[key]
                endpoint.pool.close()

    def find(self, ordinal: int) -> Endpoint | None:
        """The endpoint of ``ordinal``, in rotation or retired."""
        for endpoint in self.endpoints:
            if endpoint.ordinal == ordinal:
                return endpoint
        for endpoint in self.retired.values():
            if endpoint.ordinal == ordinal:
                return endpoint
        return None

    def drain(self, ordinal: int) -> Endpoint | None:
        """Take ``ordinal`` out of rotation now; the endpoint (to wait on), if there is one."""
        endpoint = self.find(ordinal)
        if endpoint is None:
            return None
        endpoint.draining = True
        if not endpoint.retired:
            self.retire(endpoint)
        return endpoint

    def close(self) -> None:
        for endpoint in [*self.endpoints, *self.retired.values()]:
            endpoint.pool.close()
            endpoint.wake()
        self.endpoints = []
        self.retired.clear()


__all__ = ["Backend", "Endpoint"]
