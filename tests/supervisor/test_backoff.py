"""Restart delays and restart counts: the tables of ``shoal.supervisor.backoff``."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.manifest.schema import Backoff
from shoal.supervisor.backoff import next_restart_count, restart_delay

DEFAULTS = Backoff()


def delays(backoff: Backoff, count: int) -> list[float]:
    return [restart_delay(backoff, n) for n in range(1, count + 1)]


def test_defaults_follow_the_documented_table() -> None:
    expected = [0, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30, 30, 30]
    assert delays(DEFAULTS, len(expected)) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("backoff", "expected"),
    [
        (Backoff(initial="1s", factor=1.0, max="30s"), [0, 1, 1, 1, 1]),
        (Backoff(initial="500ms", factor=3.0, max="10s"), [0, 0.5, 1.5, 4.5, 10, 10]),
        (Backoff(initial="5s", factor=2.0, max="2s"), [0, 2, 2, 2]),  # initial above the cap
        (Backoff(initial=0, factor=2.0, max="30s"), [0, 0, 0]),
        (Backoff(initial="100ms", factor=2.0, max=0), [0, 0, 0]),
    ],
)
def test_other_settings(backoff: Backoff, expected: list[float]) -> None:
    assert delays(backoff, len(expected)) == pytest.approx(expected)


@pytest.mark.parametrize("restarts", [-3, 0, 1])
def test_the_first_restart_is_immediate(restarts: int) -> None:
    assert restart_delay(DEFAULTS, restarts) == 0.0


def test_huge_counts_stay_at_the_cap() -> None:
    assert restart_delay(DEFAULTS, 10_000) == 30.0
    assert restart_delay(Backoff(factor=1.5), 10**9) == 30.0


@given(st.integers(min_value=1, max_value=5_000), st.floats(1.0, 10.0))
def test_delays_never_shrink_and_never_pass_the_cap(restarts: int, factor: float) -> None:
    backoff = Backoff(initial="100ms", factor=factor, max="30s")
    now, after = restart_delay(backoff, restarts), restart_delay(backoff, restarts + 1)
    assert 0.0 <= now <= after <= 30.0


@pytest.mark.parametrize(
    ("previous", "ran_for", "expected"),
    [
        (0, 0.0, 1),  # a first start that crashed at once: restart 1, immediate
        (1, 0.5, 2),
        (7, 9.99, 8),
        (7, 10.0, 1),  # ran reset_after: the streak is over
        (7, 3600.0, 1),
        (0, 10.0, 1),
        (-1, 0.0, 1),
    ],
)
def test_next_restart_count(previous: int, ran_for: float, expected: int) -> None:
    assert next_restart_count(previous, ran_for, reset_after=10.0) == expected


def test_reset_after_zero_makes_every_restart_immediate() -> None:
    count = next_restart_count(40, 0.0, reset_after=0.0)
    assert count == 1
    assert restart_delay(DEFAULTS, count) == 0.0


def test_a_crash_loop_in_numbers() -> None:
    """Runs of 1 s with the defaults: counts 1, 2, 3, ...; a 10 s run resets to 1."""
    count, seen = 0, []
    for ran_for in [1, 1, 1, 1, 12, 1, 1]:
        count = next_restart_count(count, ran_for, DEFAULTS.reset_after)
        seen.append((count, restart_delay(DEFAULTS, count)))
    assert seen == [(1, 0), (2, 0.1), (3, 0.2), (4, 0.4), (1, 0), (2, 0.1), (3, 0.2)]
