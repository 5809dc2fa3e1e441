"""The pool's decisions, as pure functions: where an invocation goes, which idle instances stop.

:class:`~shoal.functions.pool.FunctionPool` asks :func:`admit` for every invocation and
:func:`plan_reap` whenever its reap timer fires; both take numbers and return what to do, so
they are tested exhaustively, in virtual time, without a process.

- **admit**: an instance with a free slot runs it; else a new instance is started for it if
  fewer than ``max_instances`` are live and fewer than ``max_starting`` are starting (it is
  written to the new instance's socket at once and runs as soon as the instance is up); else it
  waits in the queue, for the first instance to free up or to start, if there is room: the
  queue holds ``queue_size`` invocations plus one per instance that may still be started;
  else it is throttled (Lambda's TooManyRequests).

  Pacing the starts (``max_starting``, the CPU count by default) is the activator's trick
  (Knative buffers requests while it scales): the template forks one child at a time anyway,
  so a burst of 200 first invocations of a 1 ms handler is served by the first few instances
  to come up while more start, instead of by 200 forks in a row; a burst of slow invocations
  still gets an instance each, as fast as they can be forked.
- **plan_reap**: idle instances stop ``idle_timeout`` after their last invocation ended, the
  longest idle first, never below ``min_instances`` live ones. Busy instances are not
  candidates at all: an instance is only ever stopped between invocations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Admission = Literal["run", "spawn", "queue", "throttle"]


def admit(
    *,
    has_free: bool,
    live: int,
    starting: int,
    max_instances: int,
    max_starting: int,
    queued: int,
    queue_size: int,
) -> Admission:
    """Where a new invocation goes (see the module docstring)."""
    if has_free:
        return "run"
    if live < max_instances and starting < max_starting:
        return "spawn"
    if queued < queue_size + max(0, max_instances - live):
        return "queue"
    return "throttle"


def should_spawn(*, live: int, starting: int, max_instances: int, max_starting: int) -> bool:
    """Whether a queued invocation may have a new instance started for it."""
    return live < max_instances and starting < max_starting


@dataclass(frozen=True, slots=True)
class Idle:
    """An instance with nothing in flight, idle since ``since`` (loop-clock seconds)."""

    key: int
    since: float


@dataclass(frozen=True, slots=True)
class ReapPlan:
    """Instances to stop now, and when to look again (None: nothing will be due by itself)."""

    stop: tuple[int, ...]
    wake_at: float | None


def plan_reap(
    idle: Sequence[Idle], *, live: int, min_instances: int, idle_timeout: float, now: float
) -> ReapPlan:
    """Which of the ``idle`` instances (out of ``live`` ones) to stop at ``now``."""
    spare = live - min_instances
    stop: list[int] = []
    for instance in sorted(idle, key=lambda i: (i.since, i.key)):
        if len(stop) >= spare:
            return ReapPlan(tuple(stop), None)
        due = instance.since + idle_timeout
        if due > now:
            return ReapPlan(tuple(stop), due)
        stop.append(instance.key)
    return ReapPlan(tuple(stop), None)


def template_due(*, live: int, queued: int, min_instances: int, timeout: float | None) -> bool:
    """Whether a template with no instances should be put on its idle timer."""
    return timeout is not None and live == 0 and queued == 0 and min_instances == 0


__all__ = [
    "Admission",
    "Idle",
    "ReapPlan",
    "admit",
    "plan_reap",
    "should_spawn",
    "template_due",
]
