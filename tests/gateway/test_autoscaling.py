"""The KPA-style decision, in virtual time: a simulated service under scripted load, no sleeping."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.gateway.autoscaling import Decision, ScalerState, decide
from shoal.manifest import Autoscale

SETTINGS = Autoscale.model_validate(
    {
        "min": 0,
        "max": 20,
        "target_concurrency": 10,
        "window": "60s",
        "panic_window": "6s",
        "scale_to_zero_after": "30s",
    }
)


def simulate(
    load: Callable[[float], float],
    until: float,
    *,
    settings: Autoscale = SETTINGS,
    replicas: int = 1,
    tick: float = 1.0,
) -> list[tuple[float, int, bool]]:
    """Sample ``load(t)`` every tick, decide, and apply at once: [(t, replicas, panicking)]."""
    samples: list[tuple[float, float]] = []
    state = ScalerState()
    out = []
    t = 0.0
    while t <= until:
        samples.append((t, load(t)))
        samples = [s for s in samples if s[0] > t - settings.window]
        decision = decide(samples, replicas, settings, t, state)
        replicas, state = decision.replicas, decision.state
        out.append((t, replicas, decision.panicking))
        t += tick
    return out


def at(history: list[tuple[float, int, bool]], t: float) -> int:
    return next(r for time, r, _ in history if time >= t)


def test_no_data_keeps_the_current_count() -> None:
    d = decide([], 3, SETTINGS, 100.0)
    assert d.replicas == 3
    assert math.isnan(d.stable)


def test_steady_load_settles_on_load_over_target() -> None:
    history = simulate(lambda t: 35.0, 200)
    assert at(history, 150) == 4  # ceil(35 / 10)
    assert not history[-1][2]


def test_a_burst_panics_and_scales_up_within_seconds() -> None:
    history = simulate(lambda t: 5.0 if t < 100 else 80.0, 200)
    assert at(history, 99) == 1
    assert at(history, 103) >= 4  # the panic window sees the burst at once
    assert any(p for t, _, p in history if 100 <= t <= 110)
    assert at(history, 130) == 8


def test_panic_never_scales_down_and_ends_after_a_stable_window() -> None:
    history = simulate(lambda t: 80.0 if 100 <= t < 110 else 5.0, 300)
    peak = max(r for t, r, _ in history if 100 <= t <= 115)
    assert peak >= 8
    during = [r for t, r, p in history if p and t > 100]
    assert during == sorted(during)  # only up while panicking
    assert not history[-1][2]
    over = [t for t, r, p in history if p]
    end_of_panic = max(over)
    # once scaled up, the burst is no longer over the threshold (8 wanted / 8 ready): panic
    # lasts one stable window from when it was last over it (at its start)
    assert 100 + 59 <= end_of_panic <= 100 + 61
    assert at(history, 290) == 1


def test_scale_down_is_at_most_half_per_decision() -> None:
    d = decide([(t, 0.0) for t in range(61)], 8, SETTINGS, 60.0, ScalerState(last_active=59.0))
    assert d.replicas == 4
    d = decide([(t, 0.0) for t in range(61)], 1, SETTINGS, 60.0, ScalerState(last_active=59.0))
    assert d.replicas == 1  # idle only one second: the last replica stays


def test_scale_to_zero_only_after_the_idle_time() -> None:
    history = simulate(lambda t: 10.0 if t < 50 else 0.0, 300)
    zero_at = min(t for t, r, _ in history if r == 0)
    assert zero_at >= 49 + 60  # the stable window must be empty first (last busy at 49)
    assert zero_at >= 50 + SETTINGS.scale_to_zero_after
    settings = Autoscale.model_validate({**SETTINGS.model_dump(), "scale_to_zero_after": "200s"})
    history = simulate(lambda t: 10.0 if t < 50 else 0.0, 300, settings=settings)
    assert min(t for t, r, _ in history if r == 0) == 49 + 200


def test_min_and_max_bound_everything() -> None:
    settings = Autoscale.model_validate({**SETTINGS.model_dump(), "min": 2, "max": 5})
    history = simulate(lambda t: 0.0 if t < 100 else 1000.0, 200, settings=settings, replicas=3)
    assert at(history, 99) == 2
    assert max(r for _, r, _ in history) == 5


def test_scale_from_zero_on_the_first_request() -> None:
    d = decide([(0.0, 0.0), (1.0, 1.0)], 0, SETTINGS, 1.0)
    assert d.replicas == 1  # one held request is enough
    d = decide([(0.0, 0.0), (1.0, 0.0)], 0, SETTINGS, 1.0)
    assert d.replicas == 0


def test_never_busy_counts_as_idle_since_the_first_sample() -> None:
    samples = [(float(t), 0.0) for t in range(100)]
    assert decide(samples[:20], 1, SETTINGS, 19.0).replicas == 1
    assert decide(samples[40:], 1, SETTINGS, 99.0).replicas == 0


def test_decision_carries_its_inputs() -> None:
    d = decide([(t, 20.0) for t in range(61)], 1, SETTINGS, 60.0)
    assert isinstance(d, Decision)
    assert d.stable == pytest.approx(20.0)
    assert d.panic == pytest.approx(20.0)
    assert d.panicking  # 2 wanted / 1 ready reaches the threshold of 2
    assert d.replicas == 2
    assert d.state.last_active == 60.0


@given(
    load=st.lists(st.floats(0, 500, allow_nan=False), min_size=1, max_size=120),
    replicas=st.integers(0, 20),
)
def test_always_within_bounds(load: list[float], replicas: int) -> None:
    samples = [(float(t), v) for t, v in enumerate(load)]
    d = decide(samples, replicas, SETTINGS, float(len(load) - 1))
    assert SETTINGS.min <= d.replicas <= SETTINGS.max
    if any(samples[-6:][i][1] > 0 for i in range(len(samples[-6:]))) and replicas == 0:
        assert d.replicas >= 1  # anything in flight wakes a service at zero
