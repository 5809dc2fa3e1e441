"""How the planner reads one observed instance: its role, its readiness, what its exit means.

Part of the pure planner (:mod:`shoal.supervisor.planning`); no I/O, no clock. Every observed
instance plays exactly one *role* for the planner:

=========== ====================================================================================
role        instances
=========== ====================================================================================
serving     ``starting`` / ``running``, not asked to stop
leaving     ``stopping``, or live and already asked to stop: left alone until it exits
pending     ``backoff``, or ``exited`` on its own (or after ``Stop(restart=True)``) and not yet
            decided: the planner restarts it or gives up on it
held        ``fatal``, or ``exited`` with a ``GiveUp`` recorded: keeps its ordinal, never
            restarted (a completed one-shot job is held)
released    ``exited`` after a plain ``Stop``: its ordinal is free, its record is forgotten
=========== ====================================================================================

:func:`decide_exit` turns a pending instance into a :class:`Retry` (with its restart count and
the time it is due, from :mod:`shoal.supervisor.backoff`) or a :class:`GiveUp`, following the
restart policy, ``max_retries`` and the one-shot rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shoal.supervisor.backoff import next_restart_count, restart_delay
from shoal.supervisor.model import LIVE_STATES, DesiredService, GiveUp, ObservedInstance

Role = Literal["serving", "leaving", "pending", "held", "released"]


def role(instance: ObservedInstance) -> Role:
    """The part ``instance`` plays for the planner (see the module's table)."""
    if instance.state in LIVE_STATES:
        if instance.state == "stopping" or instance.stop_requested:
            return "leaving"
        return "serving"
    if instance.state == "fatal":
        return "held"
    if instance.state == "backoff":
        return "pending"
    if instance.given_up:
        return "held"
    if instance.stop_requested and not instance.restart_requested:
        return "released"
    return "pending"


def is_ready(instance: ObservedInstance, has_health: bool) -> bool:
    """Ready for traffic: running, not asked to stop, healthy (or without a health check)."""
    return (
        instance.state == "running"
        and not instance.stop_requested
        and not instance.unhealthy
        and (instance.ready or not has_health)
    )


def label(instance: ObservedInstance) -> str:
    """``web#2``: how messages name an instance."""
    return f"{instance.name}#{instance.ordinal}"


def last_exit(instance: ObservedInstance) -> str:
    """How the last run ended: ``exit code 1``, ``killed, no exit code``, ``stopped: ...``."""
    if instance.restart_requested and instance.stop_reason:
        return f"stopped: {instance.stop_reason}"
    if instance.exit_code is None:
        return "killed, no exit code"
    return f"exit code {instance.exit_code}"


def failure(instance: ObservedInstance) -> str | None:
    """Why ``instance`` has failed for good, or None while it has not."""
    if instance.state == "fatal":
        return f"fatal after {instance.restarts} restarts (last run: {last_exit(instance)})"
    if instance.state == "exited" and instance.given_up and instance.exit_code != 0:
        return f"exited ({last_exit(instance)})"
    return None


@dataclass(frozen=True, kw_only=True)
class Retry:
    """A pending instance will be started again: restart number ``restarts``, due at ``due``."""

    restarts: int
    due: float
    reason: str


def decide_exit(service: DesiredService, instance: ObservedInstance, now: float) -> Retry | GiveUp:
    """Restart or give up on a pending ``instance`` of ``service`` (the same answer every time).

    A requested restart (``Stop(restart=True)``, as for an unhealthy instance) is restarted
    whatever the policy. Otherwise: a one-shot job that exited 0 has completed; ``never`` gives
    up (state ``exited``); ``on-failure`` gives up on exit code 0; ``always`` restarts. The
    restart count follows :func:`next_restart_count`; past ``max_retries`` it is ``fatal``.
    """
    policy = service.restart.policy
    words = last_exit(instance)
    if not instance.restart_requested:
        if service.one_shot and instance.exit_code == 0:
            return _give_up(instance, "exited", "completed (exit code 0)")
        if policy == "never":
            return _give_up(instance, "exited", f"exited ({words}); restart policy is never")
        if policy == "on-failure" and instance.exit_code == 0:
            return _give_up(instance, "exited", "exited (exit code 0); policy is on-failure")
    backoff = service.restart.backoff
    exited_at = now if instance.exited_at is None else instance.exited_at
    started_at = exited_at if instance.started_at is None else instance.started_at
    restarts = next_restart_count(instance.restarts, exited_at - started_at, backoff.reset_after)
    limit = service.restart.max_retries
    if limit is not None and restarts > limit:
        reason = f"fatal after {restarts - 1} restarts in a row (max_retries {limit}); {words}"
        return _give_up(instance, "fatal", reason)
    if instance.state == "backoff" and instance.backoff_until is not None:
        due = instance.backoff_until
    else:
        due = exited_at + restart_delay(backoff, restarts)
    return Retry(restarts=restarts, due=due, reason=f"restart {restarts}; last run: {words}")


def _give_up(instance: ObservedInstance, state: Literal["exited", "fatal"], why: str) -> GiveUp:
    return GiveUp(name=instance.name, ordinal=instance.ordinal, state=state, reason=why)


__all__ = [
    "Retry",
    "Role",
    "decide_exit",
    "failure",
    "is_ready",
    "label",
    "last_exit",
    "role",
]
