"""The uncompressed kernel a VM boots directly (PVH), taken out of Debian's ``vmlinuz``.

:mod:`shoal.runtimes.vm.baking` calls :func:`extract` once per kernel (the result is cached).
A ``bzImage`` decompresses itself at every boot; under TCG (no hardware KVM) that alone took
about 0.6-0.9 s of each cold boot here. qemu boots an ELF ``vmlinux`` that carries a PVH entry note
(``XEN_ELFNOTE_PHYS32_ENTRY``; Debian builds ``CONFIG_PVH``) straight at its 32-bit entry, with
no decompressor and no real-mode setup. When the kernel has no such note, the caller keeps the
``vmlinuz`` and says so.

The pure parts (:func:`payload`, :func:`has_pvh_entry`) read bytes; :func:`extract` runs the
decompressor: Python's own for gzip and xz, the ``lz4``/``zstd`` tools for those formats.
"""

from __future__ import annotations

import lzma
import struct
import zlib
from pathlib import Path

from shoal.runtimes.vm import commands, hosting

SETUP_SECTS = 0x1F1
HEADER_MAGIC = 0x202
PAYLOAD_OFFSET = 0x248
PVH_NOTE = 18  # XEN_ELFNOTE_PHYS32_ENTRY
MAGICS: tuple[tuple[str, bytes], ...] = (
    ("gzip", b"\x1f\x8b"),
    ("xz", b"\xfd7zXZ\x00"),
    ("zstd", b"\x28\xb5\x2f\xfd"),
    ("lz4", b"\x02\x21\x4c\x18"),  # the legacy frame the kernel's own build writes
)


class NotABzImage(ValueError):
    """The file is not a bzImage with a compressed payload this module knows."""


def payload(bzimage: bytes) -> tuple[str, bytes]:
    """``(format, compressed bytes)`` of a bzImage's kernel (boot protocol 2.08+)."""
    if bzimage[HEADER_MAGIC : HEADER_MAGIC + 4] != b"HdrS":
        raise NotABzImage("no HdrS header")
    setup = (bzimage[SETUP_SECTS] or 4) + 1
    offset, length = struct.unpack_from("<II", bzimage, PAYLOAD_OFFSET)
    start = setup * 512 + offset
    data = bzimage[start : start + length]
    for name, magic in MAGICS:
        if data.startswith(magic):
            return name, data
    raise NotABzImage(f"unknown payload format {data[:6].hex()}")


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


async def extract(vmlinuz: Path, target: Path) -> bool:
    """Write the uncompressed kernel to ``target``; False (nothing written) when it cannot be
    booted as PVH (no note) or the payload is in a format not known here."""
    try:
        kind, data = payload(vmlinuz.read_bytes())
    except NotABzImage:
        return False
    if kind == "gzip":  # a decompressor object stops at the stream's end (the size trails it)
        elf = zlib.decompressobj(wbits=31).decompress(data)
    elif kind == "xz":
        elf = lzma.LZMADecompressor().decompress(data)
    else:  # lz4 (Debian's), zstd: their tools, through the one command runner
        packed = target.with_name(target.name + f".{kind}")
        packed.write_bytes(data[:-4])  # the build appends the size: not part of the stream
        out = [str(target)] if kind == "lz4" else ["-o", str(target)]
        try:
            await commands.run([hosting.require(kind), "-d", "-q", "-f", str(packed), *out])
        finally:
            packed.unlink(missing_ok=True)
        elf = target.read_bytes()
    if not has_pvh_entry(elf):
        target.unlink(missing_ok=True)
        return False
    target.write_bytes(elf)
    return True


__all__ = ["NotABzImage", "extract", "has_pvh_entry", "payload"]
