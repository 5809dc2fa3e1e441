"""Standby clones: a snapshot restored ahead, its service's command still frozen.

Under TCG (no hardware KVM) a restore into a new qemu spends 55-70 ms before it can load
anything (qemu's exec and dynamic linking, its device set-up, the QMP handshake), then about
0.1 s in its first clock and entropy sync: every kernel path the guest runs after the restore
(timer and serial interrupts, the tty, the scheduler, the entropy pool, the network's transmit
path) is translated anew in each qemu, whoever runs it first. A standby pays both ahead, in the
background, after a snapshot is made and after every start that used one:

- qemu with ``-incoming defer``, the snapshot's RAM file mapped private, the state file open
  (an inherited descriptor), QMP connected with ``x-ignore-shared``, the control line
  connected; no port forwarded, its console and qemu's own messages in a file in its run
  folder;
- the device state loaded and the guest resumed, then ``prime``: clock and entropy set as a
  sync does, with fresh bytes of its own, and one TCP exchange of the guest init with itself
  over loopback (the kernel's TCP paths a first request runs: about 35 ms of its first
  response). The service's command runs nothing: the snapshot was
  taken with its process group stopped (``freeze``), and only a ``sync`` thaws it. The guest's
  kernel and init idle meanwhile (a tickless kernel: about 0.4% of a core under TCG here).

:class:`~shoal.runtimes.vm.running.VmRuntime` takes it over for the next start of the same
snapshot (:func:`take_over`):

1. ``identity`` is written into the run folder (the instance's ``SHOAL_*`` identity: the
   process's environment, fixed at exec, has no instance number; :func:`find` reads this file
   when a crashed daemon's unrecorded instance is swept);
2. ``hostfwd_add`` (a human-monitor command) forwards the instance's port from 127.0.0.1;
3. ``chardev-change`` points the serial console at the instance's log;
4. then the runtime syncs it as any restore: the host's clock and fresh entropy (the clone's
   randomness is its own however long it stood by) and the command thawed.

The run folder becomes the instance's (its ``runtime_ref``), so adoption after a daemon crash
is unchanged. One standby per snapshot costs one idle qemu: about 54 MiB of RSS here.
A standby left by a crashed daemon (no ``identity``) is killed by the next runtime that starts,
adopts or sweeps for the same state folder (:func:`orphans`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from shoal.runtimes import procfs
from shoal.runtimes.vm import qemu
from shoal.runtimes.vm.channel import Channel

logger = logging.getLogger(__name__)

MARK = "SHOAL_VM_STANDBY"
"""In a standby qemu's environment (value ``1``), beside ``SHOAL_STATE`` and ``SHOAL_SERVICE``."""
IDENTITY_FILE = "identity"
QEMU_LOG = "qemu.log"
"""A standby's console and qemu's own output until take-over; qemu's after it (appended to the
instance's log when the instance ends)."""
Making = Callable[[Path], tuple[qemu.Machine, Mapping[str, str]]]
"""A standby's machine and qemu's environment, given its run folder."""
PRIME_TIMEOUT = 10.0
TAKE_WAIT = 5.0
"""Seconds a start waits for a standby still launching before it launches its own qemu."""


@dataclass(eq=False)
class Standby:
    owner: str  # app/service: a newer image's standby replaces it
    machine: qemu.Machine
    process: asyncio.subprocess.Process
    run: Path
    monitor: qemu.Qmp
    channel: Channel

    @property
    def alive(self) -> bool:
        return self.process.returncode is None


class Standbys:
    """At most one standby per snapshot key, each launched in a named background task."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[Standby | None]] = {}
        self._owners: dict[str, str] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._tasks

    def launch(self, key: str, owner: str, make: Making, state: Path) -> None:
        """Start a standby for ``key`` (none if one is there), replacing the owner's others.
        ``make`` gives its machine and environment for a fresh run folder (made in the task)."""
        if key in self._tasks:
            return
        for other, other_owner in list(self._owners.items()):
            if other_owner == owner:
                self._discard(other)
        self._owners[key] = owner
        self._tasks[key] = asyncio.create_task(
            _launch(owner, make, state), name=f"shoal.runtimes.vm.standby[{owner}]"
        )

    async def take(self, key: str) -> Standby | None:
        """The standby for ``key``, now its caller's (None if there is none, or it failed)."""
        task = self._tasks.pop(key, None)
        self._owners.pop(key, None)
        if task is None:
            return None
        try:
            standby = await asyncio.wait_for(asyncio.shield(task), TAKE_WAIT)
        except TimeoutError:
            _discard_task(task)
            return None
        except BaseException:  # the start was cancelled: nobody owns the standby now
            _discard_task(task)
            raise
        if standby is not None and not standby.alive:
            await dispose(standby)
            return None
        return standby

    def pids(self) -> set[int]:
        """Every launched standby's qemu (not yet taken)."""
        found = set()
        for task in self._tasks.values():
            if task.done() and not task.cancelled() and (standby := task.result()) is not None:
                found.add(standby.process.pid)
        return found

    def _discard(self, key: str) -> None:
        self._owners.pop(key, None)
        task = self._tasks.pop(key, None)
        if task is not None:
            _discard_task(task)

    async def close(self) -> None:
        """Kill every standby (a taken one is an instance: not here any more)."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        self._owners.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                standby = await task
                if standby is not None:
                    await dispose(standby)


_disposing: set[asyncio.Task[None]] = set()


def _discard_task(task: asyncio.Task[Standby | None]) -> None:
    """Dispose of the standby ``task`` gives (now or when it is launched), in the background."""

    async def dispose_when_launched() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            standby = await task
            if standby is not None:
                await dispose(standby)

    disposer = asyncio.create_task(dispose_when_launched(), name="shoal.runtimes.vm.standby-gone")
    _disposing.add(disposer)
    disposer.add_done_callback(_disposing.discard)


async def _launch(owner: str, make: Making, state: Path) -> Standby | None:
    run = qemu.new_run_folder(f"{owner.rpartition('/')[2][:16]}-standby-")
    process: asyncio.subprocess.Process | None = None
    monitor: qemu.Qmp | None = None
    channel: Channel | None = None
    try:
        machine, env = make(run)
        fd = os.open(state, os.O_RDONLY)
        try:
            machine = qemu.Machine(**{**machine.__dict__, "incoming_fd": fd})
            process = await qemu.launch(machine, label=f"{owner}#standby", env=env, pass_fds=(fd,))
        finally:
            os.close(fd)
        monitor = await qemu.Qmp.connect(machine.qmp)
        await qemu.ignore_shared(monitor)
        channel = await Channel.connect(f"{owner}#standby", machine.control)
        await qemu.load(monitor, fd)  # qemu's descriptor: the number it inherited
        if not await channel.prime(PRIME_TIMEOUT):
            raise qemu.QmpError(f"the clone did not confirm its clock within {PRIME_TIMEOUT:g}s")
        return Standby(owner, machine, process, run, monitor, channel)
    except BaseException as exc:
        if monitor is not None:
            await monitor.close()
        if channel is not None:
            await channel.close()
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        shutil.rmtree(run, ignore_errors=True)
        if not isinstance(exc, Exception):
            raise
        logger.warning("vm: no standby qemu for %s (restores start their own): %s", owner, exc)
        return None


async def dispose(standby: Standby) -> None:
    """Kill a standby nobody took, and remove its run folder."""
    await standby.monitor.close()
    await standby.channel.close()
    if standby.alive:
        with contextlib.suppress(ProcessLookupError):
            standby.process.kill()
    await standby.process.wait()
    shutil.rmtree(standby.run, ignore_errors=True)


async def take_over(
    standby: Standby,
    *,
    identity: Mapping[str, str],
    log: Path,
    port: int | None,
    host_port: int | None,
) -> None:
    """Make ``standby`` the instance ``identity`` names (the caller then syncs it)."""
    (standby.run / IDENTITY_FILE).write_text(
        "".join(f"{key}={value}\n" for key, value in identity.items())
    )
    monitor = standby.monitor
    if port is not None and host_port is not None:
        rule = f"tcp:127.0.0.1:{host_port}-:{port}"
        said = (await monitor.human(f"hostfwd_add {qemu.NETDEV} {rule}")).strip()
        if said:
            raise qemu.QmpError(f"hostfwd_add {rule}: {said}")
    await monitor.execute(
        "chardev-change",
        id=qemu.CONSOLE,
        backend={"type": "file", "data": {"out": str(log), "append": True}},
    )


def identity_of(run: Path) -> set[str]:
    """The ``KEY=value`` lines a taken standby's run folder holds (empty: never taken)."""
    try:
        return set((run / IDENTITY_FILE).read_text().splitlines())
    except OSError:
        return set()


def find(match: Mapping[str, str], run_of: Mapping[int, str]) -> list[int]:
    """Of the standby qemus ``run_of`` maps to their run folders, the ones taken over as the
    instance ``match`` names (``SHOAL_STATE``, ``SHOAL_SERVICE``, ``SHOAL_INSTANCE``)."""
    wanted = {f"{key}={value}" for key, value in match.items()}
    return sorted(pid for pid, run in run_of.items() if wanted <= identity_of(Path(run)))


def orphans(run_of: Mapping[int, str], mine: set[int]) -> list[int]:
    """Standbys never taken over that are not ``mine``: a crashed daemon's."""
    return sorted(
        pid for pid, run in run_of.items() if pid not in mine and not identity_of(Path(run))
    )


def kill(pid: int, run: str | None) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    if run:
        shutil.rmtree(run, ignore_errors=True)


def standby_pids(state: str, service: str | None = None) -> list[int]:
    """Live standby qemus (taken or not) for the state folder (and service)."""
    match = {MARK: "1", "SHOAL_STATE": state}
    if service is not None:
        match["SHOAL_SERVICE"] = service
    return procfs.with_environ(match)


__all__ = [
    "MARK",
    "QEMU_LOG",
    "Standby",
    "Standbys",
    "dispose",
    "find",
    "identity_of",
    "kill",
    "orphans",
    "standby_pids",
    "take_over",
]
