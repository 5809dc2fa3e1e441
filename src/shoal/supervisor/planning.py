"""The supervisor's brain: ``plan(desired, observed, now) -> Plan``, pure (DESIGN.md §3).

The reconcile loop builds the desired services from the manifest, the observed instances from
the store, calls :func:`plan` with the loop clock's ``now``, executes the actions, records their
effects (see :mod:`shoal.supervisor.model`), and plans again on the next event or at
``Plan.wake_at``. Nothing here does I/O or reads a clock. The same inputs always give the same
actions, in order of (service name, ordinal); an instance gets at most one action per plan.

Semantics, rule by rule:

1. **Replicas.** A service wants ``replicas`` instances of its current ``revision``. New ones
   take the lowest free ordinals; a scale-down stops the highest ordinals first
   (``Stop("scaled down")``) and forgets them once they have exited.
2. **Restarts.** An instance that exits on its own is restarted under ``always``, under
   ``on-failure`` when its exit code is not 0 (None, killed, is a failure), and given up under
   ``never`` (``GiveUp("exited")``). Restart *n* in a row waits ``restart_delay(n)`` after the
   exit; a run of ``reset_after`` or longer resets *n* (:mod:`shoal.supervisor.backoff`). A
   delay still ahead gives ``Backoff(until)`` and then, once due, ``Start(restarts=n)``; a delay
   already over gives ``Start`` directly. Past ``max_retries``: ``GiveUp("fatal")``.
   ``Plan.wake_at`` is the earliest restart still ahead.
3. **Health.** An unhealthy instance under ``always`` / ``on-failure`` gets
   ``Stop(restart=True)`` and comes back through rule 2 as a failure (its count grows). Under
   ``never`` it keeps running, not ready. A restart never touches another service.
4. **Start order.** An instance starts (first start or restart) only when, for each
   ``depends_on`` entry, the dependency is ``started`` (one instance ``running``), ``healthy``
   (at least one *ready* instance) or ``completed`` (an instance exited with code 0 on its own).
   One ready replica is enough because the gateway only sends traffic to ready replicas: one is
   enough to serve, and waiting for all would let a dependency's scale-up, crash or rolling
   update hold its dependents back. Otherwise ``Plan.waiting`` says why ("waiting for db to be
   healthy", or "db failed: fatal after 5 restarts ..." when the dependency has given up).
5. **Shutdown** (``shutting_down``, or a service gone from ``desired``): serving instances get
   ``Stop("shutdown")`` / ``Stop("removed")``, in reverse dependency order: a service stops only
   once every service that depends on it has no live instance. Nothing restarts. Ended
   instances of removed services are forgotten. (A removed service's own dependencies are not
   known any more; only services still desired hold it.)
6. **Rolling update** (instances of another revision): see :mod:`shoal.supervisor.rolling`.
   New instances start while live + pending instances stay within ``replicas + max_surge``; an
   old one stops only when a ready new one replaces it (or, with ``max_surge`` 0, to make room)
   and never when fewer than ``replicas - max_unavailable`` would stay ready. Old instances are
   never restarted; a crash-looping new revision stalls the update and says so in ``waiting``.
7. Instances being stopped are left alone (never a second ``Stop``); ``starting`` is live but not
   ready; ``backoff`` is not live.
8. **One-shot jobs** (``one_shot``, jobs used as dependencies) run once: an exit 0 is
   ``GiveUp("exited", "completed ...")`` and satisfies ``completed``; a failure follows the
   restart policy.

Instance roles (serving, leaving, pending, held, released) are defined in
:mod:`shoal.supervisor.lifecycle`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from shoal.manifest.schema import DependsCondition
from shoal.supervisor.lifecycle import failure, is_ready, label, role
from shoal.supervisor.model import (
    LIVE_STATES,
    DesiredService,
    Forget,
    ObservedInstance,
    Plan,
    Stop,
)
from shoal.supervisor.rolling import Part, plan_service

_CONDITION_WORDS: dict[DependsCondition, str] = {
    "started": "to start",
    "healthy": "to be healthy",
    "completed": "to complete",
}


def plan(
    desired: Mapping[str, DesiredService],
    observed: Sequence[ObservedInstance],
    now: float,
    *,
    shutting_down: bool = False,
) -> Plan:
    """What to do now to move ``observed`` toward ``desired`` (see the module's rules)."""
    by_name = _group(observed)
    dependents = _dependents(desired)
    actions = []
    waiting: dict[str, str] = {}
    wakes: list[float] = []
    for name in sorted(set(desired) | set(by_name)):
        instances = by_name.get(name, ())
        service = desired.get(name)
        if service is None or shutting_down:
            holders = [d for d in dependents.get(name, ()) if _any_live(by_name.get(d, ()))]
            part = _wind_down(instances, removed=service is None, holders=holders)
        else:
            part = plan_service(service, instances, now, _gate(service, desired, by_name))
        actions.extend(part.actions)
        if part.waiting is not None:
            waiting[name] = part.waiting
        if part.wake_at is not None and part.wake_at > now:
            wakes.append(part.wake_at)
    actions.sort(key=lambda action: (action.name, action.ordinal))
    return Plan(actions=tuple(actions), wake_at=min(wakes, default=None), waiting=waiting)


def _group(observed: Sequence[ObservedInstance]) -> dict[str, tuple[ObservedInstance, ...]]:
    grouped: dict[str, list[ObservedInstance]] = defaultdict(list)
    seen: set[tuple[str, int]] = set()
    for instance in observed:
        key = (instance.name, instance.ordinal)
        if key in seen:
            raise ValueError(f"{label(instance)} is observed twice; instances must be unique")
        seen.add(key)
        grouped[instance.name].append(instance)
    return {name: tuple(sorted(items, key=lambda i: i.ordinal)) for name, items in grouped.items()}


def _dependents(desired: Mapping[str, DesiredService]) -> dict[str, list[str]]:
    """Service -> the desired services that depend on it, sorted."""
    found: dict[str, list[str]] = defaultdict(list)
    for name in sorted(desired):
        for dependency in desired[name].depends_on:
            if dependency != name:
                found[dependency].append(name)
    return found


def _any_live(instances: Sequence[ObservedInstance]) -> bool:
    return any(i.state in LIVE_STATES for i in instances)


def _wind_down(
    instances: Sequence[ObservedInstance], *, removed: bool, holders: Sequence[str]
) -> Part:
    """Stop a service that is going away, once no live service still depends on it."""
    part = Part()
    reason = "removed" if removed else "shutdown"
    for instance in instances:
        kind = role(instance)
        if kind == "serving":
            if holders:
                part.wait(f"waiting for {', '.join(holders)} to stop first")
            else:
                stop = Stop(name=instance.name, ordinal=instance.ordinal, reason=reason)
                part.actions.append(stop)
        elif removed and kind != "leaving":
            part.actions.append(Forget(name=instance.name, ordinal=instance.ordinal))
    return part


def _gate(
    service: DesiredService,
    desired: Mapping[str, DesiredService],
    by_name: Mapping[str, Sequence[ObservedInstance]],
) -> str | None:
    """Why ``service`` may not start instances now (its dependencies), or None."""
    reasons: list[str] = []
    for dependency, condition in sorted(service.depends_on.items()):
        if dependency == service.name:
            continue
        instances = by_name.get(dependency, ())
        other = desired.get(dependency)
        has_health = other.has_health if other is not None else True
        if not _met(condition, instances, has_health):
            reasons.append(_unmet(dependency, condition, instances))
    return "; ".join(reasons) if reasons else None


def _met(
    condition: DependsCondition, instances: Sequence[ObservedInstance], has_health: bool
) -> bool:
    if condition == "started":
        return any(i.state == "running" for i in instances)
    if condition == "healthy":
        return any(is_ready(i, has_health) for i in instances)
    return any(i.state == "exited" and i.exit_code == 0 and not i.stop_requested for i in instances)


def _unmet(
    dependency: str, condition: DependsCondition, instances: Sequence[ObservedInstance]
) -> str:
    wait = f"waiting for {dependency} {_CONDITION_WORDS[condition]}"
    failed = [(i, why) for i in instances if (why := failure(i)) is not None]
    if not failed:
        return wait
    instance, why = failed[0]
    if any(role(i) in ("serving", "leaving", "pending") for i in instances):
        return f"{wait} ({label(instance)} failed: {why})"
    return f"{dependency} failed: {why}"


__all__ = ["plan"]
