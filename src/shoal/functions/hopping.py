"""Memory cgroups from inside a template: one fresh cgroup per instance, made off the hot path.

Moving a process into a cgroup (v1) takes the cgroup threadgroup lock for writing, which waits
for an RCU grace period when none happened recently: about 13 ms on the machine this was
measured on, more than a whole cold start. So no instance is ever moved. The template sits in a
fresh cgroup with the function's memory limit, forks (the child is born inside it) and only
then *hops* into the next fresh cgroup, at its next quiet moment (``DEFER_MS`` in
``shoal.functions.template``), while the child already serves. The handler's import runs in a
first cgroup of its own, left (and removed) before the first fork, so its memory is not charged
to the first instance. The dispatcher learns each instance's cgroup from ``spawned``, reads its
OOM count there, and removes it when the instance has exited.

The limit values are what ``shoal.runtimes.sandbox`` writes for process instances: v1
``memory.limit_in_bytes`` (and ``memory.memsw.limit_in_bytes``, ``memory.swappiness`` 0 where
swap accounting exists), v2 ``memory.max`` (and ``memory.swap.max`` 0). Forked processes import
this module: plain ``os`` calls only.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def write_file(path: str, text: str) -> None:
    """One write to a (cgroupfs) file."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def enter_cgroup(spec: dict[str, Any] | None) -> str | None:
    """Make the instance's cgroup, set its memory limit and move in; the problem, if any."""
    if not spec:
        return None
    folder, limit = spec["dir"], str(spec["limit"])
    try:
        os.mkdir(folder)
        if spec.get("version") == 2:
            write_file(f"{folder}/memory.max", limit)
            optional: tuple[tuple[str, str], ...] = ((f"{folder}/memory.swap.max", "0"),)
        else:
            write_file(f"{folder}/memory.limit_in_bytes", limit)
            optional = (
                (f"{folder}/memory.memsw.limit_in_bytes", limit),
                (f"{folder}/memory.swappiness", "0"),
            )
        for path, value in optional:
            try:
                write_file(path, value)
            except OSError:
                continue  # no swap accounting here: nothing to limit
        write_file(f"{folder}/cgroup.procs", str(os.getpid()))
    except OSError as exc:
        return f"{exc.filename or folder}: {exc.strerror or exc}"
    return None


class Hopper:
    """The template's walk through fresh memory cgroups (see the module docstring)."""

    def __init__(self, spec: dict[str, Any] | None) -> None:
        self.spec = spec
        self.count = 0
        self.current: str | None = None
        self.problem: str | None = None

    def hop(self, *, leave_behind: bool = False) -> None:
        """Move into a new cgroup; with ``leave_behind``, remove the one left (it is empty)."""
        spec = self.spec
        if spec is None:
            return
        self.count += 1
        folder = f"{spec['parent']}/{spec['prefix']}{self.count}"
        cgroup = {"dir": folder, "version": spec.get("version", 1), "limit": spec["limit"]}
        problem = enter_cgroup(cgroup)
        if problem:
            self.spec, self.current, self.problem = None, None, problem
            print(f"shoal: instances run without a memory limit: {problem}", file=sys.stderr)
            return
        left, self.current = self.current, folder
        if leave_behind and left is not None:
            try:
                os.rmdir(left)
            except OSError:
                return


__all__ = ["Hopper", "enter_cgroup", "write_file"]
