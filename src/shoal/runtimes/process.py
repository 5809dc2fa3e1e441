"""The ``process`` runtime: each instance is a plain child process group on this machine.

The supervisor's executor calls it through the :class:`~shoal.runtimes.base.Runtime` protocol.
Per instance it keeps one named watcher task (STYLE.md habit 11) that waits for the main
process to end, then SIGKILLs whatever is left of its process group (and cgroup), removes the
cgroup, and resolves to the :class:`Exit`; :meth:`ProcessRuntime.wait` and
:meth:`ProcessRuntime.stop` both await that one task, so the exit is found exactly once.

- **start**: :func:`shoal.runtimes.spawning.spawn` (argv, never a shell; own session; output
  appended to ``spec.log_path`` by the child itself), then the cgroup of
  :mod:`shoal.runtimes.sandbox` if the service has limits. The handle records the pid and its
  kernel start time, and the cgroup in ``runtime_ref``, so a later daemon can adopt it.
- **adopt**: after a daemon restart, a handle from the state store is checked against
  ``/proc/<pid>`` (same start time within a clock tick, so a reused pid is never touched) and
  watched through a pidfd: not our child, so its exit code is unknown.
- **stop**: SIGTERM to the group, SIGKILL after ``grace`` seconds; idempotent.

Known limit: after the main process is reaped, the group is SIGKILLed by its id. Linux keeps
that id reserved while any member lives, so the signal reaches only the instance's leftovers;
only if none are left *and* the id were recycled within microseconds could it reach a stranger.
Instances with a cgroup are also killed through the cgroup, which has no such window.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass

from shoal.errors import SandboxError
from shoal.runtimes import procfs, spawning, watching
from shoal.runtimes.base import Exit, Handle, InstanceSpec, Stats
from shoal.runtimes.cgroup import InstanceCgroup
from shoal.runtimes.sandbox import Sandbox

logger = logging.getLogger(__name__)

GROUP_GONE_TIMEOUT = 2.0
"""Seconds to wait, after the group SIGKILL, for every member to be gone before going on."""
RECENT_EXITS = 256
"""How many finished instances' exits are remembered for a late ``stop`` or ``wait``."""

GONE = Exit(code=None, reason="already gone")


@dataclass(eq=False)
class _Instance:
    handle: Handle
    cgroup: InstanceCgroup | None
    watcher: asyncio.Task[Exit]


class ProcessRuntime:
    """Runs instances as process groups; see the module docstring for the whole life cycle."""

    name = "process"

    def __init__(
        self,
        *,
        sandbox: Sandbox | None = None,
        environ: Mapping[str, str] | None = None,
        poll_interval: float = 0.05,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``sandbox``: how limits are enforced (default: detected on first need);
        ``environ``: the daemon environment :data:`~shoal.runtimes.spawning.INHERITED_ENV` is
        taken from (default ``os.environ``); ``poll_interval``: seconds between ``/proc`` checks
        where pidfds are missing; ``clock``: wall clock for ``Handle.started_at``."""
        self._sandbox = sandbox
        self._environ = environ
        self._poll_interval = poll_interval
        self._clock = clock
        self._instances: dict[int, _Instance] = {}
        self._recent: OrderedDict[tuple[int, float | None], Exit] = OrderedDict()

    @property
    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            self._sandbox = Sandbox.detect()
        return self._sandbox

    async def start(self, spec: InstanceSpec) -> Handle:
        env = spawning.build_env(os.environ if self._environ is None else self._environ, spec.env)
        cgroup = self.sandbox.prepare(spec) if _has_limits(spec) else None
        try:
            process = await spawning.spawn(spec, env)
        except BaseException:
            if cgroup is not None:
                cgroup.discard_if_empty()
            raise
        if cgroup is not None:
            try:
                cgroup.attach(process.pid)
            except SandboxError as exc:
                self.sandbox.warn_once(spec, str(exc))
                cgroup.discard_if_empty()
                cgroup = None
        handle = Handle(
            spec=spec,
            pid=process.pid,
            pid_start_time=procfs.process_start_time(process.pid),
            host_port=spec.host_port,
            runtime_ref=cgroup.to_ref() if cgroup is not None else None,
            started_at=self._clock(),
        )
        logger.debug("[%s] started pid %d: %s", spec.label, process.pid, list(spec.command or ()))
        self._watch(handle, cgroup, self._watch_child(process, handle, cgroup))
        return handle

    async def wait(self, handle: Handle) -> Exit:
        instance = await self._find_or_adopt(handle)
        if instance is None:
            return self._recent.get(_key(handle), GONE)
        return await asyncio.shield(instance.watcher)

    async def stop(self, handle: Handle, grace: float) -> Exit:
        instance = await self._find_or_adopt(handle)
        if instance is None:
            return self._recent.get(_key(handle), GONE)
        pid = _pid(handle)
        if not instance.watcher.done():
            watching.signal_group(pid, signal.SIGTERM)
            _, pending = await asyncio.wait({instance.watcher}, timeout=max(grace, 0.0))
            if pending:
                logger.info(
                    "[%s] still running %gs after SIGTERM: SIGKILL", handle.spec.label, grace
                )
                watching.signal_group(pid, signal.SIGKILL)
                if instance.cgroup is not None:
                    instance.cgroup.kill_all()
        return await asyncio.shield(instance.watcher)

    async def signal(self, handle: Handle, signum: int) -> None:
        instance = await self._find_or_adopt(handle)
        if instance is not None and not instance.watcher.done():
            watching.signal_group(_pid(handle), signum)

    async def adopt(self, handle: Handle) -> Handle | None:
        instance = self._find(handle)
        if instance is not None:
            return instance.handle
        label = handle.spec.label
        cgroup = InstanceCgroup.from_ref(label, handle.runtime_ref)
        if handle.pid is None or handle.pid_start_time is None:
            return None
        try:
            pidfd = watching.open_pidfd(handle.pid)
        except ProcessLookupError:
            pidfd = None
            alive = False
        else:
            alive = procfs.is_alive(handle.pid, handle.pid_start_time)
            if alive and pidfd is not None and watching.pidfd_exited(pidfd):
                alive = False
        if not alive:
            if pidfd is not None:
                os.close(pidfd)
            if cgroup is not None:
                cgroup.discard_if_empty()
            logger.info("[%s] not adopted: pid %s is gone or is another process", label, handle.pid)
            return None
        self._watch(handle, cgroup, self._watch_adopted(handle, cgroup, pidfd))
        logger.info("[%s] adopted pid %d", label, handle.pid)
        return handle

    async def stats(self, handle: Handle) -> Stats | None:
        instance = self._find(handle)
        if instance is None:
            if handle.pid is None or not procfs.is_alive(handle.pid, handle.pid_start_time):
                return None
            pids = procfs.group_members(handle.pid)
        elif instance.watcher.done():
            return None
        elif instance.cgroup is not None:
            pids = sorted(instance.cgroup.pids()) or [_pid(handle)]
        else:
            pids = procfs.group_members(_pid(handle))
        measured = procfs.usage(pids)
        if measured is None:
            return None
        return Stats(cpu_seconds=measured[0], rss_bytes=measured[1])

    async def sweep(self, match: Mapping[str, str]) -> list[int]:
        """Kill the process groups of unwatched processes whose environment holds ``match``.

        For an instance started just before a daemon crash, before its pid was recorded: it
        carries its identity in its environment (SHOAL_STATE, SHOAL_SERVICE, SHOAL_INSTANCE).
        """
        watched = set(self._instances)
        killed = [pid for pid in procfs.with_environ(match) if pid not in watched]
        for pid in killed:
            watching.signal_group(pid, signal.SIGKILL)
            logger.warning(
                "killed pid %d: started by a daemon that crashed before recording it", pid
            )
        return killed

    async def close(self) -> None:
        """Stop watching; the instances keep running (a later runtime can adopt them)."""
        watchers = [instance.watcher for instance in self._instances.values()]
        self._instances.clear()
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)

    # ------------------------------------------------------------------ watching

    def _watch(
        self, handle: Handle, cgroup: InstanceCgroup | None, body: Coroutine[object, object, Exit]
    ) -> None:
        watcher = asyncio.create_task(
            body, name=f"shoal.runtimes.process.watch[{handle.spec.label}]"
        )
        self._instances[_pid(handle)] = _Instance(handle=handle, cgroup=cgroup, watcher=watcher)
        watcher.add_done_callback(lambda task: self._watched(handle, task))

    def _watched(self, handle: Handle, task: asyncio.Task[Exit]) -> None:
        """The guard: record how the watcher ended, and forget the instance."""
        instance = self._instances.get(_pid(handle))
        if instance is not None and instance.watcher is task:
            del self._instances[_pid(handle)]
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            logger.error("[%s] watcher failed", handle.spec.label, exc_info=error)
            return
        exit_ = task.result()
        self._recent[_key(handle)] = exit_
        while len(self._recent) > RECENT_EXITS:
            self._recent.popitem(last=False)
        logger.debug("[%s] %s", handle.spec.label, exit_.reason)

    async def _watch_child(
        self, process: asyncio.subprocess.Process, handle: Handle, cgroup: InstanceCgroup | None
    ) -> Exit:
        returncode = await process.wait()
        return await self._finish(handle, cgroup, returncode)

    async def _watch_adopted(
        self, handle: Handle, cgroup: InstanceCgroup | None, pidfd: int | None
    ) -> Exit:
        try:
            await watching.wait_for_exit(
                _pid(handle), handle.pid_start_time, pidfd=pidfd, poll_interval=self._poll_interval
            )
        finally:
            if pidfd is not None:
                os.close(pidfd)
        return await self._finish(handle, cgroup, None)

    async def _finish(
        self, handle: Handle, cgroup: InstanceCgroup | None, returncode: int | None
    ) -> Exit:
        """The main process has ended: no member of its group or cgroup may outlive it."""
        pid = _pid(handle)
        left: list[int] = []
        if watching.signal_group(pid, signal.SIGKILL):  # ESRCH: nothing left, skip the /proc scan
            left = await watching.wait_group_gone(pid, timeout=GROUP_GONE_TIMEOUT)
        if left:
            logger.warning("[%s] processes %s survived SIGKILL", handle.spec.label, left)
        oom = False
        limit = ""
        if cgroup is not None:
            sigkilled = returncode is None or returncode == -signal.SIGKILL
            oom = cgroup.oom_killed(killed_by_sigkill=sigkilled)
            limit = cgroup.describe_limit()
            await cgroup.remove()
        return watching.describe_exit(returncode, oom=oom, limit=limit)

    async def _find_or_adopt(self, handle: Handle) -> _Instance | None:
        """The watched instance behind ``handle``, adopting it first if it runs unwatched."""
        instance = self._find(handle)
        if instance is None and await self.adopt(handle) is not None:
            instance = self._find(handle)
        return instance

    def _find(self, handle: Handle) -> _Instance | None:
        instance = self._instances.get(handle.pid) if handle.pid is not None else None
        return instance if instance is not None and instance.handle.same_process(handle) else None


def _has_limits(spec: InstanceSpec) -> bool:
    return spec.limits.cpus is not None or spec.limits.memory_bytes is not None


def _pid(handle: Handle) -> int:
    if handle.pid is None:
        raise ValueError(f"[{handle.spec.label}] handle has no pid")
    return handle.pid


def _key(handle: Handle) -> tuple[int, float | None]:
    return (handle.pid or 0, handle.pid_start_time)


__all__ = ["GONE", "ProcessRuntime"]
