"""Statistics over timing samples: pure functions, no clocks.

Used by the benchmark scripts (after ``bench.timing`` has collected samples) and by the machine
noise check (``bench.machine``). Samples are plain floats in whatever unit the caller chose.

Percentiles use the **nearest-rank** definition: the p-th percentile of n samples is the smallest
sample such that at least p % of the samples are less than or equal to it, i.e. the value at
1-based rank ``ceil(p / 100 * n)`` of the sorted samples (rank 1 for p = 0). It is always a value
that was actually observed, never an interpolation, which is what latency figures conventionally
mean by p95 and p99. With 20 samples, p95 is the 19th smallest; with 10, p95 and p99 are both the
largest: quote high percentiles only with enough samples behind them.

The **median** is the usual one (the mean of the two middle samples when n is even), so for even n
it can differ slightly from p50, which is the lower middle sample.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass


def percentile(samples: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile of ``samples`` (0 <= p <= 100)."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p!r} is outside 0-100")
    ordered = sorted(samples)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def median(samples: Sequence[float]) -> float:
    """The median: the middle sample, or the mean of the two middle ones."""
    if not samples:
        raise ValueError("median of no samples")
    return statistics.median(samples)


def cv(samples: Sequence[float]) -> float:
    """Coefficient of variation: sample standard deviation / mean (0.0 for fewer than 2)."""
    if len(samples) < 2:
        return 0.0
    mean = statistics.fmean(samples)
    if mean == 0:
        return 0.0
    return statistics.stdev(samples) / mean


@dataclass(frozen=True)
class Summary:
    """The usual description of a set of samples, all in the samples' unit (cv is a fraction)."""

    n: int
    min: float
    median: float
    p50: float
    p95: float
    p99: float
    max: float
    mean: float
    cv: float

    def scaled(self, factor: float) -> Summary:
        """The same summary in another unit (e.g. seconds * 1000 for milliseconds)."""
        return Summary(
            n=self.n,
            min=self.min * factor,
            median=self.median * factor,
            p50=self.p50 * factor,
            p95=self.p95 * factor,
            p99=self.p99 * factor,
            max=self.max * factor,
            mean=self.mean * factor,
            cv=self.cv,
        )

    def to_json(self) -> dict[str, float]:
        return asdict(self)


def summarize(samples: Sequence[float]) -> Summary:
    """Every statistic of ``samples`` at once."""
    if not samples:
        raise ValueError("summary of no samples")
    return Summary(
        n=len(samples),
        min=min(samples),
        median=median(samples),
        p50=percentile(samples, 50),
        p95=percentile(samples, 95),
        p99=percentile(samples, 99),
        max=max(samples),
        mean=statistics.fmean(samples),
        cv=cv(samples),
    )
