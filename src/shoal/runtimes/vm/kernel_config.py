"""What shoal's guest kernel is built with: a minimal config on ``make tinyconfig``, one edit.

:mod:`shoal.runtimes.vm.baking` builds the kernel from Debian's ``linux-source-6.1`` package
(``apt-get download``, never installed) with these options, once per machine (cached by the hash
of this recipe). Pure data and checks, no I/O.

Why build one rather than boot Debian's cloud kernel: under TCG every instruction the guest runs
for the first time is translated, and a distribution kernel runs a lot at boot (ACPI, driver
probing, alternatives patching over a large image) before it reaches ``/init``: 2.7 s here,
against about 1 s for this one. Everything shoal's VMs need is built in, so the initramfs loads
no modules: it is the static guest init alone (see :mod:`shoal.runtimes.vm.initramfs`).

The guest sees a ``-M microvm,acpi=off`` machine: qemu lists the virtio-mmio devices on the
kernel command line (``virtio_mmio.device=``), the CPUs come from the MP table, and the guest
ends by a reset (``reboot=t``: a triple fault, which ``-no-reboot`` turns into qemu's exit),
since there is no ACPI to power off with.
"""

from __future__ import annotations

SOURCE_PACKAGE = "linux-source-6.1"
"""Debian's kernel source package (bookworm): a tarball under ``/usr/src`` once unpacked."""

ENABLE: tuple[str, ...] = (
    # the machine: 64-bit, SMP from the MP table, PVH entry (qemu boots the ELF directly)
    "64BIT",
    "SMP",
    "X86_MPPARSE",
    "HYPERVISOR_GUEST",
    "PARAVIRT",
    "PVH",
    "KVM_GUEST",
    "NO_HZ_IDLE",
    "HIGH_RES_TIMERS",
    # console and errors
    "PRINTK",
    "BUG",
    "TTY",
    "SERIAL_8250",
    "SERIAL_8250_CONSOLE",
    "UNIX98_PTYS",
    # virtio-mmio: disks, network, entropy
    "BLOCK",
    "BLK_DEV",
    "BLK_DEV_INITRD",
    "VIRTIO_MENU",
    "VIRTIO",
    "VIRTIO_MMIO",
    "VIRTIO_MMIO_CMDLINE_DEVICES",
    "VIRTIO_BLK",
    "NETDEVICES",
    "NET_CORE",
    "VIRTIO_NET",
    "HW_RANDOM",
    "HW_RANDOM_VIRTIO",
    # networking as a service expects it (IPv6 too: an app may listen on ::)
    "NET",
    "INET",
    "IPV6",
    "UNIX",
    "PACKET",
    # file systems
    "EXT4_FS",
    "DEVTMPFS",
    "PROC_FS",
    "PROC_SYSCTL",
    "SYSFS",
    "TMPFS",
    "SHMEM",
    "FILE_LOCKING",
    "INOTIFY_USER",
    "FHANDLE",
    # what a Linux userland (python3, glibc) calls
    "BINFMT_ELF",
    "BINFMT_SCRIPT",
    "MULTIUSER",
    "FUTEX",
    "EPOLL",
    "EVENTFD",
    "SIGNALFD",
    "TIMERFD",
    "AIO",
    "POSIX_TIMERS",
    "SYSVIPC",
    "POSIX_MQUEUE",
    "ADVISE_SYSCALLS",
    "MEMBARRIER",
    "RSEQ",
    "SLUB",
    "PARTITION_ADVANCED",  # to switch the partition table parsers off: the disks have none
)
"""Options switched on (each must read ``=y`` after ``olddefconfig``: :func:`missing` checks)."""

DISABLE: tuple[str, ...] = (
    "MODULES",
    "ACPI",
    "SLOB",
    "SLUB_DEBUG",
    "SPECULATION_MITIGATIONS",
    "RETPOLINE",
    "VT",
    "INPUT",
    "SERIO",
    "HID",
    "PPS",
    "PTP_1588_CLOCK",
    "THERMAL",
    "WIRELESS",
    "ETHTOOL_NETLINK",
    "IPV6_SIT",
    "KERNEL_XZ",
    "LEGACY_PTYS",  # 256 of them made at boot: 0.14 s under TCG
    "MSDOS_PARTITION",
    "EFI_PARTITION",
)
"""Options switched off: what tinyconfig keeps and a microVM has no use for."""

VALUES: tuple[tuple[str, str], ...] = (
    ("SERIAL_8250_NR_UARTS", "2"),
    ("SERIAL_8250_RUNTIME_UARTS", "2"),
    ("KERNEL_GZIP", "y"),
)
"""Options set to a value: two serial ports (the console, and the guest init's control line)."""


PATCHES: tuple[tuple[str, str, str], ...] = (
    (
        "arch/x86/mm/init.c",
        "free_reserved_area((void *)begin, (void *)end,\n\t\t\t\t   POISON_FREE_INITMEM, what);",
        "free_reserved_area((void *)begin, (void *)end, -1, what);",
    ),
)
"""Source edits ``(file, text, replacement)``, each applied exactly once before the build.

The one there is: freed init memory (the kernel's init code, 0.7 MB, and the initramfs) is not
filled with a poison byte. Under TCG those stores land on pages of translated code, and each
one takes qemu's slow path for self-modifying code: 0.15-0.45 s of every cold boot here. The
poison only helps to debug a use of init memory after boot."""


def patch(source: str, text: str, replacement: str) -> str:
    """``source`` with ``text`` replaced; ValueError unless it occurs exactly once."""
    count = source.count(text)
    if count != 1:
        raise ValueError(f"expected the text once, found it {count} times: {text!r}")
    return source.replace(text, replacement)


def config_args() -> list[str]:
    """Arguments for the source tree's ``scripts/config`` that apply :data:`ENABLE` and the rest."""
    args: list[str] = []
    for option in ENABLE:
        args += ["--enable", option]
    for option in DISABLE:
        args += ["--disable", option]
    for option, value in VALUES:
        args += ["--set-val", option, value]
    return args


def missing(config: str) -> list[str]:
    """Options of :data:`ENABLE` that a finished ``.config`` does not have as ``=y``.

    ``olddefconfig`` silently drops an option whose dependencies are off; a kernel missing one
    would boot and then fail in the guest in some obscure way, so the build stops instead.
    """
    have = {line.split("=", 1)[0] for line in config.splitlines() if line.endswith("=y")}
    return [option for option in ENABLE if f"CONFIG_{option}" not in have]


__all__ = [
    "DISABLE",
    "ENABLE",
    "PATCHES",
    "SOURCE_PACKAGE",
    "VALUES",
    "config_args",
    "missing",
    "patch",
]
