"""The check on the kernel a VM boots: an ELF ``vmlinux`` with a PVH entry, booted directly.

qemu boots an ELF kernel that carries a PVH entry note (``XEN_ELFNOTE_PHYS32_ENTRY``, from
``CONFIG_PVH``) straight at its 32-bit entry: no decompressor and no real-mode setup, which under
TCG (no hardware KVM) saves 0.6-0.9 s of every cold boot here against a ``bzImage``.
:mod:`shoal.runtimes.vm.baking` builds the kernel with ``CONFIG_PVH``
(:mod:`shoal.runtimes.vm.kernel_config`) and checks the result with :func:`has_pvh_entry`
before caching it. Pure: reads bytes.
"""

from __future__ import annotations

import struct

PVH_NOTE = 18  # XEN_ELFNOTE_PHYS32_ENTRY


def has_pvh_entry(elf: bytes) -> bool:
    """True when the ELF kernel has a ``XEN_ELFNOTE_PHYS32_ENTRY`` note (qemu boots it as PVH)."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2:  # 64-bit ELF only (the x86-64 kernel)
        return False
    phoff = struct.unpack_from("<Q", elf, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for index in range(phnum):
        kind, _, offset, _, _, size = struct.unpack_from("<IIQQQQ", elf, phoff + index * phentsize)
        if kind != 4:  # PT_NOTE
            continue
        at, end = offset, offset + size
        while at + 12 <= end:
            namesz, descsz, note = struct.unpack_from("<III", elf, at)
            name = elf[at + 12 : at + 12 + namesz].rstrip(b"\x00")
            if name == b"Xen" and note == PVH_NOTE:
                return True
            at += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False


__all__ = ["PVH_NOTE", "has_pvh_entry"]
