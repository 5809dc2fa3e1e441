"""One running service's replica set: restarts, scaling and rolling updates, as pure decisions.

:func:`plan_service` is the part of :func:`shoal.supervisor.planning.plan` for a service that is
wanted and not shutting down; it sees only that service's instances (plus a ``gate``: the reason
its dependencies hold new starts, or None). Roles (serving, leaving, pending, held, released)
are those of :mod:`shoal.supervisor.lifecycle`. With ``R`` replicas, surge ``S`` and
unavailability ``U`` (``update.max_surge`` / ``update.max_unavailable``):

1. *Kept* instances are those of the current revision that are serving, pending, held, or
   leaving for a requested restart. Past ``R`` of them, the highest ordinals go: serving ones get
   ``Stop("scaled down")``, ended ones are forgotten.
2. Pending kept instances are decided (:func:`~shoal.supervisor.lifecycle.decide_exit`): a due
   restart starts at once when the gate is open and live instances stay within ``R + S``;
   otherwise a fresh exit records ``Backoff`` and the plan wakes at its due time.
3. A serving kept instance that is unhealthy, under policy always / on-failure, is restarted:
   ``Stop(restart=True)``; its exit comes back as a pending instance (step 2).
4. Missing kept instances start at the lowest free ordinals while live + pending instances stay
   within ``R + S``. Ordinals of released records (and of ended old-revision ones) are free: the
   ``Start`` replaces the record; the other such records get ``Forget``.
5. Old-revision instances never restart; ended ones are replaced. Serving ones are stopped
   (ones that are not ready first, then the highest ordinals) when a ready new instance
   replaces them, or, with nothing new in progress and no room to start one (``S`` = 0), to make
   room; but never when the ready count (old + new) would fall below ``R - U``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from shoal.supervisor.lifecycle import (
    Retry,
    decide_exit,
    failure,
    is_ready,
    label,
    last_exit,
    role,
)
from shoal.supervisor.model import (
    LIVE_STATES,
    Action,
    Backoff,
    DesiredService,
    Forget,
    ObservedInstance,
    Start,
    Stop,
)


@dataclass
class Part:
    """What planning one service yields: its actions, a wake-up time, and why it waits."""

    actions: list[Action] = field(default_factory=list)
    wake_at: float | None = None
    waiting: str | None = None

    def wake(self, at: float) -> None:
        self.wake_at = at if self.wake_at is None else min(self.wake_at, at)

    def wait(self, why: str) -> None:
        if self.waiting is None:
            self.waiting = why


def plan_service(
    service: DesiredService,
    instances: Sequence[ObservedInstance],
    now: float,
    gate: str | None,
) -> Part:
    """Actions for one wanted service; ``instances`` are its own, sorted by ordinal."""
    part = Part()
    if gate is not None:
        part.wait(gate)
    wanted, surge = service.replicas, service.update.max_surge
    cap = wanted + surge
    current = [i for i in instances if i.revision == service.revision]
    old = [i for i in instances if i.revision != service.revision]
    kept = [i for i in current if _kept(i)]
    kept, excess = kept[:wanted], kept[wanted:]
    disposable = [i for i in instances if role(i) == "released"]
    disposable += [i for i in old if role(i) in ("pending", "held")]
    for instance in excess:
        if role(instance) == "serving":
            part.actions.append(_stop(instance, "scaled down"))
        elif role(instance) in ("pending", "held"):
            disposable.append(instance)

    live = sum(i.state in LIVE_STATES for i in instances)
    pending = [i for i in kept if role(i) == "pending"]
    occupied = live + len(pending)
    for instance in pending:
        live += _restart(service, instance, now, gate=gate, has_room=live + 1 <= cap, part=part)

    for instance in kept:
        if role(instance) == "serving" and instance.unhealthy and _restarts_on_failure(service):
            stop = _stop(instance, "unhealthy: failing its health check", restart=True)
            part.actions.append(stop)

    updating = any(role(i) in ("serving", "leaving") for i in old)
    if updating:
        stalled = [i for i in kept if _struggling(i)]
        if stalled:
            part.wait(f"update to revision {service.revision} stalled: {_trouble(stalled[0])}")
        ready = sum(is_ready(i, service.has_health) for i in kept)
        part.wait(f"updating to revision {service.revision}: {ready} of {wanted} new ready")
    missing = wanted - len(kept)
    started = 0
    if missing > 0 and gate is None:
        started = max(0, min(missing, cap - occupied))
        if started < missing:
            part.wait(f"waiting for room to start {missing - started} more (max_surge {surge})")
        taken = {i.ordinal for i in instances} - {i.ordinal for i in disposable}
        why = (
            f"updating to revision {service.revision}"
            if updating
            else f"scaling to {wanted} replicas"
        )
        chosen = _free(taken, started)
        part.actions.extend(
            Start(name=service.name, ordinal=k, revision=service.revision, reason=why)
            for k in chosen
        )
        disposable = [i for i in disposable if i.ordinal not in chosen]
    part.actions.extend(Forget(name=i.name, ordinal=i.ordinal) for i in disposable)
    if updating:
        _retire_old(
            service,
            kept,
            old,
            started=started,
            still_missing=missing - started,
            may_start=gate is None,
            part=part,
        )
    return part


def _kept(instance: ObservedInstance) -> bool:
    kind = role(instance)
    if kind == "leaving":
        return instance.restart_requested
    return kind in ("serving", "pending", "held")


def _restarts_on_failure(service: DesiredService) -> bool:
    return service.restart.policy in ("always", "on-failure")


def _restart(
    service: DesiredService,
    instance: ObservedInstance,
    now: float,
    *,
    gate: str | None,
    has_room: bool,
    part: Part,
) -> int:
    """Decide one pending kept instance; return 1 if it starts now (one more live instance)."""
    decision = decide_exit(service, instance, now)
    fresh = instance.state == "exited"
    if not isinstance(decision, Retry):
        part.actions.append(decision)
        return 0
    hold = None
    if decision.due <= now:
        if gate is None and has_room:
            start = Start(
                name=instance.name,
                ordinal=instance.ordinal,
                revision=service.revision,
                restarts=decision.restarts,
                reason=decision.reason,
            )
            part.actions.append(start)
            return 1
        hold = gate or f"{label(instance)} waits for room (max_surge {service.update.max_surge})"
        part.wait(hold)
    else:
        part.wake(decision.due)
    if fresh:
        reason = decision.reason if hold is None else f"{decision.reason}; {hold}"
        part.actions.append(
            Backoff(name=instance.name, ordinal=instance.ordinal, until=decision.due, reason=reason)
        )
    return 0


def _retire_old(
    service: DesiredService,
    kept: Sequence[ObservedInstance],
    old: Sequence[ObservedInstance],
    *,
    started: int,
    still_missing: int,
    may_start: bool,
    part: Part,
) -> None:
    """Stop old-revision instances as far as readiness allows (step 5 of the module)."""
    health = service.has_health
    wanted = service.replicas
    why = "scaled down" if wanted == 0 else f"replaced by revision {service.revision}"
    serving = [i for i in old if role(i) == "serving"]
    if _restarts_on_failure(service):
        for instance in (i for i in serving if i.unhealthy):
            part.actions.append(_stop(instance, f"unhealthy: failing its health check; {why}"))
        serving = [i for i in serving if not i.unhealthy]
    new_ready = sum(is_ready(i, health) for i in kept)
    ready = new_ready + sum(is_ready(i, health) for i in serving)
    floor = wanted - service.update.max_unavailable
    replaced = len(serving) + new_ready - wanted
    in_progress = started > 0 or any(not is_ready(i, health) and role(i) != "held" for i in kept)
    draining = any(role(i) == "leaving" for i in old)
    make_room = still_missing if may_start and not in_progress and not draining else 0
    budget = min(len(serving), max(replaced, 0) + max(make_room, 0))
    for instance in sorted(serving, key=lambda i: (is_ready(i, health), -i.ordinal)):
        if budget <= 0:
            break
        if is_ready(instance, health):
            if ready - 1 < floor:
                break
            ready -= 1
        part.actions.append(_stop(instance, why))
        budget -= 1


def _struggling(instance: ObservedInstance) -> bool:
    """A new-revision instance that has failed at least once and is not serving yet."""
    kind = role(instance)
    if kind == "pending":
        return True
    if kind == "held":
        return failure(instance) is not None
    return instance.restarts > 0 and not (instance.state == "running" and instance.ready)


def _trouble(instance: ObservedInstance) -> str:
    broken = failure(instance)
    if broken is not None:
        return f"{label(instance)} {broken}"
    if role(instance) == "pending":
        return f"{label(instance)} is restarting (last run: {last_exit(instance)})"
    return f"{label(instance)} is not ready after {instance.restarts} restarts"


def _stop(instance: ObservedInstance, reason: str, *, restart: bool = False) -> Stop:
    return Stop(name=instance.name, ordinal=instance.ordinal, reason=reason, restart=restart)


def _free(taken: set[int], count: int) -> list[int]:
    """The ``count`` lowest ordinals not in ``taken``."""
    found: list[int] = []
    ordinal = 0
    while len(found) < count:
        if ordinal not in taken:
            found.append(ordinal)
        ordinal += 1
    return found


__all__ = ["Part", "plan_service"]
