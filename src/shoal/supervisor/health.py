"""Health of one instance as a pure state machine: probe results in, readiness and restarts out.

Where it sits: :class:`shoal.supervisor.probing.Prober` runs the probes (real I/O) and feeds each
result to a :class:`HealthTracker`; the tracker decides, with no clock, socket or task of its own
(STYLE.md habit 2), whether the instance is *ready* (the gateway may send it traffic) and whether
it is *unhealthy* (the supervisor restarts it). It returns a :class:`Change` only when one of
those flips, so callers act on transitions and never on every probe.

The rules, for a ``Health`` with ``failures = N`` and ``start_period = P``, for an instance
started at ``started_at``:

* **Ready on the first success.** One passing probe is enough (no success threshold), at any
  time, including right after the instance was declared unhealthy.
* **Not ready after N consecutive failures.** A ready instance stays ready through fewer than N
  failures in a row; any success resets the count.
* **The start period.** It lasts from ``started_at`` to ``started_at + P``. Failures inside it do
  not count at all (they are not part of ``consecutive_failures``), so a slow starter is not
  killed while it boots. A success inside it ends it at once, as Docker's ``--start-period``
  does: from then on every failure counts, whatever the clock says. A result counts as inside
  the start period when it is *recorded* before ``started_at + P``.
* **Unhealthy after N consecutive counted failures.** That is: N failures in a row after the
  start period, both for an instance that was ready (it becomes not ready and unhealthy on the
  same result) and for one that never passed a probe (its start period ran out and then N more
  probes failed). ``unhealthy`` is latched: it is raised once per tracker, because the supervisor
  answers it with a restart, and the restarted run gets a fresh tracker. Readiness keeps
  following the probes meanwhile, so a recovered instance may still take traffic until then.

Probe cadence (:meth:`HealthTracker.next_probe_at`): the first probe goes out at once, then one
every ``interval`` measured from the end of the previous probe (probes never overlap, and a slow
probe does not cause a burst afterwards). While the start period runs, that is until the first
success or until ``P`` has passed, probes go out every ``min(interval, 25ms)`` instead
(:data:`START_INTERVAL`); no gap is ever shorter than :data:`MIN_INTERVAL`.

Why the faster start cadence: readiness gates traffic, rolling updates and ``depends_on:
healthy``, so time-to-ready is on the critical path of every start, restart and deploy (the
"crash to replacement ready <= 0.3 s" figure of DESIGN.md §6 cannot be met with a 1 s interval).
With a plain 1 s interval a service that listens after 150 ms would wait a whole second to be
seen; with the start cadence it is seen within 25 ms of listening. The cost is bounded: at most
``P / 25ms`` extra probes (each, while nothing listens, a refused connect costing microseconds),
only while the instance is not up yet, and it stops at the first success. (A 100 ms start
cadence was measured first: crash-to-ready medians flipped between ~150 and ~250 ms depending on
which side of a probe a 130 ms start landed, too close to the 0.3 s target.) Docker 25 added
``--start-interval`` for the same reason; Kubernetes users get the same effect from a
``startupProbe`` with a short ``periodSeconds``.
"""

from __future__ import annotations

from dataclasses import dataclass

from shoal.manifest.schema import Health

START_INTERVAL = 0.025
"""Seconds between probes during the start period, until the first success (capped by the
``interval`` of the health check when that is shorter)."""

MIN_INTERVAL = 0.01
"""The shortest gap between two probes, whatever the manifest says: ``interval: 0`` must not
turn a probing loop into a busy loop."""


@dataclass(frozen=True, kw_only=True)
class Change:
    """What one probe result changed. Returned only when readiness flipped or unhealthy rose."""

    at: float  # the time the result was recorded (the caller's clock)
    ready: bool  # readiness after this result
    unhealthy: bool  # unhealthiness after this result (latched: once True, stays True)
    ready_changed: bool  # readiness flipped on this result (True: now ready, False: now not)
    became_unhealthy: bool  # this result made the instance unhealthy: restart it
    consecutive_failures: int  # counted failures in a row after this result
    detail: str  # the probe's own words, e.g. "GET /healthz: 503 Service Unavailable"


class HealthTracker:
    """Readiness and unhealthiness of one run of one instance, fed with probe results.

    Pure: every method takes the time as an argument (seconds on any monotonic clock, the same
    clock as ``started_at``). See the module docstring for the rules.
    """

    def __init__(self, health: Health, started_at: float) -> None:
        self.health = health
        self.started_at = started_at
        self._ready = False
        self._unhealthy = False
        self._consecutive_failures = 0
        self._start_period_over = health.start_period <= 0
        self._probes = 0
        self._last_detail = ""
        self._last_at: float | None = None

    # ------------------------------------------------------------ state

    @property
    def ready(self) -> bool:
        """The last probes say the instance serves: it may receive traffic."""
        return self._ready

    @property
    def unhealthy(self) -> bool:
        """``failures`` counted failures in a row happened once: the instance should restart."""
        return self._unhealthy

    @property
    def consecutive_failures(self) -> int:
        """Failures in a row that count (those inside the start period do not)."""
        return self._consecutive_failures

    @property
    def last_detail(self) -> str:
        """What the last probe said; empty before the first one."""
        return self._last_detail

    @property
    def probes(self) -> int:
        """Probe results recorded so far."""
        return self._probes

    @property
    def start_period_ends_at(self) -> float:
        """When the start period runs out if no probe passes before."""
        return self.started_at + self.health.start_period

    def in_start_period(self, now: float) -> bool:
        """True while failures do not count: before the first success and before it runs out."""
        return not self._start_period_over and now < self.start_period_ends_at

    # ------------------------------------------------------------ transitions

    def record(self, ok: bool, now: float, detail: str) -> Change | None:
        """Take one probe result recorded at ``now``; return what changed, or None."""
        self._probes += 1
        self._last_detail = detail
        self._last_at = now
        was_ready = self._ready
        became_unhealthy = False

        if ok:
            self._start_period_over = True  # a success ends the start period early
            self._consecutive_failures = 0
            self._ready = True
        elif self.in_start_period(now):
            pass  # does not count: the instance is allowed to be still booting
        else:
            self._start_period_over = True
            self._consecutive_failures += 1
            if self._consecutive_failures >= self.health.failures:
                self._ready = False
                if not self._unhealthy:
                    self._unhealthy = became_unhealthy = True

        if self._ready == was_ready and not became_unhealthy:
            return None
        return Change(
            at=now,
            ready=self._ready,
            unhealthy=self._unhealthy,
            ready_changed=self._ready != was_ready,
            became_unhealthy=became_unhealthy,
            consecutive_failures=self._consecutive_failures,
            detail=detail,
        )

    # ------------------------------------------------------------ cadence

    def next_probe_at(self, now: float) -> float:
        """When the next probe should start, given that it is ``now`` and no probe is running.

        At once before the first probe; then ``interval`` after the last one, or the faster
        :data:`START_INTERVAL` while the start period runs (see the module docstring).
        """
        if self._last_at is None:
            return now
        interval = self.health.interval
        if self.in_start_period(now):
            interval = min(interval, START_INTERVAL)
        return now + max(interval, MIN_INTERVAL)


__all__ = ["MIN_INTERVAL", "START_INTERVAL", "Change", "HealthTracker"]
