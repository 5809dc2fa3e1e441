"""The entry point every benchmark script ends with, and the contract it keeps.

A benchmark is one module ``bench/<name>.py`` that:

1. makes itself importable when run as a file (``python bench/<name>.py``), before its imports::

       if __package__ in (None, ""):  # run as a file: import from the repo root, not bench/
           sys.path[0] = str(Path(__file__).resolve().parents[1])

2. defines ``measure(run: Run) -> Iterable[Figure]``, sizing its work with
   ``run.pick(quick=..., full=...)`` so that ``--quick`` finishes in under 30 s;
3. measures each figure **against a baseline in the same run** (``bench.timing`` interleaves them)
   and states a target (``bench.figures.at_most``/``at_least``; ``source="ours"`` unless the target
   is one of DESIGN.md §6);
4. ends with ``if __name__ == "__main__": sys.exit(main("<name>", measure))``: that block is also
   how ``python -m bench`` tells a benchmark from a helper module (helpers have none).

``main`` parses ``--quick``, takes the machine's noise indicators before and after
(``bench.machine``), and prints exactly **one JSON line** on stdout (``bench.figures.Result``).
Everything else goes to stderr: while ``measure`` runs, file descriptor 1 itself points at stderr,
so a stray ``print`` or a child process that inherits stdout cannot break the line. If ``measure``
raises, the traceback goes to stderr, nothing to stdout, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

from bench.figures import Baseline, Figure, Result, Target
from bench.machine import Snapshot, describe
from bench.stats import Summary, summarize

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


@dataclass(frozen=True)
class Run:
    """What a script is asked to do: quick or full, from the repository root."""

    quick: bool
    root: Path = ROOT

    def pick(self, *, quick: T, full: T) -> T:
        """The quick or the full value of a size (rounds, requests, instances...)."""
        return quick if self.quick else full


Measure = Callable[[Run], Iterable[Figure]]


def statistic(summary: Summary, stat: str) -> float:
    """``median``, ``p50``, ``p95``, ``p99``, ``min``, ``max`` or ``mean`` of a summary."""
    if stat not in ("median", "p50", "p95", "p99", "min", "max", "mean"):
        raise ValueError(f"unknown statistic {stat!r}")
    value: float = getattr(summary, stat)
    return value


def from_samples(
    name: str,
    samples: Sequence[float],
    *,
    stat: str = "median",
    unit: str = "ms",
    scale: float = 1000.0,
    baseline: tuple[str, Sequence[float]] | None = None,
    target: Target | None = None,
    note: str = "",
) -> Figure:
    """A figure from raw samples (seconds by default, shown in ``unit`` after ``scale``).

    ``baseline`` is ``(its name, its samples)``; the same statistic is taken of both, so a p95
    figure is compared with the baseline's p95.
    """
    summary = summarize(samples).scaled(scale)
    base = None
    if baseline is not None:
        base_name, base_samples = baseline
        base = Baseline(base_name, statistic(summarize(base_samples).scaled(scale), stat))
    return Figure(
        name=name,
        value=statistic(summary, stat),
        unit=unit,
        baseline=base,
        target=target,
        samples=summary.n,
        cv=round(summary.cv, 4),
        note=note,
    )


@contextlib.contextmanager
def stdout_reserved() -> Iterator[IO[str]]:
    """Point fd 1 at stderr for the duration; yield a writer to the real stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    real = os.fdopen(os.dup(saved), "w", encoding="utf-8")
    try:
        yield real
    finally:
        real.flush()
        real.close()
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def main(name: str, measure: Measure, argv: Sequence[str] | None = None) -> int:
    """Run ``measure`` and print its one JSON line; the exit status for ``sys.exit``."""
    parser = argparse.ArgumentParser(prog=f"bench/{name}.py", description=measure.__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="fewer samples: finishes in under 30 s"
    )
    args = parser.parse_args(argv)
    run = Run(quick=args.quick)
    rounds = run.pick(quick=10, full=30)
    with stdout_reserved() as out:
        before = Snapshot.take(rounds)
        start = time.perf_counter()
        try:
            figures = tuple(measure(run))
        except Exception:
            traceback.print_exc()
            print(f"bench/{name}.py: failed, no figures", file=sys.stderr)
            return 1
        seconds = round(time.perf_counter() - start, 3)
        result = Result(name, run.quick, figures, seconds, describe(before, rounds))
        out.write(json.dumps(result.to_json(), allow_nan=False) + "\n")
    return 0
