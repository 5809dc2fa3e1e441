"""The initramfs every shoal VM boots through: the static guest init alone, as ``/init``.

:mod:`shoal.runtimes.vm.baking` writes it next to the compiled guest init (cached by the
source's hash). The kernel (:mod:`shoal.runtimes.vm.kernel_config`) has every driver built in,
so there is nothing to load: the binary's stage one (``guest_init.c``) mounts the kernel's file
systems and the two disks, sets up the network and switches into the root disk, executing the
service disk's copy of itself. A busybox shell doing the same took 0.4-0.5 s under TCG; these
system calls take milliseconds.

The archive is written here in the kernel's ``newc`` cpio format (no ``cpio`` binary needed):
pure code, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    """One member of the archive: a directory (``data`` None) or a regular file."""

    path: str  # without a leading slash
    mode: int
    data: bytes | None = None


def entries(init: bytes) -> list[Entry]:
    """The archive's members: the mount points stage one uses, and ``init`` (the binary)."""
    result = [Entry(name, 0o755) for name in ("dev", "proc", "sys", "newroot")]
    result.append(Entry("init", 0o755, init))
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


__all__ = ["Entry", "entries", "newc"]
