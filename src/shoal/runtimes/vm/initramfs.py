"""The initramfs every shoal VM boots through: busybox, the virtio modules, and a tiny ``/init``.

:mod:`shoal.runtimes.vm.baking` calls :func:`build` once per kernel (cached by content hash).
Debian's cloud kernel builds virtio as modules and has no 9p, so ``/init`` loads virtio-mmio,
-blk, -net and -rng, configures the network slirp hands out (10.0.2.15/24 via 10.0.2.2) so the
guest never waits for DHCP, mounts the base root filesystem (``/dev/vda``) and the service disk
(``/dev/vdb`` at ``/srv``), and ``switch_root``s into the guest init
(``guest_init.c``, compiled at bake time).

The archive is written here in the kernel's ``newc`` cpio format (no ``cpio`` binary needed):
pure code, no I/O but reading the files it is given.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

MODULES: tuple[str, ...] = (
    "kernel/drivers/virtio/virtio_ring.ko",
    "kernel/drivers/virtio/virtio.ko",
    "kernel/drivers/virtio/virtio_mmio.ko",
    "kernel/drivers/block/virtio_blk.ko",
    "kernel/net/core/failover.ko",
    "kernel/drivers/net/net_failover.ko",
    "kernel/drivers/net/virtio_net.ko",
    "kernel/drivers/char/hw_random/virtio-rng.ko",
)
"""The modules ``/init`` loads, in dependency order, relative to ``/lib/modules/<version>``."""

GUEST_INIT = "/srv/shoal/init"

INIT = """#!/bin/busybox sh
# shoal's initramfs: load virtio, set up the network, mount the disks, switch_root.
bb=/bin/busybox
$bb mount -t devtmpfs dev /dev
$bb mount -t proc proc /proc
$bb mount -t sysfs sys /sys
for m in {modules}; do
  $bb insmod /lib/modules/$m.ko || echo "shoal-initramfs: insmod $m failed"
done
n=0
while [ ! -b /dev/vdb ] && [ $n -lt 1000 ]; do $bb usleep 2000; n=$((n+1)); done
$bb ifconfig lo 127.0.0.1 up
$bb ifconfig eth0 10.0.2.15 netmask 255.255.255.0 up
$bb route add default gw 10.0.2.2
fail() {{ echo "shoal-initramfs: $1"; $bb poweroff -f; }}
$bb mount -t ext4 -o noatime /dev/vda /newroot || fail "cannot mount the root disk"
$bb mount -t ext4 -o noatime /dev/vdb /newroot/srv || fail "cannot mount the service disk"
$bb mount --move /dev /newroot/dev
$bb mount --move /proc /newroot/proc
$bb mount --move /sys /newroot/sys
exec $bb switch_root /newroot {guest_init}
"""


@dataclass(frozen=True)
class Entry:
    """One member of the archive: a directory (``data`` None) or a regular file."""

    path: str  # without a leading slash
    mode: int
    data: bytes | None = None


def init_script(modules: Sequence[str] = MODULES) -> str:
    names = " ".join(Path(module).name.removesuffix(".ko") for module in modules)
    return INIT.format(modules=names, guest_init=GUEST_INIT)


def module_depends(data: bytes) -> list[str]:
    """The ``depends=`` of a kernel module's ``.modinfo`` (checked against :data:`MODULES`)."""
    found = re.search(rb"(?:^|\x00)depends=([^\x00]*)\x00", data)
    if found is None or not found.group(1):
        return []
    return found.group(1).decode().split(",")


def entries(busybox: bytes, modules: dict[str, bytes], init: str) -> list[Entry]:
    """The archive's members: ``modules`` maps a module's file name to its bytes."""
    result = [Entry(name, 0o755) for name in ("bin", "dev", "proc", "sys", "newroot", "lib")]
    result.append(Entry("lib/modules", 0o755))
    result.append(Entry("bin/busybox", 0o755, busybox))
    result.append(Entry("init", 0o755, init.encode()))
    result.extend(Entry(f"lib/modules/{name}", 0o644, data) for name, data in modules.items())
    return result


def newc(members: Iterable[Entry]) -> bytes:
    """A ``newc`` (SVR4, no CRC) cpio archive of ``members``, as the kernel unpacks it."""
    out = bytearray()
    inode = 1
    for member in [*members, Entry("TRAILER!!!", 0)]:
        data = member.data or b""
        kind = 0o100000 if member.data is not None else 0o040000
        mode = 0 if member.path == "TRAILER!!!" else kind | member.mode
        name = member.path.encode() + b"\x00"
        fields = (inode, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name), 0)
        out += b"070701" + b"".join(f"{value:08x}".encode() for value in fields)
        out += name
        out += b"\x00" * (-len(out) % 4)
        out += data
        out += b"\x00" * (-len(out) % 4)
        inode += 1
    return bytes(out)


__all__ = ["GUEST_INIT", "MODULES", "Entry", "entries", "init_script", "module_depends", "newc"]
