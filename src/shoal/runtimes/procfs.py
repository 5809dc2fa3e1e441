"""What ``/proc`` says about a process: start time, process group, CPU and memory.

The process runtime uses it to tell its own instance from a process that merely reuses its pid
(the start time, in epoch seconds, is part of every :class:`~shoal.runtimes.base.Handle`), to
find every member of an instance's process group, and to report :class:`Stats`.

The parsers are pure (text in, values out) and tested on fixed samples; the readers are thin
and return None when the process is gone, which is a normal outcome, not an error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS: int = os.sysconf("SC_CLK_TCK")
PAGE_SIZE: int = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True, kw_only=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` that shoal reads (man 5 proc numbers in comments)."""

    pid: int  # 1
    comm: str  # 2, without the parentheses; may contain spaces and ')'
    state: str  # 3: R, S, D, Z (zombie), T, ...
    ppid: int  # 4
    pgrp: int  # 5
    session: int  # 6
    utime: int  # 14, clock ticks
    stime: int  # 15
    cutime: int  # 16, waited-for children
    cstime: int  # 17
    starttime: int  # 22, clock ticks after boot


def parse_stat(text: str) -> ProcStat:
    """Parse ``/proc/<pid>/stat``. ``comm`` may hold anything, so split after its last ``)``."""
    open_paren = text.index("(")
    close_paren = text.rindex(")")
    rest = text[close_paren + 2 :].split()

    def field(number: int) -> int:
        return int(rest[number - 3])

    return ProcStat(
        pid=int(text[:open_paren]),
        comm=text[open_paren + 1 : close_paren],
        state=rest[0],
        ppid=field(4),
        pgrp=field(5),
        session=field(6),
        utime=field(14),
        stime=field(15),
        cutime=field(16),
        cstime=field(17),
        starttime=field(22),
    )


def parse_boot_time(text: str) -> int:
    """The ``btime`` line of ``/proc/stat``: when the machine booted, in epoch seconds."""
    for line in text.splitlines():
        if line.startswith("btime "):
            return int(line.split()[1])
    raise ValueError("no btime line in /proc/stat")


def start_time_epoch(starttime_ticks: int, boot_time: int, clock_ticks: int = CLOCK_TICKS) -> float:
    """A process's start in epoch seconds, from its ``starttime`` (ticks after boot)."""
    return boot_time + starttime_ticks / clock_ticks


def same_start(recorded: float, observed: float, clock_ticks: int = CLOCK_TICKS) -> bool:
    """True when two start times name the same process: within one clock tick of each other."""
    return abs(recorded - observed) <= 1.0 / clock_ticks + 1e-6


def parse_statm_rss(text: str, page_size: int = PAGE_SIZE) -> int:
    """Resident set size in bytes from ``/proc/<pid>/statm`` (its second field, in pages)."""
    return int(text.split()[1]) * page_size


def read_stat(pid: int, proc: Path = PROC) -> ProcStat | None:
    """``/proc/<pid>/stat``, or None when there is no such process (any more)."""
    try:
        return parse_stat((proc / str(pid) / "stat").read_text())
    except (FileNotFoundError, ProcessLookupError):
        return None
    except (ValueError, IndexError):  # vanished mid-read: the file came back empty
        return None


def boot_time(proc: Path = PROC) -> int:
    """When this machine booted, in epoch seconds."""
    return parse_boot_time((proc / "stat").read_text())


def process_start_time(pid: int, proc: Path = PROC) -> float | None:
    """When ``pid`` started, in epoch seconds; None when it is gone or a zombie."""
    stat = read_stat(pid, proc)
    if stat is None or stat.state == "Z":
        return None
    return start_time_epoch(stat.starttime, boot_time(proc))


def is_alive(pid: int, start_time: float | None, proc: Path = PROC) -> bool:
    """True when ``pid`` runs (not a zombie) and, if given, started at ``start_time``."""
    observed = process_start_time(pid, proc)
    if observed is None:
        return False
    return start_time is None or same_start(start_time, observed)


def group_members(pgid: int, proc: Path = PROC) -> list[int]:
    """The live (non-zombie) pids whose process group is ``pgid``: a scan of ``/proc``."""
    members: list[int] = []
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        stat = read_stat(int(entry.name), proc)
        if stat is not None and stat.pgrp == pgid and stat.state != "Z":
            members.append(stat.pid)
    return sorted(members)


def with_environ(match: Mapping[str, str], proc: Path = PROC) -> list[int]:
    """Live pids whose environment holds every ``KEY=value`` of ``match`` (a scan of /proc:
    only used to find an instance started just before a daemon crash, before its pid was
    recorded)."""
    wanted = {f"{key}={value}".encode() for key, value in match.items()}
    found: list[int] = []
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"{proc}/{entry.name}/environ", "rb") as f:
                variables = set(f.read().split(b"\0"))
        except OSError:
            continue
        if wanted <= variables:
            stat = read_stat(int(entry.name), proc)
            if stat is not None and stat.state != "Z":
                found.append(stat.pid)
    return sorted(found)


def usage(pids: list[int], proc: Path = PROC) -> tuple[float, int] | None:
    """Summed CPU seconds (own + reaped children) and RSS bytes of ``pids``; None if all gone."""
    cpu_ticks = 0
    rss = 0
    seen = False
    for pid in pids:
        stat = read_stat(pid, proc)
        if stat is None:
            continue
        try:
            rss += parse_statm_rss((proc / str(pid) / "statm").read_text())
        except (OSError, ValueError, IndexError):
            continue
        seen = True
        cpu_ticks += stat.utime + stat.stime + stat.cutime + stat.cstime
    if not seen:
        return None
    return cpu_ticks / CLOCK_TICKS, rss


__all__ = [
    "CLOCK_TICKS",
    "PAGE_SIZE",
    "PROC",
    "ProcStat",
    "boot_time",
    "group_members",
    "is_alive",
    "parse_boot_time",
    "parse_stat",
    "parse_statm_rss",
    "process_start_time",
    "read_stat",
    "same_start",
    "start_time_epoch",
    "usage",
    "with_environ",
]
