"""The dispatcher's bookkeeping: one record per template, instance and invocation in flight.

:class:`~shoal.functions.pool.FunctionPool` owns these; they hold state and no logic beyond
describing themselves (:class:`TemplateView`, :class:`InstanceView` for ``shoal ps``) and
killing their process. Plain ``__slots__`` classes: they are created on the hot path (one
:class:`Call` per invocation, one :class:`InstanceHandle` per cold start).

States, in supervisord's words where they apply: a template is ``starting`` (forked, importing
the handler), ``running``, ``stopping`` (retired: its instances finish, then it exits),
``fatal`` (its module failed to load) or ``exited``; an instance is ``standby`` (forked
ahead of demand, not yet taken: see ``shoal.functions.pool``), ``starting`` (spawn sent or
standby taken, no ``hello`` yet), ``running`` (shown as busy or idle), ``stopping`` (told to
finish and exit, or killed) or ``exited``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass
from typing import Any, Literal

from shoal.functions.protocol import Channel
from shoal.runtimes.cgroup import InstanceCgroup
from shoal.runtimes.watching import open_pidfd

TemplateState = Literal["starting", "running", "stopping", "fatal", "exited"]
InstanceState = Literal["standby", "starting", "running", "stopping", "exited"]


def kill(pid: int | None, pidfd: int | None, *, group: bool = False) -> None:
    """SIGKILL a process (through its pidfd when there is one: never a reused pid)."""
    with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
        if group and pid is not None:
            os.killpg(pid, signal.SIGKILL)
        elif pidfd is not None:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        elif pid is not None:
            os.kill(pid, signal.SIGKILL)


def pidfd_for(pid: int) -> int | None:
    """A pidfd for ``pid`` (kills through it never hit a reused pid); None if there is none."""
    try:
        return open_pidfd(pid)
    except (ProcessLookupError, OSError):
        return None


def close_fd(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


class Call:
    """One invocation, from ``invoke()`` to its result."""

    __slots__ = (
        "body",
        "cold",
        "future",
        "init_ms",
        "instance",
        "queued_at",
        "request_id",
        "started_at",
        "timeout",
        "timer",
    )

    def __init__(  # noqa: PLR0917 (built once per invocation: positional is the cheap call)
        self,
        request_id: str,
        body: bytes,
        timeout: float,
        future: asyncio.Future[Any],
        queued_at: float,
        started_at: float,
    ) -> None:
        self.request_id = request_id
        self.body = body
        self.timeout = timeout
        self.future = future
        self.queued_at = queued_at  # time.perf_counter()
        self.started_at = started_at  # wall clock
        self.instance: InstanceHandle | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.cold = False
        self.init_ms: float | None = None


class TemplateHandle:
    """One generation of a function's template process."""

    __slots__ = (
        "by_pid",
        "cgroup",
        "cgroup_prefix",
        "channel",
        "code_hash",
        "created_at",
        "error",
        "generation",
        "idle_timer",
        "init_ms",
        "init_timer",
        "instances",
        "pid",
        "pidfd",
        "settled",
        "signature",
        "spawning",
        "standby",
        "state",
        "stopped_at",
    )

    def __init__(self, generation: int, code_hash: str, signature: tuple[int, ...]) -> None:
        self.generation = generation
        self.code_hash = code_hash
        self.signature = signature  # (inode, size, mtime_ns) of the handler file
        self.state: TemplateState = "starting"
        self.channel: Channel | None = None
        self.pid: int | None = None
        self.pidfd: int | None = None
        self.cgroup: InstanceCgroup | None = None
        self.cgroup_prefix = ""  # its cgroups (and its instances') are named <prefix><n>
        self.init_ms: float | None = None
        self.error: dict[str, Any] | None = None  # Lambda's error shape, when fatal
        self.instances: set[InstanceHandle] = set()
        self.spawning: dict[int, InstanceHandle] = {}  # seq -> instance, until "spawned"
        self.by_pid: dict[int, InstanceHandle] = {}
        self.standby: InstanceHandle | None = None  # forked ahead, waiting to be taken
        self.created_at = 0.0
        self.stopped_at = 0.0
        self.idle_timer: asyncio.TimerHandle | None = None
        self.init_timer: asyncio.TimerHandle | None = None
        self.settled: asyncio.Future[None] | None = None  # done once ready or failed

    def kill(self) -> None:
        """SIGKILL the template's process group: the template and every instance it forked."""
        kill(self.pid, self.pidfd, group=True)

    def view(self) -> TemplateView:
        return TemplateView(
            generation=self.generation,
            pid=self.pid,
            state=self.state,
            init_ms=self.init_ms,
            code_hash=self.code_hash[:12],
            instances=len(self.instances),
            error=None if self.error is None else str(self.error.get("errorMessage", "")),
            standby_pid=None if self.standby is None else self.standby.pid,
        )


class InstanceHandle:
    """One instance: its socket, its process, what runs on it."""

    __slots__ = (
        "calls",
        "cgroup",
        "channel",
        "exit_code",
        "exited",
        "gone_timer",
        "holds_start_slot",
        "in_flight",
        "invocations",
        "kill_reason",
        "last_done",
        "ordinal",
        "pid",
        "pidfd",
        "ready_at",
        "seq",
        "spawned_at",
        "start_ms",
        "start_timer",
        "state",
        "template",
    )

    def __init__(self, seq: int, ordinal: int, template: TemplateHandle, now: float) -> None:
        self.seq = seq
        self.ordinal = ordinal
        self.template = template
        self.state: InstanceState = "starting"
        self.channel: Channel | None = None
        self.pid: int | None = None
        self.pidfd: int | None = None
        self.cgroup: InstanceCgroup | None = None
        self.calls: dict[str, Call] = {}
        self.in_flight = 0
        self.invocations = 0
        self.spawned_at = now  # time.perf_counter()
        self.ready_at: float | None = None
        self.last_done = 0.0  # loop clock: when its last invocation ended
        self.start_ms: float | None = None  # spawn sent -> hello received
        self.holds_start_slot = True  # counted in the pool's instances starting
        self.kill_reason: str | None = None  # "timeout", "stop", "start": why we killed it
        self.exit_code: int | None = None  # from the template's exit report
        self.exited = False  # the exit report arrived
        self.gone_timer: asyncio.TimerHandle | None = None
        self.start_timer: asyncio.TimerHandle | None = None

    def kill(self, reason: str) -> None:
        if self.kill_reason is None:
            self.kill_reason = reason
        self.state = "stopping" if self.state != "exited" else "exited"
        kill(self.pid, self.pidfd)

    def view(self) -> InstanceView:
        state: str = self.state
        if state == "running":
            state = "busy" if self.in_flight else "idle"
        return InstanceView(
            ordinal=self.ordinal,
            pid=self.pid,
            state=state,
            generation=self.template.generation,
            in_flight=self.in_flight,
            invocations=self.invocations,
            start_ms=self.start_ms,
            memory_bytes=None if self.pid is None else unique_memory(self.pid),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TemplateView:
    """A template as ``shoal ps`` shows it."""

    generation: int
    pid: int | None
    state: str
    init_ms: float | None
    code_hash: str
    instances: int
    error: str | None
    standby_pid: int | None = None  # its standby instance's process, once the template said


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceView:
    """An instance as ``shoal ps`` shows it; ``memory_bytes`` is its USS (private pages)."""

    ordinal: int
    pid: int | None
    state: str  # starting, busy, idle, stopping, exited
    generation: int
    in_flight: int
    invocations: int
    start_ms: float | None
    memory_bytes: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolSnapshot:
    """A function's pool: its templates (current first) and instances, and its queue."""

    function: str
    templates: tuple[TemplateView, ...]
    instances: tuple[InstanceView, ...]
    queued: int
    in_flight: int


def unique_memory(pid: int) -> int | None:
    """USS: the process's private pages (``Private_*`` of ``/proc/PID/smaps_rollup``), bytes."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as rollup:
            text = rollup.read()
    except OSError:
        return None
    return parse_private_kb(text) * 1024


def parse_private_kb(text: str) -> int:
    """The sum of the ``Private_Clean``, ``Private_Dirty`` and ``Private_Hugetlb`` lines (kB)."""
    total = 0
    for line in text.splitlines():
        if line.startswith("Private_"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                total += int(parts[1])
    return total


__all__ = [
    "Call",
    "InstanceHandle",
    "InstanceState",
    "InstanceView",
    "PoolSnapshot",
    "TemplateHandle",
    "TemplateState",
    "TemplateView",
    "close_fd",
    "kill",
    "parse_private_kb",
    "pidfd_for",
    "unique_memory",
]
