"""qemu command lines (pure) and a small QMP client.

:mod:`shoal.runtimes.vm.running` and :mod:`shoal.runtimes.vm.snapshots` describe a VM as a
:class:`Machine` and get its argv from :func:`argv`; nothing here starts a process. The machine
is ``-M microvm,acpi=off`` (no PCI, no ACPI: qemu lists the virtio-mmio devices on the kernel
command line, and the guest ends by a reset, ``reboot=t``, which ``-no-reboot`` turns into
qemu's exit; see :mod:`shoal.runtimes.vm.kernel_config`): block devices for the
base root filesystem and the service disk, virtio-net on user-mode networking with
``restrict=on`` (the guest reaches nothing outside) and one ``hostfwd`` from 127.0.0.1 to the
service port, virtio-rng, the serial console appended to the instance's log, a second serial
line for the guest init's control messages, and a QMP socket.

Disks are never written in place: ``snapshot=on`` gives each VM a private copy-on-write overlay
(qemu creates it under ``TMPDIR``, the instance's run folder). A snapshot maker instead writes
explicit qcow2 overlays that its restored clones then use as their (read-only) base.

Snapshots (:mod:`shoal.runtimes.vm.snapshots`): the maker's RAM is a file mapped shared; a clone
maps the same file private (copy-on-write) and loads only the device state, migrated to a file
with ``x-ignore-shared`` (a migration capability, set over QMP on both sides).
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import signal
import socket
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shoal.errors import InstanceStartError
from shoal.runtimes.vm import hosting
from shoal.runtimes.vm.hosting import Host

BOOT_ARGS = (
    "console=ttyS0",
    "quiet",
    "panic=-1",
    "reboot=t",
    "rdinit=/init",
    "pci=off",
    "no_timer_check",
    "8250.nr_uarts=2",
    "random.trust_cpu=off",
)
RESTORE_POLL = 0.002
"""Seconds between polls while qemu starts (its sockets) and loads a snapshot's device state."""
PR_SET_PDEATHSIG = 1
NETDEV = "net"
"""The netdev's id (``hostfwd_add`` names it)."""
CONSOLE = "console"
"""The serial console chardev's id (``chardev-change`` names it)."""
MIN_MEMORY_MIB = 192
DEFAULT_MEMORY_MIB = 256


@dataclass(frozen=True, kw_only=True)
class Machine:
    """One VM to start: what it boots, how big it is, where its sockets and files are."""

    kernel: Path
    initramfs: Path
    disks: tuple[Path, Path]  # root, service
    disk_format: str = "raw"
    disk_snapshot: bool = True  # False: write to the disk files (the snapshot maker's overlays)
    host: Host
    memory_mib: int = DEFAULT_MEMORY_MIB
    cpus: int = 1
    port: int | None = None  # inside the guest
    host_port: int | None = None  # 127.0.0.1 on this host
    console: Path  # appended to
    control: Path  # unix socket (server) for the guest init's control line
    qmp: Path  # unix socket (server)
    pidfile: Path
    ram_file: Path | None = None  # None: anonymous memory
    ram_shared: bool = False  # True: the snapshot maker; False: a clone (copy-on-write)
    incoming_fd: int | None = None  # restore the device state from this inherited fd


def new_run_folder(prefix: str) -> Path:
    """A fresh private folder with a short path (unix socket paths are limited to 107 bytes)."""
    base = Path(tempfile.gettempdir()) / f"shoal-vm-{os.getuid()}"
    base.mkdir(mode=0o700, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def memory_mib(memory_bytes: int | None) -> int:
    """Guest memory for a service's ``resources.memory`` (at least what Debian + Python need)."""
    if memory_bytes is None:
        return DEFAULT_MEMORY_MIB
    return max(MIN_MEMORY_MIB, memory_bytes >> 20)


def vcpus(cpus: float | None) -> int:
    """vCPUs for a service's ``resources.cpus`` (rounded up, at least 1)."""
    if cpus is None:
        return 1
    return max(1, -int(-cpus // 1))


def kernel_args(host: Host) -> str:
    args = list(BOOT_ARGS)
    if host.accel == "tcg":
        args += [f"tsc_early_khz={host.tsc_khz}", "tsc=reliable"]
    return " ".join(args)


def argv(machine: Machine, binary: str = "qemu-system-x86_64") -> list[str]:
    """The full qemu command line for ``machine`` (never run by a shell)."""
    host = machine.host
    args = [binary, "-name", "shoal", "-nodefaults", "-no-user-config", "-no-reboot"]
    args += ["-display", "none"]
    if host.accel == "kvm":
        args += ["-accel", "kvm", "-cpu", "host"]
    else:
        args += ["-accel", "tcg", "-cpu", "qemu64"]
    machine_opts = "microvm,acpi=off,rtc=on,pit=on,pic=on,isa-serial=on"
    if machine.ram_file is not None:
        share = "on" if machine.ram_shared else "off"
        args += [
            "-object",
            f"memory-backend-file,id=ram,size={machine.memory_mib}M,"
            f"mem-path={machine.ram_file},share={share}",
        ]
        machine_opts += ",memory-backend=ram"
    args += ["-M", machine_opts, "-m", f"{machine.memory_mib}M", "-smp", str(machine.cpus)]
    args += ["-kernel", str(machine.kernel), "-initrd", str(machine.initramfs)]
    args += ["-append", kernel_args(host)]
    args += ["-chardev", f"file,id={CONSOLE},path={machine.console},append=on"]
    args += ["-serial", f"chardev:{CONSOLE}"]
    args += ["-chardev", f"socket,id=control,path={machine.control},server=on,wait=off"]
    args += ["-device", "isa-serial,chardev=control"]
    for index, disk in enumerate(machine.disks):
        args += [
            "-drive",
            f"id=disk{index},file={disk},format={machine.disk_format},if=none,"
            f"snapshot={'on' if machine.disk_snapshot else 'off'},cache=unsafe",
        ]
        args += ["-device", f"virtio-blk-device,drive=disk{index}"]
    netdev = f"user,id={NETDEV},restrict=on"
    if machine.port is not None and machine.host_port is not None:
        netdev += f",hostfwd=tcp:127.0.0.1:{machine.host_port}-:{machine.port}"
    args += ["-netdev", netdev, "-device", f"virtio-net-device,netdev={NETDEV}"]
    args += ["-device", "virtio-rng-device"]
    args += ["-qmp", f"unix:{machine.qmp},server=on,wait=off"]
    args += ["-pidfile", str(machine.pidfile)]
    if machine.incoming_fd is not None:  # the state is loaded by :func:`restore` over QMP
        args += ["-incoming", "defer"]
    return args


async def launch(
    machine: Machine,
    *,
    label: str,
    env: Mapping[str, str],
    pass_fds: tuple[int, ...] = (),
    die_with_parent: bool = False,
) -> asyncio.subprocess.Process:
    """Start qemu for ``machine`` (own session; its own messages go to the console log).

    ``die_with_parent``: the kernel kills qemu if this process dies (a snapshot maker must not
    outlive a daemon killed with -9; instances must, to be adopted)."""
    args = argv(machine, hosting.require("qemu-system-x86_64"))
    with machine.console.open("ab") as log:
        try:
            return await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=dict(env),
                pass_fds=pass_fds,
                start_new_session=True,
                preexec_fn=_die_with_parent if die_with_parent else None,
            )
        except OSError as exc:
            raise InstanceStartError(
                label=label, argv=tuple(args[:1]), reason=exc.strerror or str(exc)
            ) from exc


async def restore(machine: Machine) -> None:
    """Load a clone's device state (``-incoming defer``): its RAM is the snapshot's file."""
    if machine.incoming_fd is None:
        raise ValueError("restore needs a machine started with incoming_fd")
    monitor = await Qmp.connect(machine.qmp)
    try:
        await ignore_shared(monitor)
        await load(monitor, machine.incoming_fd)
    finally:
        await monitor.close()


async def ignore_shared(monitor: Qmp) -> None:
    """Set ``x-ignore-shared`` (the snapshot maker, and each clone alike): the migration stream
    holds no RAM pages, the RAM already is in its file."""
    await monitor.execute(
        "migrate-set-capabilities",
        capabilities=[{"capability": "x-ignore-shared", "state": True}],
    )


async def load(monitor: Qmp, fd: int) -> None:
    """Read the device state from ``fd`` (qemu's own descriptor number) and resume the guest."""
    await monitor.execute("migrate-incoming", uri=f"fd:{fd}")
    await migrated(monitor, "loading the snapshot")  # a few ms: only the device state is read
    await monitor.execute("cont")  # the snapshot was taken paused


async def migrated(monitor: Qmp, what: str, poll: float = RESTORE_POLL) -> None:
    """Poll ``query-migrate`` until the migration in either direction completes."""
    while True:
        status = (await monitor.execute("query-migrate")).get("status")
        if status == "completed":
            return
        if status in ("failed", "cancelled"):
            raise QmpError(f"{what} {status}")
        await asyncio.sleep(poll)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class QmpError(Exception):
    """QMP answered with an error, or the connection ended."""


class Qmp:
    """A QMP connection: ``await Qmp.connect(path)``, then :meth:`execute`; events are skipped.

    A plain non-blocking socket driven by the loop (not a stream), because passing a file
    descriptor to qemu (``getfd``, for ``migrate fd:NAME``) needs ``SCM_RIGHTS``."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""

    @classmethod
    async def connect(cls, path: Path, timeout: float = 10.0) -> Qmp:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                if loop.time() > deadline:
                    raise
            except BaseException:
                sock.close()
                raise
            await asyncio.sleep(RESTORE_POLL)
        qmp = cls(sock)
        try:
            await qmp._receive()  # the greeting
            await qmp.execute("qmp_capabilities")
        except BaseException:
            sock.close()
            raise
        return qmp

    async def _receive(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        while b"\n" not in self._buffer:
            chunk = await loop.sock_recv(self._sock, 65536)
            if not chunk:
                raise QmpError("QMP connection closed")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        message: dict[str, Any] = json.loads(line)
        return message

    async def execute(self, command: str, *, fd: int | None = None, **arguments: Any) -> Any:
        """Run ``command``; with ``fd``, the descriptor travels with it (``getfd``)."""
        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        return await self._call(request, fd)

    async def human(self, command_line: str) -> str:
        """A human-monitor command (``hostfwd_add`` has no QMP form); the text it printed,
        which is where HMP reports a failure."""
        arguments = {"command-line": command_line}
        said = await self._call({"execute": "human-monitor-command", "arguments": arguments})
        return said if isinstance(said, str) else ""

    async def _call(self, request: dict[str, Any], fd: int | None = None) -> Any:
        command = request["execute"]
        data = json.dumps(request).encode() + b"\n"
        if fd is None:
            await asyncio.get_running_loop().sock_sendall(self._sock, data)
        else:  # a few bytes into an idle local socket: this does not block
            socket.send_fds(self._sock, [data], [fd])
        while True:
            message = await self._receive()
            if "return" in message:
                return message["return"]
            if "error" in message:
                error = message["error"]
                raise QmpError(f"{command}: {error.get('desc', error)}")

    async def close(self) -> None:
        self._sock.close()


__all__ = [
    "Machine",
    "Qmp",
    "QmpError",
    "argv",
    "ignore_shared",
    "kernel_args",
    "launch",
    "load",
    "memory_mib",
    "migrated",
    "new_run_folder",
    "restore",
    "vcpus",
]
