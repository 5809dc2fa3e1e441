"""Resource limits for process instances: one cgroup per instance, made and removed here.

The process runtime calls :meth:`Sandbox.prepare` before it spawns an instance whose service has
``resources`` (cpus, memory), :meth:`InstanceCgroup.attach` right after the spawn, and
:meth:`InstanceCgroup.remove` once the instance has exited. Where the cgroups live:

- below the daemon's own cgroup (read from ``/proc/self/cgroup``), in
  ``<own cgroup>/shoal/<app>/<name>-<ordinal>-<random>``, so limits nest inside whatever
  limits the daemon already runs under; the random suffix keeps a restarted instance from
  colliding with its predecessor's cgroup while that is still being removed. The ``shoal`` and
  ``<app>`` folders are left in place for the next instance.
- **cgroup v1** (separate ``cpu`` and ``memory`` hierarchies): the quota goes to
  ``cpu.cfs_quota_us``, the limit to ``memory.limit_in_bytes`` and, where swap accounting
  exists, the same value to ``memory.memsw.limit_in_bytes`` (no swapping past the limit), plus
  ``memory.swappiness`` 0.
- **cgroup v2** (unified): ``cpu.max``, ``memory.max`` and ``memory.swap.max`` 0. The controllers
  must be enabled down the path, which the kernel allows only from a cgroup without processes of
  its own: the daemon's cgroup must be the root or already delegate them (``systemd-run --scope
  -p Delegate=yes``); otherwise :attr:`Sandbox.why_not` says so.

The child is moved in right after the spawn, not before its exec: for the few microseconds
between the two it runs in the daemon's cgroup. A command cannot fork before its exec has even
run, so nothing escapes; the only cost is that its first page allocations are charged outside.

When limits are asked for but cannot be enforced, one warning per service is logged (logger
``shoal.runtimes.sandbox``) and the instance runs unlimited: never silently.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from shoal.errors import SandboxError
from shoal.runtimes import cgroupfs
from shoal.runtimes.base import InstanceSpec, Limits
from shoal.runtimes.cgroup import InstanceCgroup

logger = logging.getLogger("shoal.runtimes.sandbox")

PARENT_NAME = "shoal"


@dataclass(frozen=True, kw_only=True)
class Controller:
    """Where instance cgroups for one controller go: ``parent`` is ``<own cgroup>/shoal``."""

    name: str
    version: cgroupfs.CgroupVersion
    parent: Path


class Sandbox:
    """What this machine lets shoal enforce, and the factory of instance cgroups."""

    def __init__(
        self,
        *,
        cpu: Controller | None = None,
        memory: Controller | None = None,
        problems: tuple[str, ...] = (),
    ) -> None:
        self.cpu = cpu
        self.memory = memory
        self.problems = problems
        self._warned: set[tuple[str, str]] = set()

    @property
    def why_not(self) -> str | None:
        """Why some limit cannot be enforced here; None when cpu and memory both can."""
        return "; ".join(self.problems) or None

    def __repr__(self) -> str:
        return f"Sandbox(cpu={self.cpu!r}, memory={self.memory!r}, why_not={self.why_not!r})"

    @classmethod
    def disabled(cls, why: str) -> Sandbox:
        """A sandbox that enforces nothing (and says why when limits are asked for)."""
        return cls(problems=(why,))

    @classmethod
    def detect(cls, *, proc: Path = Path("/proc")) -> Sandbox:
        """Find the cpu and memory controllers for the daemon's cgroup and check they are ours
        to write. Reads only; nothing is created until an instance needs it."""
        try:
            mounts = cgroupfs.parse_mountinfo((proc / "self" / "mountinfo").read_text())
            own = cgroupfs.parse_proc_cgroup((proc / "self" / "cgroup").read_text())
        except OSError as exc:
            return cls.disabled(f"cannot read this process's cgroups: {exc}")
        found: dict[str, Controller] = {}
        problems: list[str] = []
        for name in cgroupfs.CONTROLLERS:
            controller, problem = _find_controller(name, mounts, own)
            if controller is not None:
                found[name] = controller
            elif problem:
                problems.append(problem)
        return cls(cpu=found.get("cpu"), memory=found.get("memory"), problems=tuple(problems))

    def missing(self, limits: Limits) -> str | None:
        """Why ``limits`` cannot all be enforced; None when they can (or none are asked)."""
        missing = []
        if limits.cpus is not None and self.cpu is None:
            missing.append("cpus")
        if limits.memory_bytes is not None and self.memory is None:
            missing.append("memory")
        if not missing:
            return None
        return f"{' and '.join(missing)} limits cannot be enforced here: {self.why_not}"

    def prepare(self, spec: InstanceSpec) -> InstanceCgroup | None:
        """A cgroup with ``spec``'s limits written, or None: no limits asked, or none possible
        (then one warning per service, and the instance runs unlimited)."""
        limits = spec.limits
        if limits.cpus is None and limits.memory_bytes is None:
            return None
        problem = self.missing(limits)
        if problem is not None:
            self.warn_once(spec, problem)
        try:
            return self.create(spec)
        except SandboxError as exc:
            self.warn_once(spec, str(exc))
            return None

    def create(self, spec: InstanceSpec) -> InstanceCgroup | None:
        """Make the instance's cgroup folder(s) and write its limits (what can be enforced)."""
        leaf = f"{cgroupfs.safe_name(spec.name)}-{spec.ordinal}-{secrets.token_hex(3)}"
        app = cgroupfs.safe_name(spec.app)
        cpu_dir = memory_dir = None
        version: cgroupfs.CgroupVersion = 1
        made: list[Path] = []
        try:
            if spec.limits.cpus is not None and self.cpu is not None:
                version = self.cpu.version
                cpu_dir = _make(self.cpu, app, leaf, made)
                _write_cpu(cpu_dir, self.cpu.version, spec.limits.cpus)
            if spec.limits.memory_bytes is not None and self.memory is not None:
                version = self.memory.version
                memory_dir = _make(self.memory, app, leaf, made)
                _write_memory(memory_dir, self.memory.version, spec.limits.memory_bytes)
        except OSError as exc:
            for folder in reversed(made):
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise SandboxError(
                label=spec.label, path=str(exc.filename or "?"), reason=exc.strerror or str(exc)
            ) from exc
        if cpu_dir is None and memory_dir is None:
            return None
        return InstanceCgroup(
            label=spec.label,
            version=version,
            cpu_dir=cpu_dir,
            memory_dir=memory_dir,
            memory_limit=spec.limits.memory_bytes if memory_dir is not None else None,
        )

    def warn_once(self, spec: InstanceSpec, problem: str) -> None:
        """Log that ``spec``'s service runs without limits, once per service."""
        key = (spec.app, spec.name)
        if key in self._warned:
            return
        self._warned.add(key)
        logger.warning("[%s] running without resource limits: %s", spec.name, problem)


def _find_controller(
    name: str, mounts: list[cgroupfs.Mount], own: dict[str, str]
) -> tuple[Controller | None, str | None]:
    """The controller ``name`` if shoal can use it, else the reason it cannot."""
    v1 = next((m for m in mounts if m.version == 1 and name in m.controllers), None)
    if v1 is not None:
        base = cgroupfs.own_dir(v1, own.get(name, "/"))
        problem = _unwritable(base)
        if problem:
            return None, problem
        return Controller(name=name, version=1, parent=base / PARENT_NAME), None
    for mount in (m for m in mounts if m.version == 2):
        base = cgroupfs.own_dir(mount, own.get("", "/"))
        try:
            available = (base / "cgroup.controllers").read_text().split()
            delegated = (base / "cgroup.subtree_control").read_text().split()
        except OSError:
            continue
        if name not in available:
            continue
        if base != mount.mount_point and name not in delegated:
            return None, (
                f"cgroup v2: the {name} controller is not delegated below {base} (the daemon's "
                "own cgroup); run shoal in a delegated cgroup, e.g. `systemd-run --user --scope "
                "-p Delegate=yes shoal up`"
            )
        problem = _unwritable(base)
        if problem:
            return None, problem
        return Controller(name=name, version=2, parent=base / PARENT_NAME), None
    return None, f"no mounted cgroup hierarchy offers the {name} controller"


def _unwritable(base: Path) -> str | None:
    target = base / PARENT_NAME if (base / PARENT_NAME).is_dir() else base
    if os.access(target, os.W_OK):
        return None
    return f"{target} is not writable (run shoal as root or in a delegated cgroup)"


def _make(controller: Controller, app: str, leaf: str, made: list[Path]) -> Path:
    """mkdir ``<parent>/<app>/<leaf>``; on v2, enable the controller down the path first."""
    app_dir = controller.parent / app
    folder = app_dir / leaf
    if folder in made:
        return folder
    if controller.version == 2:
        _enable(controller.parent.parent, controller.name)
        controller.parent.mkdir(exist_ok=True)
        _enable(controller.parent, controller.name)
        app_dir.mkdir(exist_ok=True)
        _enable(app_dir, controller.name)
    else:
        app_dir.mkdir(parents=True, exist_ok=True)
    folder.mkdir()
    made.append(folder)
    return folder


def _enable(folder: Path, controller: str) -> None:
    """Let ``folder``'s children use ``controller`` (v2 ``cgroup.subtree_control``)."""
    control = folder / "cgroup.subtree_control"
    try:
        enabled = control.read_text().split()
    except FileNotFoundError:
        enabled = []
    if controller not in enabled:
        control.write_text(f"+{controller}")


def _write_cpu(folder: Path, version: cgroupfs.CgroupVersion, cpus: float) -> None:
    if version == 2:
        (folder / "cpu.max").write_text(cgroupfs.cpu_max_text(cpus))
        return
    (folder / "cpu.cfs_period_us").write_text(str(cgroupfs.CPU_PERIOD_US))
    (folder / "cpu.cfs_quota_us").write_text(str(cgroupfs.cpu_quota_us(cpus)))


def _write_memory(folder: Path, version: cgroupfs.CgroupVersion, limit: int) -> None:
    if version == 2:
        (folder / "memory.max").write_text(str(limit))
        _write_optional(folder / "memory.swap.max", "0")
        return
    (folder / "memory.limit_in_bytes").write_text(str(limit))
    _write_optional(folder / "memory.memsw.limit_in_bytes", str(limit))
    _write_optional(folder / "memory.swappiness", "0")


def _write_optional(path: Path, value: str) -> None:
    """Swap settings: absent without swap accounting, refused on some kernels; best effort."""
    if path.exists():
        with contextlib.suppress(OSError):
            path.write_text(value)


__all__ = ["PARENT_NAME", "Controller", "Sandbox"]
