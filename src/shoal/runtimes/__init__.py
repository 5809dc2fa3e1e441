"""Runtimes: the drivers that start, stop and watch instances (DESIGN.md §3, "runtimes").

They sit below the supervisor, which decides what should run, and beside the store, which
remembers their handles across a daemon restart. Each driver implements one Protocol and knows
nothing of the others; the supervisor picks one by name with :func:`load_runtime`, which imports
it only then.

    base       the Runtime protocol; InstanceSpec, Handle, Exit, Stats, Limits
    registry   RUNTIMES (name -> "module:Class") and load_runtime(name, **options)
    process    ProcessRuntime: instances as process groups on this machine
    spawning   how a process instance is exec'd: argv, clean environment, output to its log file
    watching   noticing an exit (asyncio for children, pidfds for adopted processes)
    procfs     /proc: start times (pid reuse), process groups, CPU and memory use
    sandbox    resource limits: what this machine can enforce; one cgroup (v1 or v2) per instance
    cgroup     one instance's cgroup: attach, kill all inside, OOM kills, removal
    cgroupfs   the cgroup layout and values, parsed and formatted (pure)

    from shoal.runtimes import InstanceSpec, load_runtime

    runtime = load_runtime("process")
    handle = await runtime.start(spec)
    exit = await runtime.wait(handle)
"""

from shoal.runtimes.base import Exit, Handle, InstanceKind, InstanceSpec, Limits, Runtime, Stats
from shoal.runtimes.registry import RUNTIMES, load_runtime

__all__ = [
    "RUNTIMES",
    "Exit",
    "Handle",
    "InstanceKind",
    "InstanceSpec",
    "Limits",
    "Runtime",
    "Stats",
    "load_runtime",
]
