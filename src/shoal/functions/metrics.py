"""Counting what a function pool does, and printing it as Prometheus text. Pure.

The pool keeps one :class:`Counters` and updates it on the hot path (integer additions and one
bisect per invocation); :meth:`Counters.snapshot` gives a frozen :class:`PoolMetrics` with the
gauges filled in by the pool; :func:`prometheus_text` renders many of them for ``/metrics``. The
duration histogram is cumulative on export, as Prometheus wants it (``le`` buckets in seconds,
the last one ``+Inf``).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

DURATION_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
)
"""Upper bounds, in seconds, of the duration histogram (Lambda allows up to 900 s)."""


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """Cumulative counts per upper bound (the last bound is ``inf``), their sum and count."""

    buckets: tuple[tuple[float, int], ...]
    sum: float
    count: int


class Histogram:
    """A fixed-bucket histogram of seconds."""

    __slots__ = ("_bounds", "_counts", "count", "sum")

    def __init__(self, bounds: tuple[float, ...] = DURATION_BUCKETS) -> None:
        self._bounds = bounds
        self._counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self._counts[bisect.bisect_left(self._bounds, seconds)] += 1
        self.sum += seconds
        self.count += 1

    def snapshot(self) -> HistogramSnapshot:
        running = 0
        cumulative = []
        for bound, count in zip((*self._bounds, math.inf), self._counts, strict=True):
            running += count
            cumulative.append((bound, running))
        return HistogramSnapshot(tuple(cumulative), self.sum, self.count)


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolMetrics:
    """One function's counters (since the pool started) and gauges (now)."""

    function: str
    invocations: int  # finished on an instance or failed there; throttles not included
    errors: int  # every invocation that did not return the handler's answer
    throttles: int
    timeouts: int
    oom_kills: int
    crashes: int
    cold_starts: int  # invocations that waited for their instance to start
    instance_starts: int
    template_starts: int
    in_flight: int  # the concurrency gauge: invocations running now
    queued: int
    instances: int  # live instances, starting ones included
    busy: int
    idle: int
    duration: HistogramSnapshot


@dataclass(slots=True)
class Counters:
    """The pool's mutable counters."""

    invocations: int = 0
    errors: int = 0
    throttles: int = 0
    timeouts: int = 0
    oom_kills: int = 0
    crashes: int = 0
    cold_starts: int = 0
    instance_starts: int = 0
    template_starts: int = 0
    duration: Histogram = field(default_factory=Histogram)

    def count(self, status: str, duration_ms: float, *, cold: bool) -> None:
        """One finished invocation with its status (``ok``, ``error``, ``timeout``...)."""
        if status == "throttled":
            self.throttles += 1
            return
        self.invocations += 1
        self.duration.observe(duration_ms / 1000)
        if cold:
            self.cold_starts += 1
        if status == "ok":
            return
        self.errors += 1
        if status == "timeout":
            self.timeouts += 1
        elif status == "oom":
            self.oom_kills += 1
        elif status == "crash":
            self.crashes += 1

    def snapshot(
        self, function: str, *, in_flight: int, queued: int, instances: int, busy: int, idle: int
    ) -> PoolMetrics:
        return PoolMetrics(
            function=function,
            invocations=self.invocations,
            errors=self.errors,
            throttles=self.throttles,
            timeouts=self.timeouts,
            oom_kills=self.oom_kills,
            crashes=self.crashes,
            cold_starts=self.cold_starts,
            instance_starts=self.instance_starts,
            template_starts=self.template_starts,
            in_flight=in_flight,
            queued=queued,
            instances=instances,
            busy=busy,
            idle=idle,
            duration=self.duration.snapshot(),
        )


COUNTERS: tuple[tuple[str, str], ...] = (
    ("invocations", "Invocations that reached an instance (throttles not included)."),
    ("errors", "Invocations that did not return the handler's answer."),
    ("throttles", "Invocations refused: every instance busy and the queue full (HTTP 429)."),
    ("timeouts", "Invocations killed at the function's timeout."),
    ("oom_kills", "Invocations whose instance exceeded its memory limit."),
    ("crashes", "Invocations whose instance died under them."),
    ("cold_starts", "Invocations that waited for their instance to start."),
    ("instance_starts", "Instances forked from a template."),
    ("template_starts", "Templates started (the handler module imported: the init phase)."),
)
GAUGES: tuple[tuple[str, str, str], ...] = (
    ("concurrency", "in_flight", "Invocations running now."),
    ("queued", "queued", "Invocations waiting for an instance."),
    ("instances", "instances", "Live instances, starting ones included."),
    ("busy_instances", "busy", "Instances running an invocation."),
    ("idle_instances", "idle", "Warm instances waiting for one."),
)


def prometheus_text(pools: Iterable[PoolMetrics]) -> str:
    """Every pool's figures as Prometheus text exposition (one family per figure)."""
    pools = sorted(pools, key=lambda m: m.function)
    if not pools:
        return ""
    out: list[str] = []
    for name, help_ in COUNTERS:
        family = f"shoal_function_{name}_total"
        out += [f"# HELP {family} {help_}", f"# TYPE {family} counter"]
        out += [f'{family}{{function="{m.function}"}} {getattr(m, name)}' for m in pools]
    for name, attribute, help_ in GAUGES:
        family = f"shoal_function_{name}"
        out += [f"# HELP {family} {help_}", f"# TYPE {family} gauge"]
        out += [f'{family}{{function="{m.function}"}} {getattr(m, attribute)}' for m in pools]
    family = "shoal_function_duration_seconds"
    out += [f"# HELP {family} Invocation duration.", f"# TYPE {family} histogram"]
    for m in pools:
        for bound, count in m.duration.buckets:
            le = "+Inf" if math.isinf(bound) else repr(bound)
            out.append(f'{family}_bucket{{function="{m.function}",le="{le}"}} {count}')
        out.append(f'{family}_sum{{function="{m.function}"}} {m.duration.sum!r}')
        out.append(f'{family}_count{{function="{m.function}"}} {m.duration.count}')
    return "\n".join(out) + "\n"


__all__ = [
    "DURATION_BUCKETS",
    "Counters",
    "Histogram",
    "HistogramSnapshot",
    "PoolMetrics",
    "prometheus_text",
]
