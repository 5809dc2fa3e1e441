"""The autoscaler's decision, as Knative's Pod Autoscaler (KPA) makes it: pure, in virtual time.

    in-flight samples [(t, n)] ──decide(samples, replicas, Autoscale, now, state)──▶ Decision

``in-flight`` counts requests being answered by a service plus those held for it (scale from
zero), sampled by the caller at a steady tick. Per decision:

- the **stable** value is the average over ``window`` (60 s by default), the **panic** value the
  average over ``panic_window`` (6 s); each divided by ``target_concurrency`` and rounded up gives a
  wanted replica count, limited per decision to ``[floor(ready / 2), ceil(ready * 1000)]``
  (Knative's max scale-down and scale-up rates; ``ready`` counts at least 1);
- **panic mode** starts when the panic count reaches ``panic_threshold`` x the ready replicas;
  while in it the count only grows (never scale down in a burst), and it ends once a whole stable
  window has passed without the threshold being crossed again;
- to **zero**: the last replica goes only when the stable value is 0 and nothing has been in
  flight for ``scale_to_zero_after``; and never below ``min``, never above ``max``.

The state Knative keeps between ticks (when panic began, the panic high-water mark, the last time
anything was in flight) travels in :class:`ScalerState`, so :func:`decide` stays a function. No
data in the stable window means no decision: the current count stands.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from shoal.manifest.schema import Autoscale

MAX_SCALE_UP_RATE = 1000.0
"""Most growth per decision, as a factor of the ready replicas (Knative's default)."""
MAX_SCALE_DOWN_RATE = 2.0
"""Most shrinkage per decision: at least ready / 2 stay (Knative's default)."""


@dataclass(frozen=True, slots=True)
class ScalerState:
    """What the autoscaler remembers between decisions for one service."""

    panic_since: float | None = None
    """When panic mode began or was last extended; None when not panicking."""
    max_panic: int = 0
    """The highest count decided during this panic (panic never scales down)."""
    last_active: float | None = None
    """The last sample time with anything in flight."""


@dataclass(frozen=True, slots=True)
class Decision:
    """How many replicas to run, why, and the state for the next decision."""

    replicas: int
    state: ScalerState
    stable: float
    """Average in-flight over the stable window (NaN without data)."""
    panic: float
    """Average in-flight over the panic window (NaN without data)."""

    @property
    def panicking(self) -> bool:
        return self.state.panic_since is not None


def _average(samples: Sequence[tuple[float, float]], since: float, now: float) -> float:
    values = [n for t, n in samples if since < t <= now]
    return sum(values) / len(values) if values else math.nan


def decide(
    samples: Sequence[tuple[float, float]],
    replicas: int,
    settings: Autoscale,
    now: float,
    state: ScalerState | None = None,
) -> Decision:
    """The replica count for a service with ``replicas`` ready, from in-flight ``samples``."""
    state = state or ScalerState()
    active = [t for t, n in samples if n > 0 and t <= now]
    if active and (state.last_active is None or max(active) > state.last_active):
        state = replace(state, last_active=max(active))
    stable = _average(samples, now - settings.window, now)
    panic = _average(samples, now - settings.panic_window, now)
    if math.isnan(stable):
        return Decision(_bounded(replicas, settings), state, stable, panic)
    if math.isnan(panic):
        panic = stable
    ready = max(1, replicas)
    most = math.ceil(MAX_SCALE_UP_RATE * ready)
    least = math.floor(ready / MAX_SCALE_DOWN_RATE)
    target = settings.target_concurrency
    want_stable = max(1, math.ceil(stable / target)) if stable > 0 else 0  # any load: one
    want_panic = max(1, math.ceil(panic / target)) if panic > 0 else 0
    desired_stable = min(max(want_stable, least), most)
    desired_panic = min(max(want_panic, least), most)

    over = want_panic / ready >= settings.panic_threshold
    if over:
        state = replace(state, panic_since=now)
    elif state.panic_since is not None and now > state.panic_since + settings.window:
        state = replace(state, panic_since=None, max_panic=0)

    desired = desired_stable
    if state.panic_since is not None:
        desired = max(desired, desired_panic, state.max_panic)
        state = replace(state, max_panic=desired)

    if desired == 0 and replicas > 0:
        idle_since = state.last_active
        if idle_since is None:  # never busy that we know of: idle since the oldest sample
            idle_since = min(t for t, _ in samples)
        if settings.min > 0 or now - idle_since < settings.scale_to_zero_after:
            desired = 1
    return Decision(_bounded(desired, settings), state, stable, panic)


def _bounded(count: int, settings: Autoscale) -> int:
    return max(settings.min, min(settings.max, count))


__all__ = ["MAX_SCALE_DOWN_RATE", "MAX_SCALE_UP_RATE", "Decision", "ScalerState", "decide"]
