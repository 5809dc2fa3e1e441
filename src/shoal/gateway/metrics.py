"""What the gateway counts, and the access log: cheap on the hot path, formatted later.

    Exchange.finish ──Gateway.record──▶ RouteStats.observe (a few integer adds)
                                    └─▶ AccessLog.add (a tuple appended; lines built in batches)
    /metrics ──render(...)──▶ Prometheus text exposition (format 0.0.4), hand-written

Per route: requests by status class (``1xx``..``5xx``), a latency histogram with fixed buckets and
the requests in flight. Per service: requests in flight (what the autoscaler samples), held
requests and endpoints in rotation. Requests that match no route count under ``route="-"``.
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass

log = logging.getLogger(__name__)

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds of the latency histogram, in seconds (``+Inf`` is implied)."""

CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


class RouteStats:
    """Counters of one route (or of unrouted requests)."""

    __slots__ = ("buckets", "codes", "in_flight", "route", "sum", "target")

    def __init__(self, route: str, target: str) -> None:
        self.route = route
        self.target = target
        self.codes = [0] * 1000  # by status (three digits); summed by class when rendered
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0
        self.in_flight = 0

    @property
    def count(self) -> int:
        """Requests observed (the hot path only fills buckets: this is their sum)."""
        return sum(self.buckets)

    def by_class(self) -> list[int]:
        """Requests by status class: ``[1xx, 2xx, 3xx, 4xx, 5xx]`` (600-999 count as 5xx)."""
        codes = self.codes
        return [sum(codes[c * 100 : c * 100 + 100]) for c in range(1, 5)] + [sum(codes[500:])]

    def observe(self, status: int, seconds: float) -> None:
        self.codes[status] += 1
        self.buckets[bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds


@dataclass(frozen=True)
class ServiceGauges:
    """A service as /metrics shows it."""

    name: str
    in_flight: int
    held: int
    endpoints: int


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(routes: Iterable[RouteStats], services: Iterable[ServiceGauges] = ()) -> str:
    """The Prometheus text exposition of the gateway's counters."""
    routes = list(routes)
    services = list(services)
    out = [
        "# HELP shoal_gateway_requests_total Requests answered, by route and status class.",
        "# TYPE shoal_gateway_requests_total counter",
    ]
    for r in routes:
        labels = f'route="{_label(r.route)}",target="{_label(r.target)}"'
        for name, count in zip(CLASSES, r.by_class(), strict=True):
            out.append(f'shoal_gateway_requests_total{{{labels},code="{name}"}} {count}')
    out += [
        "# HELP shoal_gateway_request_duration_seconds Time from request to response end.",
        "# TYPE shoal_gateway_request_duration_seconds histogram",
    ]
    for r in routes:
        labels = f'route="{_label(r.route)}",target="{_label(r.target)}"'
        cumulative = 0
        for bound, count in zip(BUCKETS, r.buckets, strict=False):
            cumulative += count
            out.append(
                f'shoal_gateway_request_duration_seconds_bucket{{{labels},le="{bound:g}"}} '
                f"{cumulative}"
            )
        out.append(f'shoal_gateway_request_duration_seconds_bucket{{{labels},le="+Inf"}} {r.count}')
        out.append(f"shoal_gateway_request_duration_seconds_sum{{{labels}}} {r.sum:.6f}")
        out.append(f"shoal_gateway_request_duration_seconds_count{{{labels}}} {r.count}")
    out += [
        "# HELP shoal_gateway_requests_in_flight Requests being answered, by route.",
        "# TYPE shoal_gateway_requests_in_flight gauge",
    ]
    for r in routes:
        labels = f'route="{_label(r.route)}",target="{_label(r.target)}"'
        out.append(f"shoal_gateway_requests_in_flight{{{labels}}} {r.in_flight}")
    for metric, help_, field in (
        ("service_in_flight", "Requests in flight to a service, held ones included.", "in_flight"),
        ("service_held", "Requests held while a service has no ready replica.", "held"),
        ("service_endpoints", "Replicas of a service in rotation.", "endpoints"),
    ):
        out += [f"# HELP shoal_gateway_{metric} {help_}", f"# TYPE shoal_gateway_{metric} gauge"]
        for s in services:
            out.append(f'shoal_gateway_{metric}{{service="{_label(s.name)}"}} {getattr(s, field)}')
    return "\n".join(out) + "\n"


AccessSink = Callable[[str], None]
"""Receives access-log text: one line per request, several lines (``\\n``-separated) per call.

The daemon hands it to the log store, which records each line on its own.
"""

Entry = tuple[bytes, bytes, int, int, float, bytes]
"""One request: method, target, status, body bytes sent, milliseconds, upstream label."""


class AccessLog:
    """Collects one tuple per request and formats them in batches, off the request's path.

    A batch is flushed ``interval`` seconds after its first entry: a short interval keeps batches
    small (a long one would stall every request behind it, and show in the p99); :meth:`flush`
    also runs when the gateway stops. Lines are built as bytes with one ``%`` of the entry as
    it is, and decoded once per batch (see :func:`format_entries`). A failing sink is logged,
    once.
    """

    __slots__ = ("_handle", "_loop", "_sink", "_warned", "entries", "interval")

    def __init__(
        self,
        sink: AccessSink,
        loop: asyncio.AbstractEventLoop,
        interval: float = 0.01,
    ) -> None:
        self._sink = sink
        self._loop = loop
        self.interval = interval
        self.entries: list[Entry] = []
        self._handle: asyncio.TimerHandle | None = None
        self._warned = False

    def add(self, entry: Entry) -> None:
        self.entries.append(entry)
        if len(self.entries) == 1:
            self.added()

    def added(self) -> None:
        """Call once a batch's first entry is in :attr:`entries` (the gateway appends inline)."""
        self._handle = self._loop.call_later(self.interval, self.flush)

    def flush(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        entries, self.entries = self.entries, []
        if not entries:
            return
        try:
            self._sink(format_entries(entries))
        except Exception:
            if not self._warned:
                self._warned = True
                log.exception("gateway: the access log sink failed; lines are lost")


_LINE = b"%s %s %d %dB %.2fms %s"
_SHORT = 512  # a line shorter than this holds no target that needs cutting
# bytes whose latin-1 character is printable: deleting them from a batch leaves its separators
_PRINTABLE = bytes(b for b in range(256) if chr(b).isprintable())


def format_entries(entries: list[Entry]) -> str:
    """``GET /api/items?page=2 200 1024B 0.81ms catalog#0``, one line per entry.

    The usual batch is formatted entry by entry as it is, then checked once as a whole: lines
    short and printable, no empty field (a double space), one line per entry. Any doubt and the
    batch is formatted again, each line with its target cut to 512 bytes, ``-`` for an empty
    one, and bytes that could forge or break a line escaped.
    """
    lines = [_LINE % entry for entry in entries]
    data = b"\n".join(lines)
    if (
        max(map(len, lines), default=0) < _SHORT
        and b"  " not in data
        and len(data.translate(None, _PRINTABLE)) == len(lines) - 1  # the separators alone
    ):
        return data.decode("latin-1")
    return "\n".join(_line(entry) for entry in entries)


def _line(entry: Entry) -> str:
    method, target, status, size, ms, up = entry
    line = (_LINE % (method, target[:_SHORT] or b"-", status, size, ms, up)).decode("latin-1")
    if "\n" in line or not line.isprintable():
        # client bytes: never let them forge or break a line (llhttp keeps them out; be sure)
        target = _escaped(target[:_SHORT])
        line = (_LINE % (method, target, status, size, ms, up)).decode("latin-1")
    return line


def _escaped(target: bytes) -> bytes:
    return target.decode("latin-1").encode("unicode_escape")


__all__ = [
    "BUCKETS",
    "AccessLog",
    "AccessSink",
    "Entry",
    "RouteStats",
    "ServiceGauges",
    "format_entries",
    "render",
]
