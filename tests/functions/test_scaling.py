"""The pool's decisions in virtual time: admission, reaping (never a busy one), metrics. Pure."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.functions.metrics import Counters, Histogram
from shoal.functions.scaling import Admission, Idle, admit, plan_reap, template_due


@pytest.mark.parametrize(
    ("has_free", "live", "starting", "queued", "expected"),
    [
        (True, 3, 0, 0, "run"),
        (True, 3, 3, 50, "run"),  # a free slot always wins
        (False, 0, 0, 0, "spawn"),
        (False, 2, 1, 0, "spawn"),
        (False, 2, 2, 0, "queue"),  # two starting already: wait for one of them
        (False, 3, 0, 0, "queue"),  # max_instances live: the queue
        (False, 3, 0, 1, "queue"),
        (False, 3, 0, 2, "throttle"),  # queue_size 2 full
        (False, 2, 2, 2, "queue"),  # one more instance may still start: one more place
        (False, 2, 2, 3, "throttle"),
    ],
)
def test_admit(has_free: bool, live: int, starting: int, queued: int, expected: Admission) -> None:
    decision = admit(
        has_free=has_free,
        live=live,
        starting=starting,
        max_instances=3,
        max_starting=2,
        queued=queued,
        queue_size=2,
    )
    assert decision == expected


def test_admit_without_queue_throttles_at_max() -> None:
    args = {"has_free": False, "starting": 0, "max_instances": 1, "max_starting": 2}
    assert admit(live=1, queued=0, queue_size=0, **args) == "throttle"  # type: ignore[arg-type]


idle_lists = st.lists(
    st.builds(Idle, key=st.integers(0, 50), since=st.floats(0, 100)),
    max_size=12,
    unique_by=lambda i: i.key,
)


@given(
    idle=idle_lists,
    busy=st.integers(0, 5),
    min_instances=st.integers(0, 6),
    timeout=st.floats(0, 50),
    now=st.floats(0, 200),
)
def test_plan_reap_properties(
    idle: list[Idle], busy: int, min_instances: int, timeout: float, now: float
) -> None:
    live = len(idle) + busy
    plan = plan_reap(idle, live=live, min_instances=min_instances, idle_timeout=timeout, now=now)
    by_key = {i.key: i for i in idle}
    assert set(plan.stop) <= set(by_key)  # busy instances are not even candidates
    assert live - len(plan.stop) >= min(live, min_instances)  # never below min_instances
    assert all(by_key[k].since + timeout <= now for k in plan.stop)  # only the due ones
    kept_due = [
        i for i in idle if i.key not in plan.stop and i.since + timeout <= now
    ]  # a due one kept means min_instances forbade it
    if kept_due:
        assert live - len(plan.stop) <= min_instances
    if plan.wake_at is not None:
        assert plan.wake_at > now
        assert plan.wake_at == min(i.since + timeout for i in idle if i.since + timeout > now)


def test_plan_reap_stops_the_longest_idle_first_and_keeps_min() -> None:
    idle = [Idle(1, 10.0), Idle(2, 0.0), Idle(3, 5.0)]
    plan = plan_reap(idle, live=3, min_instances=1, idle_timeout=60, now=100)
    assert plan.stop == (2, 3)
    assert plan.wake_at is None


def test_plan_reap_in_virtual_time() -> None:
    """An instance idle since t=0 with idle_timeout 60: kept at 59.9, due at 60."""
    idle = [Idle(1, 0.0)]
    early = plan_reap(idle, live=1, min_instances=0, idle_timeout=60, now=59.9)
    assert early.stop == ()
    assert early.wake_at == 60
    assert plan_reap(idle, live=1, min_instances=0, idle_timeout=60, now=60).stop == (1,)


def test_template_due() -> None:
    assert template_due(live=0, queued=0, min_instances=0, timeout=600)
    assert not template_due(live=1, queued=0, min_instances=0, timeout=600)
    assert not template_due(live=0, queued=1, min_instances=0, timeout=600)
    assert not template_due(live=0, queued=0, min_instances=1, timeout=600)
    assert not template_due(live=0, queued=0, min_instances=0, timeout=None)


def test_histogram_is_cumulative_with_inf() -> None:
    histogram = Histogram((0.001, 0.01))
    for seconds in (0.0005, 0.001, 0.005, 2.0):
        histogram.observe(seconds)
    snapshot = histogram.snapshot()
    assert snapshot.buckets == ((0.001, 2), (0.01, 3), (math.inf, 4))
    assert snapshot.count == 4
    assert snapshot.sum == pytest.approx(2.0065)


def test_counters_by_status() -> None:
    counters = Counters()
    for status, cold in [("ok", True), ("ok", False), ("error", False), ("timeout", False)]:
        counters.count(status, 1.0, cold=cold)
    counters.count("oom", 1.0, cold=False)
    counters.count("crash", 1.0, cold=False)
    counters.count("throttled", 0.0, cold=False)
    metrics = counters.snapshot("f", in_flight=0, queued=0, instances=0, busy=0, idle=0)
    assert (metrics.invocations, metrics.errors, metrics.throttles) == (6, 4, 1)
    assert (metrics.timeouts, metrics.oom_kills, metrics.crashes, metrics.cold_starts) == (
        1,
        1,
        1,
        1,
    )
    assert metrics.duration.count == 6
