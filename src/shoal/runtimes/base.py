"""The runtime protocol: how the supervisor starts, stops and watches one instance.

Runtimes are drivers behind one Protocol (DESIGN.md §3), chosen by name from
:data:`shoal.runtimes.registry.RUNTIMES`, imported lazily. They know nothing of each other, of
the gateway or of health checks: the supervisor decides, a runtime executes.

An instance's output goes to ``spec.log_path`` (a file the runtime appends to, even across a
daemon restart); the log store tails it. Every instance is reachable on 127.0.0.1 at
``handle.host_port`` when it serves a port.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from shoal.runtimes import procfs

InstanceKind = Literal["service", "job"]


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Resource limits for one instance; None = unlimited."""

    cpus: float | None = None
    memory_bytes: int | None = None


@dataclass(frozen=True, kw_only=True)
class InstanceSpec:
    """Everything a runtime needs to start one instance."""

    app: str  # the manifest's name: labels, cgroup names
    kind: InstanceKind
    name: str  # service or job name
    ordinal: int  # instance number within the service, stable across restarts
    revision: str  # hash of the service's settings: a changed revision means a rolling update
    command: tuple[str, ...] | None  # None: the image's default (container)
    env: Mapping[str, str] = field(default_factory=dict)  # already includes PORT when served
    workdir: Path | None = None
    port: int | None = None  # the port the app listens on inside its instance
    host_port: int | None = None  # the 127.0.0.1 port the supervisor chose to reach it on
    limits: Limits = field(default_factory=Limits)
    stop_grace: float = 10.0  # seconds between SIGTERM and SIGKILL
    log_path: Path  # the instance's output file (appended to)
    image: str | None = None  # container: image to run
    build: Path | None = None  # container: Dockerfile folder; vm: files to bake

    @property
    def label(self) -> str:
        """``catalog#2``: how logs and messages name the instance."""
        return f"{self.name}#{self.ordinal}"


@dataclass(frozen=True, kw_only=True)
class Handle:
    """A started (or adopted) instance, as the runtime can find it again after a daemon crash."""

    spec: InstanceSpec
    pid: int | None = None  # the main process on this host (qemu, the process itself)
    pid_start_time: float | None = None  # kernel start time of pid: a reused pid never matches
    host_port: int | None = None
    runtime_ref: str | None = None  # container id, VM pid file, cgroup path...
    started_at: float = 0.0  # wall clock, seconds

    def same_process(self, other: Handle) -> bool:
        """Whether ``other`` names this handle's process: the same pid, started at the same
        kernel time (within a clock tick), so a reused pid never matches."""
        if self.pid is None or self.pid != other.pid:
            return False
        mine, theirs = self.pid_start_time, other.pid_start_time
        if mine is None or theirs is None:
            return mine is theirs
        return procfs.same_start(mine, theirs)


@dataclass(frozen=True, kw_only=True)
class Exit:
    """How an instance ended. ``code`` is None when it was killed by a signal or is unknown."""

    code: int | None
    signal: int | None = None
    oom_killed: bool = False
    reason: str = ""  # "exited with code 1", "killed by SIGKILL", "out of memory"

    @property
    def success(self) -> bool:
        return self.code == 0


@dataclass(frozen=True, kw_only=True)
class Stats:
    cpu_seconds: float
    rss_bytes: int


@runtime_checkable
class Runtime(Protocol):
    """A way to run instances: process, container, vm."""

    name: str

    async def start(self, spec: InstanceSpec) -> Handle:
        """Start the instance; return once it is running (not necessarily ready)."""
        ...

    async def wait(self, handle: Handle) -> Exit:
        """Return when the instance has exited, however that happened."""
        ...

    async def stop(self, handle: Handle, grace: float) -> Exit:
        """SIGTERM (or the engine's equivalent), SIGKILL after ``grace`` s; return its exit."""
        ...

    async def signal(self, handle: Handle, signum: int) -> None:
        """Deliver a signal to the whole instance (process group, container, VM)."""
        ...

    async def adopt(self, handle: Handle) -> Handle | None:
        """Re-attach to an instance a previous daemon started; None if it is gone or not ours."""
        ...

    async def stats(self, handle: Handle) -> Stats | None:
        """CPU and memory use, or None if the instance is gone."""
        ...

    async def close(self) -> None:
        """Release what the runtime holds (clients, watchers); instances keep running."""
        ...


__all__ = ["Exit", "Handle", "InstanceKind", "InstanceSpec", "Limits", "Runtime", "Stats"]
