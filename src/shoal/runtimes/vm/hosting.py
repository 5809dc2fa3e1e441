"""What this host offers VMs: hardware KVM or TCG, the TSC frequency, the tools and their packages.

Pure parsing of ``/sys`` and ``/proc`` text, plus :func:`detect` and :func:`require` that read
them. :mod:`shoal.runtimes.vm.qemu` builds command lines from a :class:`Host`.

KVM is used only where ``kvm_intel`` or ``kvm_amd`` is loaded and ``/dev/kvm`` opens: a host
with only ``kvm_pvm`` (a software hypervisor that boots only specially built guest kernels; with
a Debian kernel ``-enable-kvm`` hangs instead of failing) gets TCG. Under TCG the guest kernel is
told the host's TSC frequency (``tsc_early_khz``): without it about one boot in four hangs.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from shoal.errors import RuntimeNotAvailable

Accel = Literal["kvm", "tcg"]

PACKAGES: dict[str, str] = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "mmdebstrap": "mmdebstrap",
    "mkfs.ext4": "e2fsprogs",
    "apt-get": "apt",
    "dpkg": "dpkg",
    "tar": "tar",
    "xz": "xz-utils",
    "gcc": "gcc libc6-dev",
    "make": "make",
    "flex": "flex",
    "bison": "bison",
    "bc": "bc",
}
"""Each external tool the VM runtime uses -> the Debian package that provides it."""
BAKE_TOOLS = ("qemu-system-x86_64", "qemu-img", "mmdebstrap", "mkfs.ext4")
"""What running and baking VMs needs besides the kernel's build tools
(:func:`shoal.runtimes.vm.kernel.require_tools`) and gcc (checked when the init compiles)."""

HARDWARE_KVM = ("kvm_intel", "kvm_amd")
DEFAULT_TSC_KHZ = 2_000_000


@dataclass(frozen=True, kw_only=True)
class Host:
    accel: Accel
    tsc_khz: int
    why: str  # why this accelerator: shown by `shoal build` and in the logs


def choose_accel(modules: set[str], kvm_usable: bool) -> tuple[Accel, str]:
    """KVM only with a hardware KVM module loaded and ``/dev/kvm`` usable; TCG otherwise."""
    hardware = sorted(modules.intersection(HARDWARE_KVM))
    if hardware and kvm_usable:
        return "kvm", f"KVM ({hardware[0]})"
    if "kvm_pvm" in modules and not hardware:
        return "tcg", "TCG (/dev/kvm is kvm_pvm, which boots only guest kernels built for PVM)"
    if hardware:
        return "tcg", f"TCG ({hardware[0]} is loaded but /dev/kvm cannot be opened)"
    return "tcg", "TCG (no hardware KVM on this host)"


def parse_tsc_khz(cpuinfo: str) -> int:
    """The first ``cpu MHz`` of ``/proc/cpuinfo``, in kHz (a default when absent)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "cpu MHz":
            try:
                return round(float(value) * 1000)
            except ValueError:
                break
    return DEFAULT_TSC_KHZ


def loaded_modules(sys_module: Path = Path("/sys/module")) -> set[str]:
    try:
        return {entry.name for entry in sys_module.iterdir()}
    except OSError:
        return set()


def detect(
    sys_module: Path = Path("/sys/module"),
    cpuinfo: Path = Path("/proc/cpuinfo"),
    kvm: Path = Path("/dev/kvm"),
) -> Host:
    kvm_usable = kvm.exists() and os.access(kvm, os.R_OK | os.W_OK)
    accel, why = choose_accel(loaded_modules(sys_module), kvm_usable)
    try:
        khz = parse_tsc_khz(cpuinfo.read_text())
    except OSError:
        khz = DEFAULT_TSC_KHZ
    return Host(accel=accel, tsc_khz=khz, why=why)


def require(tool: str) -> str:
    """The path of ``tool``, or :class:`RuntimeNotAvailable` naming the package to install."""
    found = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    if found is None:
        package = PACKAGES.get(tool, tool)
        raise RuntimeNotAvailable(
            "vm", f"{tool} is not installed (on Debian: apt-get install {package})"
        )
    return found


__all__ = [
    "BAKE_TOOLS",
    "PACKAGES",
    "Accel",
    "Host",
    "choose_accel",
    "detect",
    "parse_tsc_khz",
    "require",
]
