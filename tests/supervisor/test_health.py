"""The health state machine (``shoal.supervisor.health``): readiness, unhealthiness, cadence.

Pure: every test feeds probe results with explicit times, no clock, no I/O. Table-driven cases
pin the rules one by one; hypothesis checks them against an independent reading of the rules
over arbitrary sequences of results.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.manifest.schema import Health
from shoal.supervisor.health import MIN_INTERVAL, START_INTERVAL, Change, HealthTracker

pytestmark = pytest.mark.timeout(5)


def health(**kw: object) -> Health:
    """A Health from seconds given as numbers (the manifest wants units: 0.5 -> "0.5s")."""
    fields: dict[str, object] = {"http": "/healthz", "interval": 1.0, "timeout": 0.5}
    fields.update(kw)
    for key in ("interval", "timeout", "start_period"):
        if isinstance(fields.get(key), int | float):
            fields[key] = f"{fields[key]:.6f}".rstrip("0").rstrip(".") + "s"
    return Health.model_validate(fields)


@dataclass(frozen=True)
class Case:
    """Results ``(time, ok)`` fed in order; what the tracker must say after each one."""

    failures: int
    start_period: float
    results: list[tuple[float, bool]]
    ready: list[bool]  # after each result
    unhealthy: list[bool]  # after each result
    counted: list[int]  # consecutive_failures after each result


CASES = {
    "ready on the first success, at once": Case(
        3, 10.0, [(0.1, True)], ready=[True], unhealthy=[False], counted=[0]
    ),
    "failures in the start period do not count": Case(
        2,
        10.0,
        [(1, False), (2, False), (3, False), (4, False)],
        ready=[False] * 4,
        unhealthy=[False] * 4,
        counted=[0] * 4,
    ),
    "never ready: unhealthy after N failures past the start period": Case(
        2,
        1.0,
        [(0.5, False), (1.0, False), (2.0, False), (3.0, False)],
        ready=[False] * 4,
        unhealthy=[False, False, True, True],
        counted=[0, 1, 2, 3],
    ),
    "no start period: failures count from the start": Case(
        2,
        0.0,
        [(0.0, False), (0.1, False)],
        ready=[False, False],
        unhealthy=[False, True],
        counted=[1, 2],
    ),
    "a success ends the start period early": Case(
        2,
        10.0,
        [(0.2, True), (0.4, False), (0.6, False)],
        ready=[True, True, False],
        unhealthy=[False, False, True],
        counted=[0, 1, 2],
    ),
    "ready, then N failures: not ready and unhealthy together": Case(
        3,
        0.0,
        [(0, True), (1, False), (2, False), (3, False)],
        ready=[True, True, True, False],
        unhealthy=[False, False, False, True],
        counted=[0, 1, 2, 3],
    ),
    "flapping below the threshold never trips": Case(
        2,
        0.0,
        [(0, True), (1, False), (2, True), (3, False), (4, True), (5, False)],
        ready=[True] * 6,
        unhealthy=[False] * 6,
        counted=[0, 1, 0, 1, 0, 1],
    ),
    "failures=1: the first counted failure trips": Case(
        1,
        0.0,
        [(0, True), (1, False)],
        ready=[True, False],
        unhealthy=[False, True],
        counted=[0, 1],
    ),
    "unhealthy is latched, readiness recovers": Case(
        1,
        0.0,
        [(0, False), (1, True), (2, False)],
        ready=[False, True, False],
        unhealthy=[True, True, True],
        counted=[1, 0, 1],
    ),
    "start period edge: a result at exactly its end counts": Case(
        1,
        2.0,
        [(1.999, False), (2.0, False)],
        ready=[False, False],
        unhealthy=[False, True],
        counted=[0, 1],
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_rules(case: Case) -> None:
    tracker = HealthTracker(health(failures=case.failures, start_period=case.start_period), 0.0)
    seen = []
    for at, ok in case.results:
        tracker.record(ok, at, "ok" if ok else "boom")
        seen.append((tracker.ready, tracker.unhealthy, tracker.consecutive_failures))
    assert seen == list(zip(case.ready, case.unhealthy, case.counted, strict=True))


def test_changes_only_on_transitions() -> None:
    tracker = HealthTracker(health(failures=2, start_period=0), started_at=100.0)
    assert (tracker.ready, tracker.unhealthy, tracker.last_detail) == (False, False, "")
    up = tracker.record(True, 100.1, "GET /healthz: 200 OK")
    assert up == Change(
        at=100.1,
        ready=True,
        unhealthy=False,
        ready_changed=True,
        became_unhealthy=False,
        consecutive_failures=0,
        detail="GET /healthz: 200 OK",
    )
    assert tracker.record(True, 101, "GET /healthz: 200 OK") is None
    assert tracker.record(False, 102, "GET /healthz: 503") is None
    assert tracker.last_detail == "GET /healthz: 503"
    down = tracker.record(False, 103, "GET /healthz: 503")
    assert down is not None
    assert (down.ready, down.ready_changed, down.unhealthy, down.became_unhealthy) == (
        False,
        True,
        True,
        True,
    )
    assert down.consecutive_failures == 2
    assert tracker.record(False, 104, "GET /healthz: 503") is None  # latched: said once
    back = tracker.record(True, 105, "GET /healthz: 200 OK")
    assert back is not None
    assert (back.ready, back.ready_changed, back.unhealthy, back.became_unhealthy) == (
        True,
        True,
        True,
        False,
    )
    assert tracker.probes == 6


def test_never_ready_instance_becomes_unhealthy_without_a_readiness_change() -> None:
    tracker = HealthTracker(health(failures=1, start_period=1.0), started_at=0.0)
    assert tracker.record(False, 0.5, "refused") is None
    change = tracker.record(False, 1.5, "refused")
    assert change is not None
    assert change.became_unhealthy and not change.ready_changed and not change.ready


def test_start_period_is_counted_from_started_at() -> None:
    tracker = HealthTracker(health(failures=1, start_period=5.0), started_at=1000.0)
    assert tracker.start_period_ends_at == 1005.0
    assert tracker.in_start_period(1004.9)
    assert tracker.record(False, 1004.9, "x") is None
    assert not tracker.in_start_period(1005.0)
    change = tracker.record(False, 1005.0, "x")
    assert change is not None and change.became_unhealthy


# ---------------------------------------------------------------- cadence


def test_first_probe_goes_out_at_once() -> None:
    tracker = HealthTracker(health(interval=30.0), started_at=7.0)
    assert tracker.next_probe_at(7.0) == 7.0


@pytest.mark.parametrize(
    ("interval", "start_period", "results", "now", "gap"),
    [
        # start period, no success yet: the fast start cadence
        (1.0, 10.0, [(0.0, False)], 0.01, START_INTERVAL),
        # an interval shorter than the start cadence wins
        (0.02, 10.0, [(0.0, False)], 0.01, 0.02),
        # the first success ends the start period, and the fast cadence with it
        (1.0, 10.0, [(0.0, False), (0.15, True)], 0.15, 1.0),
        # the start period ran out without a success: back to the interval
        (1.0, 0.5, [(0.45, False)], 0.5, 1.0),
        # no start period at all: the interval from the start
        (2.0, 0.0, [(0.0, False)], 0.0, 2.0),
        # interval 0 must not spin
        (0.0, 0.0, [(0.0, True)], 0.0, MIN_INTERVAL),
    ],
)
def test_cadence(
    interval: float, start_period: float, results: list[tuple[float, bool]], now: float, gap: float
) -> None:
    tracker = HealthTracker(health(interval=interval, start_period=start_period), started_at=0.0)
    for at, ok in results:
        tracker.record(ok, at, "")
    assert tracker.next_probe_at(now) == pytest.approx(now + gap)


def test_a_service_up_after_150ms_is_seen_within_one_start_interval() -> None:
    """Simulate the loop: probe at next_probe_at, the service answers from t=0.15."""
    tracker = HealthTracker(health(interval=1.0, start_period=10.0), started_at=0.0)
    now = 0.0
    while not tracker.ready:
        now = tracker.next_probe_at(now) + 0.002  # each probe takes 2 ms
        tracker.record(now >= 0.15, now, "")
    assert 0.15 <= now <= 0.15 + START_INTERVAL + 0.01


# ---------------------------------------------------------------- properties


def reference(
    results: list[tuple[float, bool]], failures: int, start_period: float
) -> list[tuple[bool, bool, int]]:
    """The rules read independently: (ready, unhealthy, counted failures in a row) after each."""
    ready = unhealthy = succeeded = False
    streak = 0
    states = []
    for at, ok in results:
        if ok:
            succeeded, ready, streak = True, True, 0
        elif succeeded or at >= start_period:  # a failure that counts
            streak += 1
            if streak >= failures:
                ready, unhealthy = False, True
        states.append((ready, unhealthy, streak))
    return states


def in_time_order(steps: list[tuple[int, bool]]) -> list[tuple[float, bool]]:
    """Steps are (ms since the previous result, ok): accumulate the delays into times (s).

    Whole milliseconds make results land exactly on a start period's end now and then.
    """
    times = itertools.accumulate(delay for delay, _ in steps)
    return [(at / 1000, ok) for at, (_, ok) in zip(times, steps, strict=True)]


results_strategy = st.lists(st.tuples(st.integers(0, 2000), st.booleans()), max_size=40).map(
    in_time_order
)


# Hypothesis' generation is CPU-bound: ~0.4 s alone, but several times that on a loaded
# machine. The module's 5 s cap is there to catch hangs, so this one gets more room.
@pytest.mark.timeout(20)
@settings(max_examples=150, deadline=None)
@given(
    results=results_strategy,
    failures=st.integers(1, 5),
    start_period=st.sampled_from([0.0, 0.5, 3.0, 10.0]),
    interval=st.sampled_from([0.0, 0.05, 1.0, 5.0]),
)
def test_tracker_matches_the_rules(
    results: list[tuple[float, bool]], failures: int, start_period: float, interval: float
) -> None:
    tracker = HealthTracker(
        health(failures=failures, start_period=start_period, interval=interval), started_at=0.0
    )
    was_ready = was_unhealthy = False
    became_unhealthy = 0
    expected = reference(results, failures, start_period)
    for i, (at, ok) in enumerate(results):
        change = tracker.record(ok, at, f"probe {i}")
        ready, unhealthy, streak = expected[i]
        assert (tracker.ready, tracker.unhealthy, tracker.consecutive_failures) == (
            ready,
            unhealthy,
            streak,
        )
        assert tracker.last_detail == f"probe {i}"
        # a Change exactly on transitions, and it says which
        flipped, rose = ready != was_ready, unhealthy and not was_unhealthy
        if flipped or rose:
            assert change is not None
            assert (change.ready, change.unhealthy) == (ready, unhealthy)
            assert (change.ready_changed, change.became_unhealthy) == (flipped, rose)
            assert (change.at, change.detail) == (at, f"probe {i}")
        else:
            assert change is None
        became_unhealthy += rose
        was_ready, was_unhealthy = ready, unhealthy
        # never unhealthy before the start period is over, unless a success ended it early
        if tracker.unhealthy and at < start_period:
            assert any(ok for _, ok in results[: i + 1])
        # cadence: never sooner than MIN_INTERVAL, never later than the interval
        gap = tracker.next_probe_at(at) - at
        assert max(MIN_INTERVAL, min(interval, START_INTERVAL)) - 1e-9 <= gap
        assert gap <= max(interval, MIN_INTERVAL) + 1e-9
        if tracker.in_start_period(at):
            assert abs(gap - max(min(interval, START_INTERVAL), MIN_INTERVAL)) < 1e-9
    assert became_unhealthy <= 1
    assert tracker.probes == len(results)
