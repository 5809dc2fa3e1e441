"""What the supervisor's planner reads and writes: desired state, observed state, actions.

``planning.plan(desired, observed, now) -> Plan`` is pure (DESIGN.md §3, STYLE.md habit 2): the
reconcile loop builds these values from the manifest and from what the runtimes report, calls the
planner, and executes the actions it returns. Nothing here does I/O.

States use supervisord's words: ``starting`` (started, not yet known to be up), ``running``,
``backoff`` (exited; waiting for its restart delay), ``stopping``, ``exited`` (stopped and not to
be restarted), ``fatal`` (gave up restarting). Readiness (health passing) is a separate flag, and
only ready instances receive traffic.

What the executor records for each action (the planner relies on it):

- ``Start``: state ``starting``, ``started_at`` = now, ``restarts`` = the action's, and clears
  ``ready``, ``unhealthy``, ``stop_requested``, ``restart_requested``, ``given_up``,
  ``backoff_until`` and ``stop_reason`` (``exited_at`` and ``exit_code`` may be kept or
  cleared: the planner reads them only once the run has ended). A ``Start`` may name an ordinal
  whose record has ended (a stopped replica, an old revision): that record is replaced.
- ``Stop``: ``stop_requested``, ``stop_reason``, ``restart_requested`` = the action's
  ``restart``; ``ready`` false at once (out of rotation), state ``stopping`` while it drains.
- An exit reported by a runtime: state ``exited``, ``exited_at``, ``exit_code`` (the stop fields
  stay as they were). An unrequested exit (or a requested restart) is then decided by the
  planner with exactly one ``Start``, ``Backoff`` or ``GiveUp``.
- ``Backoff``: state ``backoff``, ``backoff_until``. ``GiveUp``: its state, ``given_up``.
- ``Forget``: the record is deleted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from shoal.manifest.schema import DependsCondition, Restart, Update

State = Literal["starting", "running", "backoff", "stopping", "exited", "fatal"]
LIVE_STATES: frozenset[State] = frozenset({"starting", "running", "stopping"})


@dataclass(frozen=True, kw_only=True)
class DesiredService:
    """One service as the manifest (and ``shoal scale``) wants it."""

    name: str
    revision: str  # hash of everything that needs a restart to change
    replicas: int
    restart: Restart
    has_health: bool  # False: an instance is ready as soon as it is running
    depends_on: Mapping[str, DependsCondition] = field(default_factory=dict)
    update: Update = field(default_factory=Update)
    one_shot: bool = False  # jobs started as dependencies: run to completion, never restarted


@dataclass(frozen=True, kw_only=True)
class ObservedInstance:
    """One instance as the runtimes and probes last reported it."""

    name: str
    ordinal: int
    revision: str
    state: State
    ready: bool = False
    unhealthy: bool = False  # health failed `failures` times in a row, past start_period
    restarts: int = 0  # consecutive restarts so far (reset after a long enough run)
    started_at: float | None = None  # when the current (or last) run started
    exited_at: float | None = None  # when the last run ended (state backoff/exited/fatal)
    exit_code: int | None = None  # of the last run; None if killed by a signal or unknown
    backoff_until: float | None = None  # state backoff: when the restart is due
    stop_requested: bool = False  # stopped on purpose (scale-down, update, restart, down)
    stop_reason: str | None = None
    restart_requested: bool = False  # the stop was Stop(restart=True): restart it when it exits
    given_up: bool = False  # a GiveUp was recorded for the last exit: nothing more to decide


@dataclass(frozen=True, kw_only=True)
class Start:
    """Start instance ``ordinal`` of ``name`` at ``revision`` (a new or a restarted instance)."""

    name: str
    ordinal: int
    revision: str
    restarts: int = 0  # the consecutive restart count the new run carries
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class Stop:
    """Take the instance out of rotation, drain it, then stop it with its grace period."""

    name: str
    ordinal: int
    reason: str  # "scaled down", "replaced by revision ab12", "unhealthy", "shutdown", ...
    restart: bool = False  # True: a restart follows at once (shoal restart, unhealthy)


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """The instance exited and will be restarted at ``until``; record state ``backoff``."""

    name: str
    ordinal: int
    until: float
    reason: str


@dataclass(frozen=True, kw_only=True)
class GiveUp:
    """Restarting stops here: record state ``fatal`` (or ``exited`` when policy says so)."""

    name: str
    ordinal: int
    state: Literal["exited", "fatal"]
    reason: str


@dataclass(frozen=True, kw_only=True)
class Forget:
    """Drop an instance that has ended and is no longer wanted (scaled down, old revision)."""

    name: str
    ordinal: int


Action = Start | Stop | Backoff | GiveUp | Forget


@dataclass(frozen=True, kw_only=True)
class Plan:
    """The actions to take now, and when to plan again if nothing else happens first."""

    actions: tuple[Action, ...] = ()
    wake_at: float | None = None
    waiting: Mapping[str, str] = field(default_factory=dict)  # service -> why it is not started


__all__ = [
    "LIVE_STATES",
    "Action",
    "Backoff",
    "DesiredService",
    "Forget",
    "GiveUp",
    "ObservedInstance",
    "Plan",
    "Start",
    "State",
    "Stop",
]
