"""Snapshot starts: boot an image once, snapshot the fresh boot, start later VMs from it.

:class:`~shoal.runtimes.vm.running.VmRuntime` asks :meth:`Snapshots.find` before every start;
after the first cold-booted instance of an image revision says its service port is open, it
calls :meth:`Snapshots.make` in the background. The maker is a separate, fresh VM (never a
serving instance, so no request or client state ends up in the snapshot):

1. qcow2 overlays over the image's disks (they become the clones' read-only base, so a clone's
   disks match what its restored page cache believes), RAM in a file mapped **shared**;
2. boot, wait for the guest init's ``ready`` (the service listens); one ``GET /`` from inside
   the guest warms the service (first-request imports and caches, like SnapStart's priming);
   let it settle; ``freeze``: the guest init SIGSTOPs the command's process group, so a clone
   runs none of the service's code until its ``sync`` thaws it (a standby clone runs its kernel
   ahead, :mod:`~shoal.runtimes.vm.standbys`);
3. QMP ``stop``, then ``migrate`` to a file (an inherited fd) with ``x-ignore-shared``: only the
   device state is written, the RAM already is in its file; ``quit``;
4. rename the folder into place (``complete`` written last): a half-made snapshot is never used;
   the service's older snapshots (earlier images) are removed.

A clone maps the RAM file **private** (copy-on-write: clones share the unchanged pages through
the page cache) and loads the device state with ``-incoming fd:N``; its netdev is built from its
own command line, so it gets its own ``hostfwd`` port. Then the runtime sends ``sync`` over the
control line: the guest sets its wall clock to the host's and credits 32 fresh random bytes to
the kernel's pool with an immediate CRNG reseed, then thaws the command, before any request
reaches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from shoal.runtimes.vm import commands, hosting, qemu
from shoal.runtimes.vm.baking import Image, Progress, digest
from shoal.runtimes.vm.channel import Channel
from shoal.runtimes.vm.hosting import Host

SETTLE = 0.3
"""Seconds between the guest's ``ready`` and the snapshot (let the boot's last writes land)."""
MIGRATE_POLL = 0.02
WARM_PATH = "/"
WARM_TIMEOUT = 30.0
"""The maker's one request to the service before the snapshot (its answer is not checked)."""
FREEZE_TIMEOUT = 10.0


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    folder: Path
    memory_mib: int
    cpus: int

    @property
    def ram(self) -> Path:
        return self.folder / "ram"

    @property
    def state(self) -> Path:
        return self.folder / "state"

    @property
    def disks(self) -> tuple[Path, Path]:
        return (self.folder / "root.qcow2", self.folder / "srv.qcow2")


def snapshot_key(image: Image, *, memory_mib: int, cpus: int, port: int | None, host: Host) -> str:
    """Everything a restore depends on: the image, the machine's shape and the accelerator."""
    return digest(image.key, memory_mib, cpus, port, host.accel, qemu.kernel_args(host))


def disk_identity(path: Path) -> str | None:
    """An ext4 image's filesystem UUID (``mkfs`` makes a new one each time): which bytes a
    snapshot's overlays and guest page cache belong to."""
    try:
        with path.open("rb") as image:
            image.seek(1024 + 0x68)  # the superblock's s_uuid
            return image.read(16).hex()
    except OSError:
        return None


class Snapshots:
    """The snapshots of every image, under ``<cache>/snapshots/<key>``."""

    def __init__(self, cache: Path) -> None:
        self.folder = cache / "snapshots"

    def find(self, key: str, *, memory_mib: int, cpus: int) -> Snapshot | None:
        """The snapshot for ``key``, if it is complete and its disks are still the very files it
        was made on (a pruned service disk baked again has the same name, not the same bytes)."""
        folder = self.folder / key
        try:
            meta = json.loads((folder / "complete").read_text())
        except (OSError, ValueError):
            return None
        disks = meta.get("disks")
        if not isinstance(disks, dict) or not disks:
            return None
        if any(disk_identity(Path(path)) != identity for path, identity in disks.items()):
            return None
        return Snapshot(folder=folder, memory_mib=memory_mib, cpus=cpus)

    def prune(self, owner: str, *, keep: str) -> list[str]:
        """Remove the other snapshots of ``owner`` (an app's service): only its newest image's
        is kept, so the cache does not grow by a RAM file per code change. VMs restored from a
        removed snapshot keep running (their files stay open); new ones boot cold."""
        removed = []
        for folder in sorted(self.folder.iterdir()) if self.folder.is_dir() else []:
            if folder.name == keep or folder.name.startswith("."):
                continue
            try:
                meta = json.loads((folder / "complete").read_text())
            except (OSError, ValueError):
                continue
            if meta.get("owner") == owner:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder.name)
        return removed

    async def make(
        self,
        image: Image,
        *,
        key: str,
        memory_mib: int,
        cpus: int,
        port: int | None,
        host: Host,
        label: str,
        progress: Progress,
        owner: str = "",
        ready_timeout: float = 300.0,
    ) -> Snapshot:
        """Boot a fresh VM of ``image`` and snapshot it once it serves (see the module doc)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=".make-", dir=self.folder))
        run = qemu.new_run_folder("snap-")
        snapshot = Snapshot(folder=work, memory_mib=memory_mib, cpus=cpus)
        process: asyncio.subprocess.Process | None = None
        try:
            for base, overlay in zip((image.root, image.service), snapshot.disks, strict=True):
                await commands.run(
                    [hosting.require("qemu-img"), "create", "-q", "-f", "qcow2", "-b",
                     str(base), "-F", "raw", str(overlay)]
                )  # fmt: skip
            state = os.open(snapshot.state, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                machine = qemu.Machine(
                    kernel=image.kernel,
                    initramfs=image.initramfs,
                    disks=snapshot.disks,
                    disk_format="qcow2",
                    disk_snapshot=False,
                    host=host,
                    memory_mib=memory_mib,
                    cpus=cpus,
                    port=port,
                    console=work / "console.log",
                    control=run / "control.sock",
                    qmp=run / "qmp.sock",
                    pidfile=run / "qemu.pid",
                    ram_file=snapshot.ram,
                    ram_shared=True,
                )
                env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TMPDIR": str(run)}
                process = await qemu.launch(machine, label=label, env=env, die_with_parent=True)
                await _snapshot(machine, process, label, state, ready_timeout)
            finally:
                os.close(state)
            disks = {str(disk): disk_identity(disk) for disk in (image.root, image.service)}
            meta = {"label": label, "key": key, "owner": owner, "disks": disks}
            (work / "complete").write_text(json.dumps(meta) + "\n")
            target = self.folder / key
            try:
                os.rename(work, target)
            except OSError:  # another maker finished first: keep theirs
                shutil.rmtree(work, ignore_errors=True)
            if owner:
                self.prune(owner, keep=key)
            progress(f"vm: snapshot of {label} ready ({time.monotonic() - started:.1f}s)")
            return Snapshot(folder=target, memory_mib=memory_mib, cpus=cpus)
        except BaseException:
            if process is not None and process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
            shutil.rmtree(work, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(run, ignore_errors=True)


async def _snapshot(
    machine: qemu.Machine,
    process: asyncio.subprocess.Process,
    label: str,
    state_fd: int,
    ready_timeout: float,
) -> None:
    channel = await Channel.connect(label, machine.control)
    try:
        exited = asyncio.ensure_future(process.wait())
        ready = asyncio.ensure_future(channel.ready.wait())
        done, _ = await asyncio.wait(
            {exited, ready}, timeout=ready_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        for future in (exited, ready):
            if future not in done:
                future.cancel()
        if ready not in done:
            why = "exited" if exited in done else f"was not ready within {ready_timeout:g}s"
            raise RuntimeError(f"the snapshot VM {why}")
        channel.say(f"warm {WARM_PATH}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(channel.warmed.wait(), WARM_TIMEOUT)
        await asyncio.sleep(SETTLE)
        if not await channel.freeze(FREEZE_TIMEOUT):
            raise RuntimeError(
                f"the snapshot VM did not stop its command within {FREEZE_TIMEOUT:g}s"
            )
        monitor = await qemu.Qmp.connect(machine.qmp)
        try:
            await monitor.execute("stop")
            await qemu.ignore_shared(monitor)
            await monitor.execute("getfd", fd=state_fd, fdname="snapshot")
            await monitor.execute("migrate", uri="fd:snapshot")
            await qemu.migrated(monitor, "migration to the snapshot file", MIGRATE_POLL)
            with contextlib.suppress(qemu.QmpError):
                await monitor.execute("quit")
        finally:
            await monitor.close()
        await asyncio.wait_for(process.wait(), 30)
    finally:
        await channel.close()


__all__ = ["Snapshot", "Snapshots", "snapshot_key"]
