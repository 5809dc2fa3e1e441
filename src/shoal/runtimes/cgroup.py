"""One instance's cgroup, once made: move a process in, kill what is inside, OOM, removal.

:meth:`shoal.runtimes.sandbox.Sandbox.prepare` makes it and writes the limits; the process
runtime then calls :meth:`InstanceCgroup.attach` after the spawn and, once the instance's main
process has exited, :meth:`InstanceCgroup.oom_killed` and :meth:`InstanceCgroup.remove`. Its
folders travel in :attr:`Handle.runtime_ref` (:meth:`InstanceCgroup.to_ref`) so that a daemon
restarted after a crash can still tell an OOM kill and clean up.

On cgroup v1 an instance has one folder per controller hierarchy (``cpu``, ``memory``); on v2
one folder holds both.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from shoal.errors import SandboxError
from shoal.manifest.units import format_size
from shoal.runtimes import cgroupfs
from shoal.runtimes.base import Limits

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class InstanceCgroup:
    """The cgroup folder(s) of one instance: one per v1 hierarchy, or one v2 folder."""

    label: str
    version: cgroupfs.CgroupVersion
    cpu_dir: Path | None = None
    memory_dir: Path | None = None
    memory_limit: int | None = None

    @property
    def dirs(self) -> tuple[Path, ...]:
        return tuple(dict.fromkeys(d for d in (self.cpu_dir, self.memory_dir) if d is not None))

    def attach(self, pid: int) -> None:
        """Move ``pid`` in. A process that already exited is not an error (there is no one
        left to limit); anything else raises :class:`SandboxError`."""
        for folder in self.dirs:
            path = folder / "cgroup.procs"
            try:
                path.write_text(str(pid))
            except ProcessLookupError:
                return
            except OSError as exc:
                raise SandboxError(
                    label=self.label, path=str(path), reason=exc.strerror or str(exc)
                ) from exc

    def pids(self) -> set[int]:
        """Every process in the instance's cgroup(s)."""
        found: set[int] = set()
        for folder in self.dirs:
            with contextlib.suppress(OSError):
                found.update(cgroupfs.parse_pids((folder / "cgroup.procs").read_text()))
        return found

    def kill_all(self) -> int:
        """SIGKILL every process in the cgroup(s); how many were signalled."""
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(pids)

    def oom_killed(self, *, killed_by_sigkill: bool) -> bool:
        """Did the memory limit kill one of the instance's processes? Read before removal."""
        if self.memory_dir is None:
            return False
        oom_kills: int | None = None
        failcnt: int | None = None
        events = "memory.oom_control" if self.version == 1 else "memory.events"
        with contextlib.suppress(OSError):
            text = (self.memory_dir / events).read_text()
            oom_kills = cgroupfs.parse_flat_keyed(text).get("oom_kill")
        if self.version == 1:
            with contextlib.suppress(OSError, ValueError):
                failcnt = int((self.memory_dir / "memory.failcnt").read_text())
        return cgroupfs.was_oom_killed(oom_kills, failcnt, killed_by_sigkill)

    def read_limits(self) -> Limits:
        """The limits as the kernel holds them (for checks and tests)."""
        cpus: float | None = None
        memory: int | None = None
        if self.cpu_dir is not None:
            if self.version == 1:
                quota = (self.cpu_dir / "cpu.cfs_quota_us").read_text()
                cpus = cgroupfs.parse_v1_cpu(
                    quota, (self.cpu_dir / "cpu.cfs_period_us").read_text()
                )
            else:
                cpus = cgroupfs.parse_cpu_max((self.cpu_dir / "cpu.max").read_text())
        if self.memory_dir is not None:
            name = "memory.limit_in_bytes" if self.version == 1 else "memory.max"
            memory = cgroupfs.parse_memory_limit((self.memory_dir / name).read_text())
        return Limits(cpus=cpus, memory_bytes=memory)

    def describe_limit(self) -> str:
        """``limit 128Mi``, for exit reasons."""
        return f"limit {format_size(self.memory_limit)}" if self.memory_limit else "memory limit"

    async def remove(self, *, attempts: int = 100, interval: float = 0.01) -> bool:
        """Kill what is left inside, then delete the folder(s). False (and a warning) if a
        process would not die in time; the folder then stays for the next cleanup."""
        for _ in range(attempts):
            if not self.kill_all():
                break
            await asyncio.sleep(interval)
        removed = True
        for folder in self.dirs:
            try:
                folder.rmdir()
            except FileNotFoundError:
                continue
            except OSError as exc:
                removed = False
                logger.warning("[%s] cannot remove cgroup %s: %s", self.label, folder, exc)
        return removed

    def discard_if_empty(self) -> None:
        """Delete the folder(s) if nothing is inside; never signals anything."""
        for folder in self.dirs:
            with contextlib.suppress(OSError):
                folder.rmdir()

    def to_ref(self) -> str:
        """A string for :attr:`Handle.runtime_ref`, so a later daemon can find this cgroup."""
        return json.dumps(
            {
                "cgroup": self.version,
                "cpu": str(self.cpu_dir) if self.cpu_dir else None,
                "memory": str(self.memory_dir) if self.memory_dir else None,
                "memory_limit": self.memory_limit,
            },
            sort_keys=True,
        )

    @classmethod
    def from_ref(cls, label: str, ref: str | None) -> InstanceCgroup | None:
        """The cgroup named by :meth:`to_ref`'s string; None if ``ref`` names no cgroup."""
        if not ref:
            return None
        try:
            data = json.loads(ref)
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("cgroup") not in (1, 2):
            return None
        cpu, memory, limit = data.get("cpu"), data.get("memory"), data.get("memory_limit")
        return cls(
            label=label,
            version=data["cgroup"],
            cpu_dir=Path(cpu) if isinstance(cpu, str) else None,
            memory_dir=Path(memory) if isinstance(memory, str) else None,
            memory_limit=limit if isinstance(limit, int) else None,
        )


__all__ = ["InstanceCgroup"]
