"""Reading the cgroup layout of this machine, and the values shoal writes into it: all pure.

:mod:`shoal.runtimes.sandbox` asks two files where the ``cpu`` and ``memory`` controllers are
(``/proc/self/mountinfo``: which hierarchies are mounted where; ``/proc/self/cgroup``: which
cgroup the daemon itself sits in) and then writes limit values whose text is decided here. Both
cgroup versions are covered:

- **v1** (one hierarchy per controller, e.g. ``/sys/fs/cgroup/memory``): ``cpu.cfs_quota_us`` /
  ``cpu.cfs_period_us`` and ``memory.limit_in_bytes``; OOM kills are counted by the ``oom_kill``
  line of ``memory.oom_control`` (Linux >= 4.13), else guessed from ``memory.failcnt``.
- **v2** (one unified hierarchy, ``cgroup.controllers`` at its root): ``cpu.max`` and
  ``memory.max``; OOM kills are the ``oom_kill`` line of ``memory.events``.

Nothing here touches a file, so every branch is tested on sample texts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

CgroupVersion = Literal[1, 2]
CONTROLLERS = ("cpu", "memory")
CPU_PERIOD_US = 100_000
"""The CFS period shoal sets: 100 ms, the kernel's default; the quota is ``cpus`` times it."""
MIN_CPU_QUOTA_US = 1_000
"""The kernel refuses quotas under 1 ms."""


@dataclass(frozen=True, kw_only=True)
class Mount:
    """One mounted cgroup hierarchy (a line of ``/proc/self/mountinfo``)."""

    version: CgroupVersion
    mount_point: Path
    root: str  # the part of the hierarchy that is mounted there ("/" unless in a container)
    controllers: frozenset[str]  # v1: from the mount options; v2: empty (read cgroup.controllers)


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal: ``\\040``."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """The cgroup hierarchies in ``/proc/self/mountinfo`` (man 5 proc), in file order."""
    mounts: list[Mount] = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        dash = fields.index("-")
        if len(fields) < dash + 4 or dash < 6:
            continue
        fstype, super_options = fields[dash + 1], fields[dash + 3]
        root, mount_point = _unescape(fields[3]), Path(_unescape(fields[4]))
        if fstype == "cgroup2":
            mounts.append(
                Mount(version=2, mount_point=mount_point, root=root, controllers=frozenset())
            )
        elif fstype == "cgroup":
            options = {
                o for o in super_options.split(",") if o not in ("rw", "ro") and "=" not in o
            }
            mounts.append(
                Mount(version=1, mount_point=mount_point, root=root, controllers=frozenset(options))
            )
    return mounts


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``/proc/self/cgroup`` as controller -> path; the v2 (unified) entry is under ``""``.

    ``4:memory:/a/b`` gives ``{"memory": "/a/b"}``; ``1:cpu,cpuacct:/`` gives both names.
    """
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, names, path = parts
        if not names:
            paths[""] = path
        for name in names.split(","):
            if name:
                paths[name] = path
    return paths


def own_dir(mount: Mount, cgroup_path: str) -> Path:
    """Where the cgroup at ``cgroup_path`` (from /proc/self/cgroup) lives under ``mount``.

    Inside a container the mount shows only part of the hierarchy (``root``), and the path
    /proc reports may start with that part; it is stripped. A path outside the mounted part
    (the kernel shows it relative, with ``/..``) falls back to the mount point itself.
    """
    path = cgroup_path
    root = mount.root.rstrip("/")
    if root and (path == root or path.startswith(root + "/")):
        path = path[len(root) :]
    if "/.." in path or path.startswith(".."):
        return mount.mount_point
    return mount.mount_point / path.lstrip("/") if path.strip("/") else mount.mount_point


def safe_name(text: str) -> str:
    """A cgroup folder name from a manifest name: letters, digits, ``-_.`` only, no dotfile."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", text)
    return "_" + cleaned[1:] if cleaned.startswith(".") else cleaned or "_"


def cpu_quota_us(cpus: float, period_us: int = CPU_PERIOD_US) -> int:
    """The CFS quota for ``cpus`` CPUs (0.5 -> 50000 per 100000 us), at least 1 ms."""
    return max(MIN_CPU_QUOTA_US, round(cpus * period_us))


def cpu_max_text(cpus: float, period_us: int = CPU_PERIOD_US) -> str:
    """The v2 ``cpu.max`` value: ``"50000 100000"``."""
    return f"{cpu_quota_us(cpus, period_us)} {period_us}"


def parse_cpu_max(text: str) -> float | None:
    """CPUs allowed by a v2 ``cpu.max`` value; None for ``max`` (unlimited)."""
    quota, _, period = text.strip().partition(" ")
    if quota == "max":
        return None
    return int(quota) / int(period or CPU_PERIOD_US)


def parse_v1_cpu(quota_text: str, period_text: str) -> float | None:
    """CPUs allowed by v1 ``cpu.cfs_quota_us`` and ``cpu.cfs_period_us``; None for -1."""
    quota = int(quota_text.strip())
    return None if quota < 0 else quota / int(period_text.strip())


def parse_memory_limit(text: str) -> int | None:
    """A v1 ``memory.limit_in_bytes`` or v2 ``memory.max``; None when unlimited.

    v1 shows "unlimited" as a huge page-aligned number (2**63 - 4096 on x86_64).
    """
    value = text.strip()
    if value == "max":
        return None
    number = int(value)
    return None if number >= 2**62 else number


def parse_flat_keyed(text: str) -> dict[str, int]:
    """``key value`` lines, as in ``memory.oom_control``, ``memory.events`` and ``cpu.stat``."""
    result: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            result[key] = int(value)
    return result


def was_oom_killed(oom_kills: int | None, failcnt: int | None, killed_by_sigkill: bool) -> bool:
    """Did the memory limit kill a process of the instance?

    ``oom_kills`` (the kernel's count) decides when known; without it, hitting the limit
    (``failcnt`` > 0) and dying by SIGKILL is the best evidence there is.
    """
    if oom_kills is not None:
        return oom_kills > 0
    return bool(failcnt) and killed_by_sigkill


def parse_pids(text: str) -> list[int]:
    """The pids of a ``cgroup.procs`` file."""
    return [int(line) for line in text.split() if line.isdigit()]


__all__ = [
    "CONTROLLERS",
    "CPU_PERIOD_US",
    "MIN_CPU_QUOTA_US",
    "CgroupVersion",
    "Mount",
    "cpu_max_text",
    "cpu_quota_us",
    "own_dir",
    "parse_cpu_max",
    "parse_flat_keyed",
    "parse_memory_limit",
    "parse_mountinfo",
    "parse_pids",
    "parse_proc_cgroup",
    "parse_v1_cpu",
    "safe_name",
    "was_oom_killed",
]
