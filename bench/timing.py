"""Taking timing samples: child processes by wall time, Python calls by time per call.

The measuring half of a benchmark script (``bench.stats`` summarizes what this collects). Both
helpers **interleave** the things compared, one sample of each per round, rotating who goes first,
so that a burst of load on this shared machine hits the subject and its baseline alike instead of
whichever happened to run during it. All samples are in seconds.
"""

from __future__ import annotations

import gc
import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

K = TypeVar("K")


class CommandFailed(RuntimeError):
    """A timed command exited non-zero: the figure would be meaningless."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        tail = "\n".join(stderr.strip().splitlines()[-10:])
        super().__init__(f"{' '.join(argv)} exited {returncode}:\n{tail}")


def run_timed(
    argv: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> float:
    """Wall seconds from spawning ``argv`` to its exit (stdout discarded); raise if it fails."""
    start = time.perf_counter()
    done = subprocess.run(
        list(argv),
        cwd=cwd,
        env=None if env is None else dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise CommandFailed(argv, done.returncode, done.stderr.decode(errors="replace"))
    return elapsed


def _rotated(keys: Sequence[K], by: int) -> list[K]:
    by %= max(1, len(keys))
    return [*keys[by:], *keys[:by]]


def time_commands(
    commands: Mapping[str, Sequence[str]],
    *,
    rounds: int,
    warmup: int = 1,
    budget: float | None = None,
    min_rounds: int = 5,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, list[float]]:
    """Up to ``rounds`` wall-time samples of each command, interleaved, after ``warmup`` rounds.

    With a ``budget`` (seconds, warmup included), stop early once it is spent and at least
    ``min_rounds`` rounds are in: how ``--quick`` stays under its time limit however slow the
    commands are. Every command always has the same number of samples.
    """
    names = list(commands)
    samples: dict[str, list[float]] = {name: [] for name in names}
    deadline = None if budget is None else time.perf_counter() + budget
    for i in range(warmup + rounds):
        for name in _rotated(names, i):
            elapsed = run_timed(commands[name], cwd=cwd, env=env)
            if i >= warmup:
                samples[name].append(elapsed)
        done = i + 1 - warmup
        if deadline is not None and done >= min_rounds and time.perf_counter() > deadline:
            break
    return samples


def calls_per_sample(call: Callable[[], object], min_seconds: float) -> int:
    """How many calls make one sample last at least ``min_seconds`` (1, 2, 5, 10, 20, ...)."""
    number = 1
    while True:
        for step in (1, 2, 5):
            n = number * step
            start = time.perf_counter()
            for _ in range(n):
                call()
            if time.perf_counter() - start >= min_seconds:
                return n
        number *= 10


def time_calls(
    calls: Mapping[str, Callable[[], object]],
    *,
    repeat: int,
    min_sample_seconds: float = 0.02,
) -> dict[str, list[float]]:
    """``repeat`` samples of seconds-per-call for each callable, interleaved.

    A sample is the mean over enough back-to-back calls to last ``min_sample_seconds`` (so the
    clock's resolution does not matter), taken after a ``gc.collect()`` so that garbage from the
    previous sample is not charged to this one. The garbage collector stays on: its cost while
    the calls allocate is part of what they cost.
    """
    names = list(calls)
    numbers = {name: calls_per_sample(calls[name], min_sample_seconds) for name in names}
    samples: dict[str, list[float]] = {name: [] for name in names}
    for i in range(repeat):
        for name in _rotated(names, i):
            call, number = calls[name], numbers[name]
            gc.collect()
            start = time.perf_counter()
            for _ in range(number):
                call()
            samples[name].append((time.perf_counter() - start) / number)
    return samples


def python_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment, minus what would slow a Python child down or make it chatty."""
    env = {**os.environ, "NO_COLOR": "1", **(extra or {})}
    for name in _SLOWING:
        env.pop(name, None)
    return env


# Each makes every Python child slower than a user's would be.
_SLOWING = (
    "PYTHONDONTWRITEBYTECODE",  # no .pyc cache: every run recompiles
    "PYTHONPROFILEIMPORTTIME",
    "PYTHONDEVMODE",
    "PYTHONTRACEMALLOC",
    "PYTHONMALLOCSTATS",
)
