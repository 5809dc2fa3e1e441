"""The ``vm`` runtime: one service per qemu microVM, baked images, snapshot starts.

    hosting     KVM or TCG, TSC frequency, which Debian package provides each tool
    commands    the one choke point for external commands (argv, exit code, output)
    kernel_config  the guest kernel's minimal config (on top of tinyconfig)
    kernel      building it from Debian's kernel source, once per machine
    vmlinux     the check that the built ELF boots as PVH
    initramfs   the guest init alone as /init, written as a newc archive
    baking      kernel, guest init, base root filesystem and service disks, cached by content hash
    guest_init.c  /init (stage one: mounts, network) and PID 1 inside the guest, in C (compiled
                at bake time, into the initramfs and onto every service disk)
    qemu        command lines (pure), launching, and a QMP client
    channel     the host end of the guest init's control line
    snapshots   snapshot a fresh boot; restore clones from it
    standbys    a clone restored ahead (its command frozen), taken over by the next start
    running     VmRuntime, the Runtime protocol over all of the above

The registry (:mod:`shoal.runtimes.registry`) imports this package only when a manifest has a
``runtime: vm`` service; importing it probes nothing (qemu is looked for on first use).
"""

from shoal.runtimes.vm.baking import Baker, Image, ServiceInputs
from shoal.runtimes.vm.running import VmRuntime

__all__ = ["Baker", "Image", "ServiceInputs", "VmRuntime"]
