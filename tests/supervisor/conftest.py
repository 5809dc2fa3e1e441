"""A tiny fake world for the planner: it executes actions and advances virtual time.

``World`` plays the executor and the runtimes as :mod:`shoal.supervisor.model` describes them:
a ``Start`` makes an instance ``starting``, then ``running`` after ``start_delay`` and ready
``ready_delay`` later (at once without a health check); a ``Stop`` takes it out of rotation and
ends it ``stop_delay`` later; a ``Behaviour`` may make runs end on their own. ``run()`` plans,
applies, and jumps to the next event or ``Plan.wake_at``, calling ``checks`` after each plan and
``samples`` after each change, so tests can assert invariants at every step in virtual time.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace

import pytest

from shoal.supervisor.model import (
    LIVE_STATES,
    Action,
    Backoff,
    DesiredService,
    Forget,
    GiveUp,
    ObservedInstance,
    Plan,
    Start,
    Stop,
)
from shoal.supervisor.planning import plan

Key = tuple[str, int]


@dataclass(frozen=True)
class Behaviour:
    """How the instances of a service (or of one revision) behave in the world."""

    start_delay: float = 0.1  # starting -> running
    ready_delay: float = 0.2  # running -> ready (services with a health check)
    stop_delay: float = 0.05  # Stop -> exited
    crash_after: float | None = None  # a run ends on its own this long after its start
    exit_code: int | None = 1  # ... with this code


Check = Callable[["World", list[ObservedInstance], Plan], None]
Sample = Callable[["World"], None]


@dataclass
class World:
    """Instances, a clock, and a queue of scripted events (see the module docstring)."""

    desired: dict[str, DesiredService]
    behaviour: dict[str, Behaviour] = field(default_factory=dict)  # by service or revision
    now: float = 0.0
    shutting_down: bool = False
    instances: dict[Key, ObservedInstance] = field(default_factory=dict)
    history: list[tuple[float, Action]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    last_plan: Plan = field(default_factory=Plan)
    _events: list[tuple[float, int, Key, int, str]] = field(default_factory=list)
    _runs: dict[Key, int] = field(default_factory=dict)
    _seq: int = 0

    # ------------------------------------------------------------ reading

    def observed(self) -> list[ObservedInstance]:
        return [self.instances[key] for key in sorted(self.instances)]

    def of(self, name: str) -> list[ObservedInstance]:
        return [i for key, i in sorted(self.instances.items()) if key[0] == name]

    def live(self, name: str) -> int:
        return sum(i.state in LIVE_STATES for i in self.of(name))

    def ready(self, name: str, revision: str | None = None) -> int:
        """Instances the gateway would send traffic to."""
        return sum(
            i.state == "running" and i.ready and not i.stop_requested
            for i in self.of(name)
            if revision is None or i.revision == revision
        )

    def actions(self, kind: type[Action] | None = None) -> Iterator[tuple[float, Action]]:
        return ((t, a) for t, a in self.history if kind is None or isinstance(a, kind))

    # ------------------------------------------------------------ driving

    def step(self) -> Plan:
        """Plan once at ``now`` and apply every action."""
        before = self.observed()
        result = plan(self.desired, before, self.now, shutting_down=self.shutting_down)
        for check in self.checks:
            check(self, before, result)
        for action in result.actions:
            self.apply(action)
        self.last_plan = result
        if result.actions:
            self._sample()
        return result

    def settle(self, limit: int = 50) -> Plan:
        """Plan and apply until a plan has no actions (at the same instant)."""
        for _ in range(limit):
            result = self.step()
            if not result.actions:
                return result
        raise AssertionError(f"no fixed point at t={self.now}: {self.last_plan.actions}")

    def run(self, until: float, limit: int = 20_000) -> None:
        """Settle, then jump to the next event or wake-up, until ``until`` or nothing is due."""
        for _ in range(limit):
            result = self.settle()
            due = [t for t in (self._next_event(), result.wake_at) if t is not None]
            if not due or min(due) > until:
                self.now = max(self.now, until) if due else self.now
                return
            self.advance(min(due))
        raise AssertionError("the world did not calm down")

    def advance(self, to: float) -> None:
        """Move the clock to ``to``, firing the events due by then."""
        while self._events and self._events[0][0] <= to:
            at, _, key, run, kind = heapq.heappop(self._events)
            self.now = max(self.now, at)
            if self._runs.get(key) == run and key in self.instances:
                self._fire(key, kind)
                self._sample()
        self.now = max(self.now, to)

    # ------------------------------------------------------------ the executor

    def apply(self, action: Action) -> None:
        self.history.append((self.now, action))
        key = (action.name, action.ordinal)
        current = self.instances.get(key)
        if isinstance(action, Start):
            assert current is None or current.state not in LIVE_STATES, action
            self._start(key, action, current)
            return
        assert current is not None, action
        if isinstance(action, Stop):
            assert not current.stop_requested and current.state != "stopping", action
            self.instances[key] = replace(
                current,
                state="stopping",
                ready=False,
                stop_requested=True,
                stop_reason=action.reason,
                restart_requested=action.restart,
            )
            self._schedule(key, self._behave(current).stop_delay, "stopped")
        elif isinstance(action, Backoff):
            assert current.state == "exited" and not current.given_up, action
            self.instances[key] = replace(current, state="backoff", backoff_until=action.until)
        elif isinstance(action, GiveUp):
            assert current.state in ("exited", "backoff") and not current.given_up, action
            self.instances[key] = replace(current, state=action.state, given_up=True)
        elif isinstance(action, Forget):
            assert current.state not in LIVE_STATES, action
            del self.instances[key]

    def _start(self, key: Key, action: Start, current: ObservedInstance | None) -> None:
        base = current or ObservedInstance(
            name=action.name, ordinal=action.ordinal, revision=action.revision, state="starting"
        )
        self.instances[key] = replace(
            base,
            revision=action.revision,
            state="starting",
            ready=False,
            unhealthy=False,
            restarts=action.restarts,
            started_at=self.now,
            backoff_until=None,
            stop_requested=False,
            stop_reason=None,
            restart_requested=False,
            given_up=False,
        )
        self._runs[key] = self._runs.get(key, 0) + 1
        behaviour = self._behave(self.instances[key])
        self._schedule(key, behaviour.start_delay, "running")
        if behaviour.crash_after is not None:
            self._schedule(key, behaviour.crash_after, "crashed")

    # ------------------------------------------------------------ chaos and health

    def crash(self, key: Key, code: int | None = 1) -> None:
        """End a live run on its own now (as a crash, or a clean exit with code 0)."""
        current = self.instances[key]
        assert current.state in LIVE_STATES
        self._end(key, code)
        self._runs[key] += 1  # forget the run's pending events
        self._sample()

    def set_health(self, key: Key, *, ready: bool, unhealthy: bool = False) -> None:
        current = self.instances[key]
        if current.state == "running" and not current.stop_requested:
            self.instances[key] = replace(current, ready=ready, unhealthy=unhealthy)
            self._sample()

    def _fire(self, key: Key, kind: str) -> None:
        current = self.instances[key]
        if kind == "running" and current.state == "starting":
            has_health = self._has_health(current)
            self.instances[key] = replace(current, state="running", ready=not has_health)
            if has_health:
                self._schedule(key, self._behave(current).ready_delay, "ready")
        elif kind == "ready" and current.state == "running" and not current.stop_requested:
            self.instances[key] = replace(current, ready=True)
        elif kind == "crashed" and current.state in ("starting", "running"):
            self._end(key, self._behave(current).exit_code)
        elif kind == "stopped" and current.state == "stopping":
            self._end(key, 0)

    def _end(self, key: Key, code: int | None) -> None:
        current = self.instances[key]
        self.instances[key] = replace(
            current, state="exited", ready=False, exited_at=self.now, exit_code=code
        )

    def _schedule(self, key: Key, delay: float, kind: str) -> None:
        self._seq += 1
        event = (self.now + delay, self._seq, key, self._runs.get(key, 0), kind)
        heapq.heappush(self._events, event)

    def _next_event(self) -> float | None:
        while self._events:
            at, _, key, run, _kind = self._events[0]
            if self._runs.get(key) == run and key in self.instances:
                return at
            heapq.heappop(self._events)
        return None

    def _behave(self, instance: ObservedInstance) -> Behaviour:
        found = self.behaviour.get(instance.revision) or self.behaviour.get(instance.name)
        return found or Behaviour()

    def _has_health(self, instance: ObservedInstance) -> bool:
        service = self.desired.get(instance.name)
        return service.has_health if service is not None else False

    def _sample(self) -> None:
        for sample in self.samples:
            sample(self)


WorldFactory = Callable[..., World]


@pytest.fixture(scope="session")
def make_world() -> WorldFactory:
    """``make_world(services, {name or revision: Behaviour})``: a fresh world at t=0."""

    def build(
        desired: list[DesiredService], behaviour: Mapping[str, Behaviour] | None = None
    ) -> World:
        return World(desired={s.name: s for s in desired}, behaviour=dict(behaviour or {}))

    return build


@pytest.fixture(scope="session")
def behaviour() -> type[Behaviour]:
    """The :class:`Behaviour` class, for tests that script crashes and delays."""
    return Behaviour
