"""The planner, rule by rule (tables), then in the fake world of ``conftest.py`` (virtual time).

The tables feed ``plan`` hand-made observed states and compare a short form of each action; the
simulations run whole stories (crash loops, rolling updates, start and shutdown order, scaling)
and check invariants at every plan and every change; the properties throw random events at the
world and check that the planner stays within its bounds and converges once the world calms.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.manifest.schema import Backoff as BackoffSettings
from shoal.manifest.schema import DependsCondition, Restart, RestartPolicy, Update
from shoal.supervisor.backoff import restart_delay
from shoal.supervisor.model import (
    LIVE_STATES,
    Action,
    Backoff,
    DesiredService,
    GiveUp,
    ObservedInstance,
    Plan,
    Start,
    State,
    Stop,
)
from shoal.supervisor.planning import plan

if TYPE_CHECKING:
    from tests.supervisor.conftest import Behaviour, World, WorldFactory

NOW = 100.0


def svc(
    name: str = "web",
    *,
    revision: str = "r1",
    replicas: int = 1,
    policy: RestartPolicy = "always",
    max_retries: int | None = None,
    has_health: bool = True,
    depends_on: Mapping[str, DependsCondition] | None = None,
    surge: int = 1,
    unavailable: int = 0,
    one_shot: bool = False,
) -> DesiredService:
    return DesiredService(
        name=name,
        revision=revision,
        replicas=replicas,
        restart=Restart(policy=policy, max_retries=max_retries, backoff=BackoffSettings()),
        has_health=has_health,
        depends_on=dict(depends_on or {}),
        update=Update(max_surge=surge, max_unavailable=unavailable),
        one_shot=one_shot,
    )


def inst(
    name: str = "web",
    ordinal: int = 0,
    *,
    state: State = "running",
    revision: str = "r1",
    ready: bool | None = None,
    started_at: float = 0.0,
    **fields: Any,
) -> ObservedInstance:
    ready = state == "running" if ready is None else ready
    return ObservedInstance(
        name=name,
        ordinal=ordinal,
        revision=revision,
        state=state,
        ready=ready,
        started_at=started_at,
        **fields,
    )


def crashed(
    name: str = "web",
    ordinal: int = 0,
    *,
    exit_code: int | None = 1,
    started_at: float = 99.5,
    exited_at: float = 99.95,
    **fields: Any,
) -> ObservedInstance:
    """An unrequested exit at 99.95 after a short run (0.45 s), exit code 1 unless told."""
    return inst(
        name,
        ordinal,
        state="exited",
        exit_code=exit_code,
        started_at=started_at,
        exited_at=exited_at,
        **fields,
    )


def brief(action: Action) -> tuple[object, ...]:
    """A short, comparable form of an action (reasons are checked separately)."""
    if isinstance(action, Start):
        return ("start", action.name, action.ordinal, action.revision, action.restarts)
    if isinstance(action, Stop):
        return ("stop", action.name, action.ordinal, action.restart)
    if isinstance(action, Backoff):
        return ("backoff", action.name, action.ordinal, round(action.until, 6))
    if isinstance(action, GiveUp):
        return ("give up", action.name, action.ordinal, action.state)
    return ("forget", action.name, action.ordinal)


def plan_of(
    services: list[DesiredService],
    instances: list[ObservedInstance],
    now: float = NOW,
    *,
    shutting_down: bool = False,
) -> Plan:
    desired = {s.name: s for s in services}
    return plan(desired, instances, now, shutting_down=shutting_down)


def briefs(result: Plan) -> list[tuple[object, ...]]:
    return [brief(a) for a in result.actions]


# ---------------------------------------------------------------- the rules, as tables

WEB, DB = svc(), svc("db")
R2 = "r2"  # the new revision in update scenarios
TWO = svc(replicas=2)
NEW = svc(replicas=2, revision=R2)
OLD_READY = [inst(ordinal=0), inst(ordinal=1)]

SCENARIOS = [
    # 1. replicas
    ("first start", [TWO], [], [("start", "web", 0, "r1", 0), ("start", "web", 1, "r1", 0)]),
    ("lowest free ordinal", [svc(replicas=3)], [inst(), inst(ordinal=2)],
     [("start", "web", 1, "r1", 0)]),
    ("scale down highest first", [WEB], [inst(), inst(ordinal=1), inst(ordinal=2)],
     [("stop", "web", 1, False), ("stop", "web", 2, False)]),
    ("forget once exited", [WEB], [inst(), inst(ordinal=1, state="exited", stop_requested=True)],
     [("forget", "web", 1)]),
    ("scale down an ended one", [WEB],
     [inst(), inst(ordinal=1, state="backoff", backoff_until=200.0)],
     [("forget", "web", 1)]),
    ("scale to zero", [svc(replicas=0)], [inst()], [("stop", "web", 0, False)]),
    ("a stopped replica still wanted starts again", [TWO],
     [inst(), inst(ordinal=1, state="exited", stop_requested=True)],
     [("start", "web", 1, "r1", 0)]),
    # 2. restarts
    ("always restarts a clean exit, at once", [WEB],
     [crashed(exit_code=0, started_at=10.0)], [("start", "web", 0, "r1", 1)]),
    ("a second crash in a row backs off", [WEB], [crashed(restarts=1)],
     [("backoff", "web", 0, 100.05)]),
    ("backoff over: start", [WEB], [inst(state="backoff", backoff_until=99.0, restarts=2,
                                         started_at=98.0, exited_at=98.9)],
     [("start", "web", 0, "r1", 3)]),
    ("backoff not over: wait", [WEB], [inst(state="backoff", backoff_until=101.0, restarts=2)], []),
    ("a delay already over starts directly", [WEB],
     [crashed(restarts=3, started_at=49.0, exited_at=50.0)], [("start", "web", 0, "r1", 4)]),
    ("a long run resets the count", [WEB], [crashed(restarts=9, started_at=80.0)],
     [("start", "web", 0, "r1", 1)]),
    ("on-failure: exit 0 ends it", [svc(policy="on-failure")], [crashed(exit_code=0)],
     [("give up", "web", 0, "exited")]),
    ("on-failure: exit 1 restarts", [svc(policy="on-failure")], [crashed(started_at=1.0)],
     [("start", "web", 0, "r1", 1)]),
    ("on-failure: killed restarts", [svc(policy="on-failure")],
     [crashed(exit_code=None, started_at=1.0)],
     [("start", "web", 0, "r1", 1)]),
    ("never: gives up", [svc(policy="never")], [crashed()], [("give up", "web", 0, "exited")]),
    ("max_retries reached: fatal", [svc(max_retries=3)], [crashed(restarts=3)],
     [("give up", "web", 0, "fatal")]),
    ("max_retries 0: the first crash is fatal", [svc(max_retries=0)], [crashed(started_at=1.0)],
     [("give up", "web", 0, "fatal")]),
    ("given up: left alone, the slot stays", [svc(policy="never")],
     [inst(state="exited", exit_code=1, given_up=True)], []),
    ("fatal: left alone, the slot stays", [WEB], [inst(state="fatal", restarts=5)], []),
    ("one-shot exit 0 completes", [svc("job", one_shot=True)], [crashed("job", exit_code=0)],
     [("give up", "job", 0, "exited")]),
    ("one-shot failure follows the policy", [svc("job", one_shot=True, policy="on-failure")],
     [crashed("job", exit_code=2, started_at=1.0)], [("start", "job", 0, "r1", 1)]),
    # 3. health
    ("unhealthy: restart", [WEB], [inst(unhealthy=True, ready=False)], [("stop", "web", 0, True)]),
    ("unhealthy on-failure: restart", [svc(policy="on-failure")], [inst(unhealthy=True)],
     [("stop", "web", 0, True)]),
    ("unhealthy under never: keeps running", [svc(policy="never")], [inst(unhealthy=True)], []),
    ("requested restart comes back counted", [svc(policy="never")],
     [crashed(exit_code=0, stop_requested=True, restart_requested=True, restarts=2,
              stop_reason="unhealthy: failing its health check")],
     [("backoff", "web", 0, 100.15)]),
    ("restarting one service never touches another", [WEB, DB],
     [inst(unhealthy=True), inst("db")], [("stop", "web", 0, True)]),
    # 7. leaving instances
    ("stopping: left alone", [WEB],
     [inst(), inst(ordinal=1, state="stopping", stop_requested=True)], []),
    ("asked to stop: never a second Stop", [svc(replicas=0)], [inst(stop_requested=True)], []),
    ("restart under way: no replacement", [WEB],
     [inst(state="stopping", stop_requested=True, restart_requested=True)], []),
    # 6. rolling update (replicas 2, max_surge 1, max_unavailable 0)
    ("update: surge first", [NEW], OLD_READY, [("start", "web", 2, R2, 0)]),
    ("update: old stays until the new is ready", [NEW],
     [*OLD_READY, inst(ordinal=2, revision=R2, state="starting")], []),
    ("update: a ready new one replaces the highest old", [NEW],
     [*OLD_READY, inst(ordinal=2, revision=R2)], [("stop", "web", 1, False)]),
    ("update: no room while the old one drains", [NEW],
     [inst(), inst(ordinal=1, state="stopping", stop_requested=True),
      inst(ordinal=2, revision=R2)], []),
    ("update: the freed ordinal is reused", [NEW],
     [inst(), inst(ordinal=1, state="exited", stop_requested=True), inst(ordinal=2, revision=R2)],
     [("start", "web", 1, R2, 0)]),
    ("update: last old one goes when the new are ready", [NEW],
     [inst(), inst(ordinal=1, revision=R2), inst(ordinal=2, revision=R2)],
     [("stop", "web", 0, False)]),
    ("update: done, forget the old", [NEW],
     [inst(state="exited", stop_requested=True), inst(ordinal=1, revision=R2),
      inst(ordinal=2, revision=R2)], [("forget", "web", 0)]),
    ("update with surge: no stop before a new one is ready",
     [svc(replicas=2, revision=R2, surge=1, unavailable=1)], OLD_READY,
     [("start", "web", 2, R2, 0)]),
    ("update without surge: make room first",
     [svc(replicas=2, revision=R2, surge=0, unavailable=1)],
     OLD_READY, [("stop", "web", 1, False)]),
    ("update: a not-ready old one goes first", [NEW],
     [inst(), inst(ordinal=1, ready=False), inst(ordinal=2, revision=R2)],
     [("stop", "web", 1, False)]),
    ("update: a crashed old one is replaced, not restarted", [NEW],
     [inst(), crashed(ordinal=1), inst(ordinal=2, revision=R2, state="starting")],
     [("start", "web", 1, R2, 0)]),
    ("update: crash-looping new revision keeps the old", [NEW],
     [*OLD_READY,
      inst(ordinal=2, revision=R2, state="backoff", backoff_until=130.0, restarts=6)], []),
]  # fmt: skip


@pytest.mark.parametrize(
    ("services", "instances", "expected"),
    [pytest.param(s, i, e, id=name) for name, s, i, e in SCENARIOS],
)
def test_rules(
    services: list[DesiredService],
    instances: list[ObservedInstance],
    expected: list[tuple[object, ...]],
) -> None:
    result = plan_of(services, instances)
    assert briefs(result) == expected
    shuffled = list(instances)
    random.Random(7).shuffle(shuffled)
    assert plan_of(services, shuffled) == result  # 9. the order of observation does not matter


def test_reasons_say_what_happened() -> None:
    reasons = {
        brief(a): getattr(a, "reason", "")
        for a in plan_of(
            [svc(replicas=1), svc("api", max_retries=2), svc("db", policy="never")],
            [inst(), inst(ordinal=1), crashed("api", restarts=2), crashed("db", exit_code=3)],
        ).actions
    }
    assert reasons[("stop", "web", 1, False)] == "scaled down"
    fatal = reasons[("give up", "api", 0, "fatal")]
    assert "2 restarts" in fatal and "exit code 1" in fatal
    assert "exit code 3" in reasons[("give up", "db", 0, "exited")]
    (unhealthy,) = plan_of([WEB], [inst(unhealthy=True)]).actions
    assert isinstance(unhealthy, Stop) and unhealthy.reason.startswith("unhealthy: ")
    (replaced,) = plan_of([NEW], [*OLD_READY, inst(ordinal=2, revision=R2)]).actions
    assert isinstance(replaced, Stop) and replaced.reason == "replaced by revision r2"


def test_wake_at_is_the_earliest_restart_ahead() -> None:
    result = plan_of(
        [svc(replicas=3)],
        [
            inst(state="backoff", backoff_until=130.0, restarts=8),
            crashed(ordinal=1, restarts=3),  # restart 4: 0.4 s after 99.95
            inst(
                ordinal=2,
                state="backoff",
                backoff_until=50.0,
                restarts=2,
                started_at=49.0,
                exited_at=49.5,
            ),  # due: starts
        ],
    )
    assert briefs(result) == [("backoff", "web", 1, 100.35), ("start", "web", 2, "r1", 3)]
    assert result.wake_at == pytest.approx(100.35)
    assert plan_of([WEB], [inst()]).wake_at is None


def test_duplicate_instances_are_a_bug() -> None:
    with pytest.raises(ValueError, match="web#0"):
        plan_of([WEB], [inst(), inst()])


# ---------------------------------------------------------------- 4. start order

API_ON_DB = svc("api", depends_on={"db": "healthy"})


@pytest.mark.parametrize(
    ("condition", "db_instances", "starts", "waiting"),
    [
        ("healthy", [], False, "waiting for db to be healthy"),
        ("healthy", [inst("db", state="starting")], False, "waiting for db to be healthy"),
        ("healthy", [inst("db", ready=False)], False, "waiting for db to be healthy"),
        ("healthy", [inst("db", ready=False), inst("db", 1)], True, None),
        ("started", [inst("db", state="starting")], False, "waiting for db to start"),
        ("started", [inst("db", ready=False)], True, None),
        ("completed", [inst("db")], False, "waiting for db to complete"),
        ("completed", [inst("db", state="exited", exit_code=0, given_up=True)], True, None),
        ("completed", [inst("db", state="exited", exit_code=0, stop_requested=True)], False,
         "waiting for db to complete"),
        ("completed", [inst("db", state="exited", exit_code=1, given_up=True)], False,
         "db failed: exited (exit code 1)"),
        ("healthy", [inst("db", state="fatal", restarts=5, exit_code=1)], False,
         "db failed: fatal after 5 restarts (last run: exit code 1)"),
        ("healthy",
         [inst("db", state="fatal", restarts=5, exit_code=1), inst("db", 1, state="starting")],
         False,
         "waiting for db to be healthy"
         " (db#0 failed: fatal after 5 restarts (last run: exit code 1))"),
    ],
)  # fmt: skip
def test_dependencies_gate_starts(
    condition: DependsCondition,
    db_instances: list[ObservedInstance],
    starts: bool,
    waiting: str | None,
) -> None:
    db = svc("db", replicas=max(1, len(db_instances)), one_shot=condition == "completed")
    result = plan_of([svc("api", depends_on={"db": condition}), db], db_instances)
    api_starts = [brief(a) for a in result.actions if a.name == "api"]
    assert api_starts == ([("start", "api", 0, "r1", 0)] if starts else [])
    assert result.waiting.get("api") == waiting


def test_a_dependency_without_health_check_is_ready_when_running() -> None:
    result = plan_of([API_ON_DB, svc("db", has_health=False)], [inst("db", ready=False)])
    assert briefs(result) == [("start", "api", 0, "r1", 0)]


def test_several_unmet_dependencies_are_all_named() -> None:
    api = svc("api", depends_on={"db": "healthy", "cache": "started", "migrate": "completed"})
    result = plan_of([api], [])
    assert result.waiting["api"] == (
        "waiting for cache to start; waiting for db to be healthy; waiting for migrate to complete"
    )


def test_dependencies_hold_restarts_too() -> None:
    result = plan_of([API_ON_DB, DB], [crashed("api"), inst("db", state="starting")])
    (backoff,) = result.actions
    assert isinstance(backoff, Backoff) and "waiting for db to be healthy" in backoff.reason
    later = plan_of([API_ON_DB, DB], [inst("api", state="backoff", backoff_until=99.0)])
    assert [a for a in later.actions if a.name == "api"] == []
    assert later.waiting["api"] == "waiting for db to be healthy"


# ---------------------------------------------------------------- 5. shutdown and removal

CHAIN = [svc("web", depends_on={"api": "started"}), API_ON_DB, DB]


@pytest.mark.parametrize(
    ("instances", "expected", "waiting"),
    [
        ([inst("web"), inst("api"), inst("db")], [("stop", "web", 0, False)],
         {"api": "waiting for web to stop first", "db": "waiting for api to stop first"}),
        ([inst("web", state="stopping", stop_requested=True), inst("api"), inst("db")], [],
         {"api": "waiting for web to stop first", "db": "waiting for api to stop first"}),
        ([inst("web", state="exited", stop_requested=True), inst("api"), inst("db")],
         [("stop", "api", 0, False)], {"db": "waiting for api to stop first"}),
        ([crashed("web"), crashed("api"), inst("db")], [("stop", "db", 0, False)], {}),
        ([inst("web", state="backoff", backoff_until=101.0), inst("db", state="starting")],
         [("stop", "db", 0, False)], {}),
    ],
)  # fmt: skip
def test_shutdown_goes_in_reverse_dependency_order(
    instances: list[ObservedInstance],
    expected: list[tuple[object, ...]],
    waiting: dict[str, str],
) -> None:
    result = plan_of(CHAIN, instances, shutting_down=True)
    assert briefs(result) == expected
    assert dict(result.waiting) == waiting
    assert all(a.reason == "shutdown" for a in result.actions if isinstance(a, Stop))
    assert result.wake_at is None


def test_a_removed_service_is_stopped_then_forgotten() -> None:
    result = plan_of(
        [WEB],
        [
            inst(),
            inst("old"),
            inst("old", 1, state="backoff", backoff_until=200.0),
            crashed("old", 2),
            inst("old", 3, state="stopping", stop_requested=True),
        ],
    )
    assert briefs(result) == [
        ("stop", "old", 0, False),
        ("forget", "old", 1),
        ("forget", "old", 2),
    ]
    assert next(a for a in result.actions if isinstance(a, Stop)).reason == "removed"


def test_a_removed_service_waits_for_its_dependents() -> None:
    result = plan_of([API_ON_DB], [inst("api"), inst("db")])
    assert result.actions == ()
    assert result.waiting["db"] == "waiting for api to stop first"


# ---------------------------------------------------------------- simulations (virtual time)


def structural(world: World, before: list[ObservedInstance], result: Plan) -> None:
    """Invariants of every plan, whatever the world did."""
    keys = [(a.name, a.ordinal) for a in result.actions]
    assert keys == sorted(keys), "actions are sorted by service and ordinal"
    assert len(set(keys)) == len(keys), "one action per instance"
    by_key = {(i.name, i.ordinal): i for i in before}
    for action in result.actions:
        seen = by_key.get((action.name, action.ordinal))
        if isinstance(action, Start):
            assert not world.shutting_down
            assert seen is None or seen.state not in LIVE_STATES, action
        elif isinstance(action, Stop):
            assert seen is not None and seen.state != "stopping" and not seen.stop_requested
        else:
            assert seen is not None and seen.state not in LIVE_STATES, action
    for name, service in world.desired.items():
        starts = sum(isinstance(a, Start) and a.name == name for a in result.actions)
        live = sum(i.state in LIVE_STATES for i in before if i.name == name)
        if starts:
            assert live + starts <= service.replicas + service.update.max_surge


def converged(world: World) -> None:
    assert world.last_plan.actions == () and world.last_plan.wake_at is None
    for name, service in world.desired.items():
        instances = world.of(name)
        assert len(instances) == service.replicas, instances
        assert all(i.revision == service.revision for i in instances), instances
        assert world.ready(name) == service.replicas, instances


def test_a_crash_loop_follows_the_backoff_table(
    make_world: WorldFactory, behaviour: type[Behaviour]
) -> None:
    world = make_world([svc()], {"web": behaviour(crash_after=0.5)})
    world.checks.append(structural)
    world.run(until=300.0)
    starts = [(t, a) for t, a in world.actions(Start) if isinstance(a, Start)]
    expected, at = [(0.0, 0)], 0.0
    for restart in range(1, len(starts)):
        at += 0.5 + restart_delay(BackoffSettings(), restart)
        expected.append((at, restart))
    assert len(starts) > 15
    assert [a.restarts for _, a in starts] == [n for _, n in expected]
    assert [t for t, _ in starts] == pytest.approx([t for t, _ in expected])
    # restart 1 is immediate (no Backoff round trip); every later one was announced by a Backoff
    announced = [a.until for _, a in world.actions(Backoff) if isinstance(a, Backoff)]
    later = [t for t, a in starts if a.restarts >= 2]
    assert announced[: len(later)] == pytest.approx(later)
    assert len(announced) in (len(later), len(later) + 1)


def test_a_crash_loop_ends_fatal_and_dependents_say_why(
    make_world: WorldFactory, behaviour: type[Behaviour]
) -> None:
    world = make_world(
        [svc("db", max_retries=4), API_ON_DB], {"db": behaviour(crash_after=0.2, exit_code=3)}
    )  # db crashes before it is ever ready
    world.checks.append(structural)
    world.run(until=300.0)
    assert [a.restarts for _, a in world.actions(Start) if isinstance(a, Start)] == [0, 1, 2, 3, 4]
    (give_up,) = (a for _, a in world.actions(GiveUp))
    assert isinstance(give_up, GiveUp) and give_up.state == "fatal"
    assert (
        world.last_plan.waiting["api"]
        == "db failed: fatal after 4 restarts (last run: exit code 3)"
    )
    assert world.of("api") == []


def test_runs_longer_than_reset_after_restart_at_once(
    make_world: WorldFactory, behaviour: type[Behaviour]
) -> None:
    world = make_world([svc()], {"web": behaviour(crash_after=12.0)})
    world.run(until=100.0)
    starts = [(t, a) for t, a in world.actions(Start) if isinstance(a, Start)]
    assert [a.restarts for _, a in starts] == [0] + [1] * (len(starts) - 1)
    assert [t for t, _ in starts] == pytest.approx([12.0 * k for k in range(len(starts))])


UPDATE_SETTINGS = [(1, 1, 0), (2, 1, 0), (3, 1, 0), (3, 2, 0), (3, 0, 1), (3, 1, 1), (4, 0, 2),
                   (1, 0, 1), (5, 2, 1), (4, 3, 0), (2, 0, 2)]  # fmt: skip


def _watch_bounds(world: World, name: str, *, floor: bool = True) -> None:
    def sample(world: World) -> None:
        service = world.desired[name]
        assert world.live(name) <= service.replicas + service.update.max_surge
        if floor:
            assert world.ready(name) >= service.replicas - service.update.max_unavailable

    world.samples.append(sample)


@pytest.mark.parametrize(("replicas", "surge", "unavailable"), UPDATE_SETTINGS)
def test_a_rolling_update_keeps_enough_ready(
    make_world: WorldFactory, replicas: int, surge: int, unavailable: int
) -> None:
    world = make_world([svc(replicas=replicas, surge=surge, unavailable=unavailable)])
    world.checks.append(structural)
    world.run(until=5.0)
    converged(world)
    _watch_bounds(world, "web")
    world.desired["web"] = replace(world.desired["web"], revision=R2)
    world.run(until=60.0)
    converged(world)
    assert not [a for _, a in world.actions(Start) if isinstance(a, Start) and a.revision == "r1"
                and a.restarts]  # fmt: skip


@pytest.mark.parametrize(("replicas", "surge", "unavailable"), UPDATE_SETTINGS)
def test_a_crash_looping_revision_stalls_the_update(
    make_world: WorldFactory,
    behaviour: type[Behaviour],
    replicas: int,
    surge: int,
    unavailable: int,
) -> None:
    world = make_world(
        [svc(replicas=replicas, surge=surge, unavailable=unavailable)],
        {R2: behaviour(crash_after=0.2)},
    )
    world.run(until=5.0)
    world.checks.append(structural)
    _watch_bounds(world, "web")
    world.desired["web"] = replace(world.desired["web"], revision=R2)
    world.run(until=200.0)
    assert world.ready("web", "r1") >= replicas - unavailable
    assert world.ready("web", "r1") > 0 or unavailable >= replicas
    if unavailable < replicas:  # else every old one may go at once, as asked
        assert "stalled" in world.last_plan.waiting["web"]
    # the fix: a third revision that works rolls over both
    world.desired["web"] = replace(world.desired["web"], revision="r3")
    world.run(until=400.0)
    converged(world)


def test_start_and_shutdown_follow_the_dependencies(
    make_world: WorldFactory, behaviour: type[Behaviour]
) -> None:
    services = [
        svc("db", replicas=2),
        svc("migrate", one_shot=True, depends_on={"db": "healthy"}, has_health=False),
        svc("api", replicas=3, depends_on={"db": "healthy", "migrate": "completed"}),
        svc("web", replicas=2, depends_on={"api": "started"}),
        svc("worker", depends_on={"db": "started"}),
    ]
    world = make_world(services, {"migrate": behaviour(crash_after=0.5, exit_code=0)})

    def order(world: World, before: list[ObservedInstance], result: Plan) -> None:
        for action in result.actions:
            service = world.desired[action.name]
            if isinstance(action, Start):
                for dependency, condition in service.depends_on.items():
                    others = [i for i in before if i.name == dependency]
                    if condition == "started":
                        assert any(i.state == "running" for i in others)
                    elif condition == "healthy":
                        assert any(i.state == "running" and i.ready for i in others)
                    else:
                        assert any(i.state == "exited" and i.exit_code == 0 for i in others)
            if isinstance(action, Stop):
                assert action.reason == "shutdown"
                dependents = [d for d, s in world.desired.items() if action.name in s.depends_on]
                assert not [i for i in before if i.name in dependents and i.state in LIVE_STATES]

    world.checks += [structural, order]
    world.run(until=30.0)
    assert [i.state for i in world.of("migrate")] == ["exited"]
    assert all(world.ready(s.name) == s.replicas for s in services if not s.one_shot)
    world.shutting_down = True
    world.run(until=60.0)
    assert not any(i.state in LIVE_STATES for i in world.observed())
    stops = [a.name for _, a in world.actions(Stop)]
    assert stops.index("web") < stops.index("api") < stops.index("db")
    assert stops.index("worker") < stops.index("db")


@pytest.mark.parametrize("path", [[3, 5, 2, 0, 1], [1, 4, 4, 2], [2, 0, 3]])
def test_scaling_up_and_down(make_world: WorldFactory, path: list[int]) -> None:
    world = make_world([svc(replicas=path[0])])
    world.checks.append(structural)
    for replicas in path:
        world.desired["web"] = replace(world.desired["web"], replicas=replicas)
        world.run(until=world.now + 10.0)
        converged(world)
        assert [i.ordinal for i in world.of("web")] == list(range(replicas))


# ---------------------------------------------------------------- properties


@dataclass(frozen=True)
class Event:
    kind: Literal["advance", "crash", "unready", "unhealthy", "scale", "revision"]
    name: str
    ordinal: int
    value: float


EVENTS = st.builds(
    Event,
    kind=st.sampled_from(
        ["advance", "advance", "crash", "unready", "unhealthy", "scale", "revision"]
    ),
    name=st.sampled_from(["db", "web"]),
    ordinal=st.integers(0, 4),
    value=st.floats(0.0, 4.0),
)  # fmt: skip
SURGES = st.sampled_from([(1, 0), (0, 1), (1, 1), (2, 0), (2, 1), (0, 2)])


def _setup(make_world: WorldFactory, data: st.DataObject) -> World:
    db_surge, db_unavailable = data.draw(SURGES)
    web_surge, web_unavailable = data.draw(SURGES)
    policies: list[RestartPolicy] = ["always", "on-failure"]
    policy = data.draw(st.sampled_from(policies))
    services = [
        svc("db", replicas=data.draw(st.integers(1, 3)), policy=policy,
            surge=db_surge, unavailable=db_unavailable),
        svc("web", replicas=data.draw(st.integers(0, 3)), depends_on={"db": "healthy"},
            surge=web_surge, unavailable=web_unavailable),
    ]  # fmt: skip
    world = make_world(services)
    world.checks.append(structural)
    world.run(until=5.0)
    converged(world)
    return world


def _happen(world: World, event: Event, revisions: list[str]) -> None:
    key = (event.name, event.ordinal)
    instance = world.instances.get(key)
    service = world.desired[event.name]
    if event.kind == "advance":
        world.run(until=world.now + event.value)
    elif event.kind == "crash" and instance is not None and instance.state in LIVE_STATES:
        world.crash(key, code=1 if event.value < 2 else None)
    elif event.kind == "unready" and instance is not None:
        world.set_health(key, ready=False)
    elif event.kind == "unhealthy" and instance is not None:
        world.set_health(key, ready=False, unhealthy=True)
    elif event.kind == "scale":  # db keeps one: web depends on it
        replicas = int(event.value) if event.name == "web" else max(1, int(event.value))
        world.desired[event.name] = replace(service, replicas=replicas)
    elif event.kind == "revision":
        revisions.append(f"r{len(revisions) + 2}")
        world.desired[event.name] = replace(service, revision=revisions[-1])
    world.settle()


@settings(max_examples=150, deadline=None)
@given(data=st.data(), events=st.lists(EVENTS, max_size=25))
def test_random_events_keep_the_bounds_and_converge(
    make_world: WorldFactory, data: st.DataObject, events: list[Event]
) -> None:
    world = _setup(make_world, data)
    revisions: list[str] = []
    for event in events:
        _happen(world, event, revisions)
    for key, instance in list(world.instances.items()):  # the world calms down
        if instance.state == "running":
            world.set_health(key, ready=True)
    world.run(until=world.now + 2_000.0)
    converged(world)


@settings(max_examples=100, deadline=None)
@given(
    data=st.data(),
    events=st.lists(
        st.builds(
            Event,
            kind=st.sampled_from(["advance", "revision"]),
            name=st.sampled_from(["db", "web"]),
            ordinal=st.just(0),
            value=st.floats(0.0, 2.0),
        ),
        max_size=15,
    ),
)
def test_updates_without_crashes_keep_enough_ready(
    make_world: WorldFactory, data: st.DataObject, events: list[Event]
) -> None:
    world = _setup(make_world, data)
    _watch_bounds(world, "db")
    _watch_bounds(world, "web")
    revisions: list[str] = []
    for event in events:
        _happen(world, event, revisions)
    world.run(until=world.now + 500.0)
    converged(world)
