"""Restart delays: how long a crashed instance waits before the supervisor starts it again.

Pure arithmetic over the manifest's :class:`~shoal.manifest.schema.Backoff` (STYLE.md habits 2
and 12): no clock is read here. The planner (:mod:`shoal.supervisor.planning`) counts restarts
in a row with :func:`next_restart_count` and turns the count into a delay with
:func:`restart_delay`; the executor only records the resulting ``backoff_until``.

Restart *n* in a row (1-based) waits::

    n = 1           0                      (the first restart is immediate)
    n >= 2          min(initial * factor ** (n - 2), max)

With the defaults (``initial: 100ms, factor: 2, max: 30s, reset_after: 10s``):

    ========= ======= ======= ======= ======= ======= ===== ===== ===== ====== ====== ======
    restart    1       2       3       4       5       6     7     8     9      10     11+
    ========= ======= ======= ======= ======= ======= ===== ===== ===== ====== ====== ======
    delay (s)  0       0.1     0.2     0.4     0.8     1.6   3.2   6.4   12.8   25.6   30
    ========= ======= ======= ======= ======= ======= ===== ===== ===== ====== ====== ======

A run that lasted at least ``reset_after`` ends the streak: the restart after it is number 1
again, so it is immediate. ``factor: 1`` gives a constant delay of ``initial`` from the second
restart on; ``initial`` above ``max`` is capped like any other delay.
"""

from __future__ import annotations

from shoal.manifest.schema import Backoff


def restart_delay(backoff: Backoff, restarts: int) -> float:
    """Seconds to wait before restart number ``restarts`` in a row (1-based; 0 or less: 0)."""
    if restarts <= 1:
        return 0.0
    cap = max(backoff.max, 0.0)
    if backoff.initial <= 0.0:
        return 0.0
    try:
        delay = backoff.initial * backoff.factor ** (restarts - 2)
    except OverflowError:  # factor ** n beyond a float: far past any cap
        return cap
    return min(delay, cap)


def next_restart_count(previous_restarts: int, ran_for: float, reset_after: float) -> int:
    """The number in a row that the coming restart carries.

    ``previous_restarts`` is the count the run that just ended was started with (0 for a first
    start), ``ran_for`` how long that run lasted. A run of ``reset_after`` or longer resets the
    streak, so the coming restart is number 1 (immediate); otherwise the streak grows by one.
    """
    if ran_for >= reset_after:
        return 1
    return max(previous_restarts, 0) + 1


__all__ = ["next_restart_count", "restart_delay"]
