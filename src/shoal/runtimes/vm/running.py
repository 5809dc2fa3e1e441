"""The ``vm`` runtime: each instance is one qemu microVM, booted cold or restored from a snapshot.

The supervisor calls it through the :class:`~shoal.runtimes.base.Runtime` protocol, as it calls
the process runtime; health, backoff, replicas, rolling updates and autoscaling are the
supervisor's. Per instance:

- **start**: the image is baked if stale (:mod:`~shoal.runtimes.vm.baking`; ``prepare`` does it
  up front with progress). If a snapshot of the image (and machine shape) exists, the VM is
  restored from it (by taking over the snapshot's standby clone when one is ready,
  :mod:`~shoal.runtimes.vm.standbys`; a new one is restored ahead for the next start) and
  ``sync``ed (clock, entropy, the command thawed) before ``start`` returns; otherwise it boots
  cold and ``start`` returns once the guest init says the service port accepts inside the guest
  (at most :data:`READY_WAIT`; health checks then find it listening at once, rather than sending
  probes into a guest whose network is not up yet, where slirp holds a connection until its
  TCP retransmission). Once a cold guest is ready, a separate maker snapshots a fresh
  boot in the background (:mod:`~shoal.runtimes.vm.snapshots`), so later instances restore.
  qemu runs in its own session with the instance's identity (``SHOAL_STATE``, ``SHOAL_SERVICE``,
  ``SHOAL_INSTANCE``) in its environment, its files in a private run folder (control and QMP
  sockets, pid file, copy-on-write disk overlays) named in ``Handle.runtime_ref``.
- **wait**: one named watcher task per instance waits for qemu to end, removes the run folder
  and resolves to the :class:`Exit` (the command's code, as the guest init reported it).
- **stop**: ``stop <grace>`` on the control line (the guest init SIGTERMs the command, SIGKILLs it
  after the grace period, then powers off), SIGKILL to qemu if it is still there after the grace
  period (+1 s to power off). **signal**: forwarded to the command (SIGKILL kills qemu).
- **adopt**: after a daemon ``kill -9``, by pid + kernel start time and the run folder; the
  control line is reconnected. **sweep**: kills unrecorded qemus found by their environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path

from shoal.errors import InstanceStartError, ShoalError
from shoal.manifest import Project
from shoal.manifest.schema import Service
from shoal.runtimes import procfs, watching
from shoal.runtimes.base import Exit, Handle, InstanceSpec, Stats
from shoal.runtimes.vm import hosting, qemu, standbys
from shoal.runtimes.vm.baking import Baker, Image, Progress, ServiceInputs
from shoal.runtimes.vm.channel import Channel
from shoal.runtimes.vm.hosting import Host
from shoal.runtimes.vm.snapshots import Snapshot, Snapshots, snapshot_key
from shoal.runtimes.vm.standbys import Standbys

logger = logging.getLogger(__name__)

RECENT_EXITS = 256
SYNC_TIMEOUT = 10.0
"""Seconds a restored guest has to confirm its clock and entropy before it counts as failed."""
POWER_OFF_GRACE = 1.0
READY_WAIT = 60.0
"""Seconds a cold boot's ``start`` waits for the guest's ``ready`` (then health checks decide)."""
MAKER_WAIT = 120.0
"""Seconds a start waits for a snapshot being made of its image before booting cold."""
IDENTITY = ("SHOAL_STATE", "SHOAL_SERVICE", "SHOAL_INSTANCE")
GONE = Exit(code=None, reason="already gone")


def inputs_of(spec: InstanceSpec) -> ServiceInputs:
    if not spec.command:
        raise InstanceStartError(
            label=spec.label,
            argv=(),
            reason="a vm service needs a command (e.g. [python3, app.py])",
        )
    return ServiceInputs(
        name=spec.name,
        build=spec.build,
        command=spec.command,
        env=spec.env,
        port=spec.port,
        grace=spec.stop_grace,
    )


def inputs_of_service(project: Project, name: str, service: Service) -> ServiceInputs:
    """The same inputs as :func:`inputs_of` gives for this service's instances (same hash)."""
    port = service.port if service.port is not None else 8080
    env = {
        **service.env,
        "SHOAL_APP": project.manifest.name,
        "SHOAL_SERVICE": name,
        "PORT": str(port),
    }
    return ServiceInputs(
        name=name,
        build=project.resolve(service.build) if service.build else None,
        command=tuple(service.command or ()),
        env=env,
        port=port,
        grace=service.stop_grace_period,
    )


@dataclass(eq=False)
class _Instance:
    handle: Handle
    run: Path
    channel: Channel | None
    watcher: asyncio.Task[Exit]


class VmRuntime:
    """Runs instances as qemu microVMs; see the module docstring for the life cycle."""

    name = "vm"

    def __init__(
        self,
        *,
        cache: Path | None = None,
        host: Host | None = None,
        snapshots: bool = True,
        standby: bool = True,
        clock: Callable[[], float] = time.time,
        poll_interval: float = 0.05,
    ) -> None:
        """``cache``: where images and snapshots live (default ``~/.cache/shoal/vm``);
        ``host``: accelerator and TSC (default: detected); ``snapshots``: False always boots
        cold; ``standby``: False restores into a qemu launched for the start (no clone restored
        ahead, :mod:`~shoal.runtimes.vm.standbys`); ``clock``: wall clock for
        ``Handle.started_at``."""
        self.baker = Baker(cache)
        self.snapshots = Snapshots(self.baker.cache)
        self.standbys = Standbys()
        self._host = host
        self._use_snapshots = snapshots
        self._use_standbys = snapshots and standby
        self._swept: set[str] = set()  # state folders whose orphaned standbys are gone
        self._clock = clock
        self._poll_interval = poll_interval
        self._instances: dict[int, _Instance] = {}
        self._recent: OrderedDict[tuple[int, float | None], Exit] = OrderedDict()
        self._makers: dict[str, asyncio.Task[Snapshot | None]] = {}
        self.progress: Progress = lambda line: logger.info("%s", line)

    @property
    def host(self) -> Host:
        if self._host is None:
            self._host = hosting.detect()
            logger.info("vm: using %s", self._host.why)
        return self._host

    # ------------------------------------------------------------------ baking

    async def prepare(self, project: Project, services: list[str], progress: Progress) -> None:
        """Bake every stale image before the supervisor starts (progress for each slow step)."""
        hosting.require("qemu-system-x86_64")
        self.progress = progress  # later bakes and snapshots report there too
        progress(f"vm: {self.host.why}")
        for name in services:
            service = project.manifest.services[name]
            inputs = inputs_of_service(project, name, service)
            if not inputs.command:
                continue
            await self.baker.bake(inputs, progress)

    # ------------------------------------------------------------------ protocol

    async def start(self, spec: InstanceSpec) -> Handle:
        hosting.require("qemu-system-x86_64")
        self._clear_orphans(spec.env.get("SHOAL_STATE"))
        try:
            image = await self.baker.bake(inputs_of(spec), self.progress)
        except ShoalError:
            raise
        except OSError as exc:
            raise InstanceStartError(
                label=spec.label, argv=(), reason=f"cannot bake the VM image: {exc}"
            ) from exc
        memory, cpus = qemu.memory_mib(spec.limits.memory_bytes), qemu.vcpus(spec.limits.cpus)
        key = snapshot_key(image, memory_mib=memory, cpus=cpus, port=spec.port, host=self.host)
        snapshot = self.snapshots.find(key, memory_mib=memory, cpus=cpus)
        maker = self._makers.get(key)
        if self._use_snapshots and snapshot is None and maker is not None and not maker.done():
            # a fresh boot is being snapshotted right now: waiting for it beats a second
            # cold boot competing with it for the CPU
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(maker), MAKER_WAIT)
            snapshot = self.snapshots.find(key, memory_mib=memory, cpus=cpus)
        if self._use_snapshots and snapshot is not None:
            handle = await self._from_standby(spec, key, snapshot)
            if handle is None:
                handle = await self._restore(spec, image, snapshot)
            if handle is not None:
                self._stand_by(spec, image, snapshot, key)  # for the next start
                return handle
            logger.warning("[%s] restore from the snapshot failed: booting cold", spec.label)
        handle, instance = await self._boot(spec, image, memory, cpus)
        await self._until_ready(handle, instance)
        if self._use_snapshots and key not in self._makers and instance.channel is not None:
            self._makers[key] = asyncio.create_task(
                self._make_snapshot(instance.channel, image, key, (memory, cpus), spec),
                name=f"shoal.runtimes.vm.snapshot[{spec.name}]",
            )
            self._makers[key].add_done_callback(lambda task: self._made(key, task))
        return handle

    async def _until_ready(self, handle: Handle, instance: _Instance) -> None:
        """Wait for a cold guest's ``ready`` (or qemu's end, or :data:`READY_WAIT`)."""
        if instance.channel is None:
            return
        ready = asyncio.ensure_future(instance.channel.ready.wait())
        try:
            async with _no_qemu_left(handle, instance):  # cancelled (shutdown) mid-boot
                await asyncio.wait(
                    {ready, instance.watcher},
                    timeout=READY_WAIT,
                    return_when=asyncio.FIRST_COMPLETED,
                )
        finally:
            ready.cancel()

    async def wait(self, handle: Handle) -> Exit:
        instance = await self._find_or_adopt(handle)
        if instance is None:
            return self._recent.get(_key(handle), GONE)
        return await asyncio.shield(instance.watcher)

    async def stop(self, handle: Handle, grace: float) -> Exit:
        instance = await self._find_or_adopt(handle)
        if instance is None:
            return self._recent.get(_key(handle), GONE)
        if not instance.watcher.done():
            if instance.channel is not None:
                instance.channel.say(f"stop {max(grace, 0.0):g}")
            else:
                _kill(handle, signal.SIGTERM)
            _, pending = await asyncio.wait(
                {instance.watcher}, timeout=max(grace, 0.0) + POWER_OFF_GRACE
            )
            if pending:
                logger.info("[%s] VM still running after %gs: SIGKILL", handle.spec.label, grace)
                _kill(handle, signal.SIGKILL)
        return await asyncio.shield(instance.watcher)

    async def signal(self, handle: Handle, signum: int) -> None:
        instance = await self._find_or_adopt(handle)
        if instance is None or instance.watcher.done():
            return
        if signum == signal.SIGKILL or instance.channel is None:
            _kill(handle, signum)
        else:
            instance.channel.say(f"kill {int(signum)}")

    async def adopt(self, handle: Handle) -> Handle | None:
        instance = self._find(handle)
        if instance is not None:
            return instance.handle
        label = handle.spec.label
        self._clear_orphans(handle.spec.env.get("SHOAL_STATE"))
        if handle.pid is None or handle.pid_start_time is None or handle.runtime_ref is None:
            return None
        run = Path(handle.runtime_ref)
        try:
            pidfd = watching.open_pidfd(handle.pid)
        except ProcessLookupError:
            logger.info("[%s] not adopted: VM pid %s is gone", label, handle.pid)
            shutil.rmtree(run, ignore_errors=True)
            return None
        if not procfs.is_alive(handle.pid, handle.pid_start_time) or not run.is_dir():
            if pidfd is not None:
                os.close(pidfd)
            logger.info("[%s] not adopted: pid %s is another process", label, handle.pid)
            return None
        channel: Channel | None
        try:
            channel = await Channel.connect(label, run / "control.sock", timeout=1.0)
        except OSError:
            channel = None
        self._watch(handle, run, channel, self._watch_adopted(handle, pidfd))
        logger.info("[%s] adopted VM pid %d", label, handle.pid)
        return handle

    async def stats(self, handle: Handle) -> Stats | None:
        if handle.pid is None or not procfs.is_alive(handle.pid, handle.pid_start_time):
            return None
        measured = procfs.usage([handle.pid])
        if measured is None:
            return None
        return Stats(cpu_seconds=measured[0], rss_bytes=measured[1])

    async def sweep(self, match: Mapping[str, str]) -> list[int]:
        """Kill unwatched qemus whose environment holds ``match`` (started just before a
        daemon crash, before their pid was recorded), or standbys taken over as that instance
        (their run folder's ``identity``), and remove their run folders."""
        state = match.get("SHOAL_STATE")
        self._clear_orphans(state)
        watched = set(self._instances)
        killed = [pid for pid in procfs.with_environ(match) if pid not in watched]
        if state is not None:
            taken = _runs(standbys.standby_pids(state, match.get("SHOAL_SERVICE")))
            killed += [pid for pid in standbys.find(match, taken) if pid not in watched]
        for pid in killed:
            standbys.kill(pid, _environ_value(pid, "SHOAL_VM_RUN"))
            logger.warning("killed VM pid %d: its daemon crashed before recording it", pid)
        return sorted(killed)

    def _clear_orphans(self, state: str | None) -> None:
        """Once per state folder: kill standbys a crashed daemon left (never taken over)."""
        if not state or state in self._swept:
            return
        self._swept.add(state)
        runs = _runs(standbys.standby_pids(state))
        for pid in standbys.orphans(runs, self.standbys.pids()):
            standbys.kill(pid, runs[pid])
            logger.info("killed standby VM pid %d left by a crashed daemon", pid)

    async def close(self) -> None:
        """Stop watching (VMs keep running: a later runtime can adopt them); stop snapshot
        makers (a half-made snapshot is removed); kill the standbys."""
        await self.standbys.close()
        tasks: list[asyncio.Task[object]] = []
        for maker in self._makers.values():
            maker.cancel()
            tasks.append(maker)
        for instance in list(self._instances.values()):
            instance.watcher.cancel()
            tasks.append(instance.watcher)
            if instance.channel is not None:
                await instance.channel.close()
        self._instances.clear()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------ starting

    def _environment(self, spec: InstanceSpec, run: Path) -> dict[str, str]:
        env = {key: spec.env[key] for key in IDENTITY if key in spec.env}
        env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
        env["TMPDIR"] = str(run)  # qemu's copy-on-write disk overlays
        env["SHOAL_VM_RUN"] = str(run)
        return env

    def _machine(
        self, spec: InstanceSpec, image: Image, run: Path, memory: int, cpus: int
    ) -> qemu.Machine:
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        return qemu.Machine(
            kernel=image.kernel,
            initramfs=image.initramfs,
            disks=(image.root, image.service),
            host=self.host,
            memory_mib=memory,
            cpus=cpus,
            port=spec.port,
            host_port=spec.host_port,
            console=spec.log_path,
            control=run / "control.sock",
            qmp=run / "qmp.sock",
            pidfile=run / "qemu.pid",
        )

    async def _boot(
        self, spec: InstanceSpec, image: Image, memory: int, cpus: int
    ) -> tuple[Handle, _Instance]:
        run = qemu.new_run_folder(f"{spec.name[:16]}-{spec.ordinal}-")
        machine = self._machine(spec, image, run, memory, cpus)
        _note(spec, f"booting VM image {image.key} cold ({self.host.why})")
        return await self._launch(spec, machine, run, pass_fds=())

    def _clone(
        self, spec: InstanceSpec, image: Image, snapshot: Snapshot, run: Path, **changes: object
    ) -> qemu.Machine:
        """The machine of a clone of ``snapshot`` (its RAM file private, its disk overlays)."""
        base = self._machine(spec, image, run, snapshot.memory_mib, snapshot.cpus)
        clone = {"disks": snapshot.disks, "disk_format": "qcow2", "ram_file": snapshot.ram}
        return qemu.Machine(**{**base.__dict__, **clone, "ram_shared": False, **changes})

    async def _restore(self, spec: InstanceSpec, image: Image, snapshot: Snapshot) -> Handle | None:
        run = qemu.new_run_folder(f"{spec.name[:16]}-{spec.ordinal}-")
        started = time.monotonic()
        state = os.open(snapshot.state, os.O_RDONLY)
        try:
            machine = self._clone(spec, image, snapshot, run, incoming_fd=state)
            handle, instance = await self._launch(spec, machine, run, pass_fds=(state,))
        finally:
            os.close(state)
        launched = time.monotonic()
        loaded = launched
        async with _no_qemu_left(handle, instance):  # cancelled (shutdown) mid-restore
            try:
                await qemu.restore(machine)
                loaded = time.monotonic()
                synced = instance.channel is not None and await instance.channel.sync(SYNC_TIMEOUT)
            except (OSError, qemu.QmpError) as exc:
                logger.warning("[%s] cannot load the snapshot: %s", spec.label, exc)
                synced = False
        if synced:
            now = time.monotonic()
            _note(
                spec,
                f"restored from snapshot {snapshot.folder.name} in {now - started:.3f}s "
                f"(qemu start {launched - started:.3f}s, device state {loaded - launched:.3f}s, "
                f"clock and entropy sync {now - loaded:.3f}s)",
            )
            return handle
        await self.stop(handle, 0)
        return None

    async def _from_standby(
        self, spec: InstanceSpec, key: str, snapshot: Snapshot
    ) -> Handle | None:
        """Take over the standby clone of ``key`` (None: there was none, or it failed)."""
        standby = await self.standbys.take(key)
        if standby is None:
            return None
        started = time.monotonic()
        standby.channel.label = spec.label
        handle = self._handle(spec, standby.process.pid, standby.run)
        instance = self._watch(
            handle, standby.run, standby.channel, self._watch_child(standby.process)
        )
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        taken = started
        async with _no_qemu_left(handle, instance):  # cancelled (shutdown) mid-restore
            try:
                await standbys.take_over(
                    standby,
                    identity={name: spec.env[name] for name in IDENTITY if name in spec.env},
                    log=spec.log_path,
                    port=spec.port,
                    host_port=spec.host_port,
                )
                taken = time.monotonic()
                synced = await standby.channel.sync(SYNC_TIMEOUT)
            except (OSError, qemu.QmpError) as exc:
                logger.warning("[%s] cannot take over the standby clone: %s", spec.label, exc)
                synced = False
            finally:
                await standby.monitor.close()
        if synced:
            now = time.monotonic()
            _note(
                spec,
                f"restored from snapshot {snapshot.folder.name} (a standby clone) in "
                f"{now - started:.3f}s (port and console {taken - started:.3f}s, "
                f"clock and entropy sync {now - taken:.3f}s)",
            )
            return handle
        await self.stop(handle, 0)
        return None

    def _stand_by(self, spec: InstanceSpec, image: Image, snapshot: Snapshot, key: str) -> None:
        """Restore a standby clone for the next start from ``snapshot`` (if there is none). Only
        for instances of a state folder: that is how a crashed daemon's standbys are found."""
        state = spec.env.get("SHOAL_STATE")
        if not self._use_standbys or state is None or key in self.standbys:
            return

        def make(run: Path) -> tuple[qemu.Machine, dict[str, str]]:
            console = run / standbys.QEMU_LOG
            machine = self._clone(spec, image, snapshot, run, host_port=None, console=console)
            env = {
                "SHOAL_STATE": state,
                "SHOAL_SERVICE": spec.name,
                standbys.MARK: "1",
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "TMPDIR": str(run),
                "SHOAL_VM_RUN": str(run),
            }
            return machine, env

        self.standbys.launch(key, f"{spec.app}/{spec.name}", make, snapshot.state)

    async def _launch(
        self, spec: InstanceSpec, machine: qemu.Machine, run: Path, pass_fds: tuple[int, ...]
    ) -> tuple[Handle, _Instance]:
        try:
            process = await qemu.launch(
                machine, label=spec.label, env=self._environment(spec, run), pass_fds=pass_fds
            )
        except BaseException:
            shutil.rmtree(run, ignore_errors=True)
            raise
        handle = self._handle(spec, process.pid, run)
        channel: Channel | None
        try:
            channel = await Channel.connect(spec.label, machine.control)
        except OSError as exc:
            logger.warning("[%s] no control line: %s", spec.label, exc)
            channel = None
        except BaseException:  # cancelled (shutdown) before it was watched: leave no qemu
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            shutil.rmtree(run, ignore_errors=True)
            raise
        instance = self._watch(handle, run, channel, self._watch_child(process))
        logger.debug("[%s] started VM pid %d", spec.label, process.pid)
        return handle, instance

    def _handle(self, spec: InstanceSpec, pid: int, run: Path) -> Handle:
        """The handle of ``spec``'s instance: qemu ``pid``, its run folder as ``runtime_ref``."""
        return Handle(
            spec=spec,
            pid=pid,
            pid_start_time=procfs.process_start_time(pid),
            host_port=spec.host_port,
            runtime_ref=str(run),
            started_at=self._clock(),
        )

    async def _make_snapshot(
        self, channel: Channel, image: Image, key: str, shape: tuple[int, int], spec: InstanceSpec
    ) -> Snapshot | None:
        """After the first cold boot serves: snapshot a fresh boot of the same image."""
        await channel.ready.wait()
        memory, cpus = shape
        if self.snapshots.find(key, memory_mib=memory, cpus=cpus) is not None:
            return None
        self.progress(f"vm: {spec.name} is up; snapshotting a fresh boot for faster starts")
        made = await self.snapshots.make(
            image,
            key=key,
            memory_mib=memory,
            cpus=cpus,
            port=spec.port,
            host=self.host,
            label=f"{spec.name}#snapshot",
            progress=self.progress,
            owner=f"{spec.app}/{spec.name}",
        )
        self._stand_by(spec, image, made, key)
        return made

    def _made(self, key: str, task: asyncio.Task[Snapshot | None]) -> None:
        if task.cancelled():
            self._makers.pop(key, None)
            return
        error = task.exception()
        if error is not None:  # leave the key: no retry loop of failing makers in this daemon
            logger.warning("vm: snapshot failed (instances will boot cold): %s", error)

    # ------------------------------------------------------------------ watching

    def _watch(
        self,
        handle: Handle,
        run: Path,
        channel: Channel | None,
        body: Coroutine[object, object, int | None],
    ) -> _Instance:
        watcher = asyncio.create_task(
            self._finish(handle, run, body), name=f"shoal.runtimes.vm.watch[{handle.spec.label}]"
        )
        instance = _Instance(handle=handle, run=run, channel=channel, watcher=watcher)
        self._instances[_pid(handle)] = instance
        watcher.add_done_callback(lambda task: self._watched(handle, task))
        return instance

    def _watched(self, handle: Handle, task: asyncio.Task[Exit]) -> None:
        instance = self._instances.get(_pid(handle))
        if instance is not None and instance.watcher is task:
            del self._instances[_pid(handle)]
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            logger.error("[%s] watcher failed", handle.spec.label, exc_info=error)
            return
        self._recent[_key(handle)] = task.result()
        while len(self._recent) > RECENT_EXITS:
            self._recent.popitem(last=False)

    async def _watch_child(self, process: asyncio.subprocess.Process) -> int | None:
        return await process.wait()

    async def _watch_adopted(self, handle: Handle, pidfd: int | None) -> int | None:
        try:
            await watching.wait_for_exit(
                _pid(handle), handle.pid_start_time, pidfd=pidfd, poll_interval=self._poll_interval
            )
        finally:
            if pidfd is not None:
                os.close(pidfd)
        return None

    async def _finish(
        self, handle: Handle, run: Path, body: Coroutine[object, object, int | None]
    ) -> Exit:
        returncode = await body
        instance = self._instances.get(_pid(handle))
        ended = None
        if instance is not None and instance.channel is not None:
            await asyncio.sleep(0)  # let the reader take the guest's last line
            ended = instance.channel.ended
            await instance.channel.close()
        _keep_qemu_log(run, handle.spec.log_path)
        shutil.rmtree(run, ignore_errors=True)
        return describe(returncode, ended)

    async def _find_or_adopt(self, handle: Handle) -> _Instance | None:
        instance = self._find(handle)
        if instance is None and await self.adopt(handle) is not None:
            instance = self._find(handle)
        return instance

    def _find(self, handle: Handle) -> _Instance | None:
        instance = self._instances.get(handle.pid) if handle.pid is not None else None
        return instance if instance is not None and instance.handle.same_process(handle) else None


def describe(returncode: int | None, ended: tuple[str, int] | None) -> Exit:
    """How an instance ended: the command's own status when the guest init reported it, else
    qemu's (killed by a signal, or exited without a report)."""
    if ended is not None:
        kind, value = ended
        if kind == "exit":
            return Exit(code=value, reason=f"exited with code {value}")
        return Exit(code=None, signal=value, reason=f"killed by {watching.signal_name(value)}")
    if returncode is not None and returncode < 0:
        return Exit(
            code=None,
            signal=-returncode,
            reason=f"VM killed by {watching.signal_name(-returncode)}",
        )
    if returncode is None:
        return Exit(code=None, reason=watching.ADOPTED_REASON)
    return Exit(code=None, reason=f"VM stopped (qemu exited with code {returncode})")


def _note(spec: InstanceSpec, text: str) -> None:
    """A line of shoal's own in the instance's log (the serial console is appended there too)."""
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)
    with spec.log_path.open("a") as log:
        log.write(f"shoal: {text}\n")


@contextlib.asynccontextmanager
async def _no_qemu_left(handle: Handle, instance: _Instance) -> AsyncIterator[None]:
    """Run the body; if it raises (a cancelled start, mostly), kill qemu and wait for it."""
    try:
        yield
    except BaseException:
        _kill(handle, signal.SIGKILL)
        await asyncio.shield(instance.watcher)
        raise


def _kill(handle: Handle, signum: int) -> None:
    if handle.pid is not None and procfs.is_alive(handle.pid, handle.pid_start_time):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(handle.pid, signum)


def _keep_qemu_log(run: Path, log: Path) -> None:
    """A taken-over standby's qemu wrote its own messages into its run folder: keep them."""
    with contextlib.suppress(OSError):
        said = (run / standbys.QEMU_LOG).read_bytes()
        if said:
            with log.open("ab") as kept:
                kept.write(said)


def _runs(pids: list[int]) -> dict[int, str]:
    """Each pid's run folder (from its environment; empty if it has gone meanwhile)."""
    return {pid: _environ_value(pid, "SHOAL_VM_RUN") or "" for pid in pids}


def _environ_value(pid: int, key: str) -> str | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as source:
            for item in source.read().split(b"\0"):
                name, _, value = item.partition(b"=")
                if name.decode(errors="replace") == key:
                    return value.decode(errors="replace")
    except OSError:
        return None
    return None


def _pid(handle: Handle) -> int:
    if handle.pid is None:
        raise ValueError(f"[{handle.spec.label}] handle has no pid")
    return handle.pid


def _key(handle: Handle) -> tuple[int, float | None]:
    return (handle.pid or 0, handle.pid_start_time)


__all__ = ["GONE", "VmRuntime", "describe", "inputs_of", "inputs_of_service"]
