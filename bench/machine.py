"""The machine a benchmark ran on, and how noisy it was while it ran.

``bench.harness`` takes a ``Snapshot`` before a script measures anything and ``describe``s the
machine after, so every script's JSON line carries: what the machine is (CPUs, model, memory,
Python), the load average before and after, the share of CPU time stolen by the hypervisor and
spent waiting on I/O during the run (from ``/proc/stat``), and a **calibration**: a fixed
pure-Python loop timed repeatedly before and after. On a quiet machine the loop takes the same time
every round; its coefficient of variation (``calibration.cv``) estimates how much noise to expect
in any figure, and a change of its median between before and after shows drift during the run.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.stats import cv, median

CALIBRATION_LOOP = 100_000  # iterations per round: a few milliseconds on a 2020s CPU


def calibration_round(n: int = CALIBRATION_LOOP) -> float:
    """Seconds taken by one round of a fixed, allocation-free arithmetic loop."""
    start = time.perf_counter()
    total = 0
    for i in range(n):
        total += i * i % 7
    elapsed = time.perf_counter() - start
    if total < 0:  # never true; keeps the loop's result alive
        raise AssertionError(total)
    return elapsed


def calibrate(rounds: int) -> list[float]:
    """``rounds`` calibration timings, in milliseconds."""
    return [calibration_round() * 1000 for _ in range(rounds)]


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages (empty where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def cpu_jiffies(stat: Path = Path("/proc/stat")) -> dict[str, int] | None:
    """The machine-wide CPU time counters of ``/proc/stat``, or None off Linux."""
    try:
        first = stat.read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    if first[:1] != ["cpu"]:
        return None
    return {name: int(v) for name, v in zip(names, first[1:], strict=False)}


def shares(before: dict[str, int] | None, after: dict[str, int] | None) -> dict[str, float]:
    """Percent of all CPU time between two ``cpu_jiffies`` readings that was steal and iowait."""
    if before is None or after is None:
        return {}
    delta = {k: after[k] - before[k] for k in before if k in after}
    total = sum(delta.values())
    if total <= 0:
        return {}
    return {
        "steal_pct": round(100 * delta.get("steal", 0) / total, 2),
        "iowait_pct": round(100 * delta.get("iowait", 0) / total, 2),
    }


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def mem_total_mb(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError):
        pass
    return None


def libpython(maps: Path = Path("/proc/self/maps")) -> str:
    """How this interpreter holds libpython: ``shared`` (a ``libpython*.so`` is mapped, as in
    builds with ``--enable-shared`` alone, e.g. pyenv's), ``static`` (linked into the binary, as
    in Debian's PGO+LTO ``/usr/bin/python3``) or ``unknown``. Shared costs CPU in every call into
    the interpreter; see scripts/pick-python."""
    try:
        text = maps.read_text()
    except OSError:
        return "unknown"
    return "shared" if "/libpython" in text else "static"


def interpreter() -> str:
    """``3.11.2 (CPython, /usr/bin/python3.11, libpython static)``: the version, and the
    interpreter a venv was made from, with its linkage."""
    base = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    impl = platform.python_implementation()
    return f"{platform.python_version()} ({impl}, {base}, libpython {libpython()})"


def static() -> dict[str, Any]:
    """What the machine is: the part that does not change during a run."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    return {
        "python": interpreter(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpus_usable": usable,
        "cpu_model": cpu_model(),
        "mem_total_mb": mem_total_mb(),
    }


@dataclass(frozen=True)
class Snapshot:
    """The noise indicators taken before a run, to compare with after."""

    loadavg: list[float]
    jiffies: dict[str, int] | None
    calibration_ms: list[float]

    @classmethod
    def take(cls, rounds: int) -> Snapshot:
        return cls(loadavg(), cpu_jiffies(), calibrate(rounds))


def describe(before: Snapshot, rounds: int) -> dict[str, Any]:
    """The machine, plus the noise between ``before`` and now (runs the calibration again)."""
    after_ms = calibrate(rounds)
    every = before.calibration_ms + after_ms
    return {
        **static(),
        "loadavg_before": before.loadavg,
        "loadavg_after": loadavg(),
        **shares(before.jiffies, cpu_jiffies()),
        "calibration": {
            "rounds": len(every),
            "loop": CALIBRATION_LOOP,
            "median_ms_before": round(median(before.calibration_ms), 3),
            "median_ms_after": round(median(after_ms), 3),
            "cv": round(cv(every), 4),
        },
    }
