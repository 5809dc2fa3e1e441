"""Noticing that an instance's process ended, and saying how: for children and adopted ones.

The process runtime's watcher task for each instance waits here. A child this daemon spawned is
reaped by asyncio (its exit status is known); a process adopted from a previous daemon is not
our child, so nothing can reap it or learn its status, but a *pidfd* (``pidfd_open(2)``, Linux
>= 5.3) becomes readable when it exits, and the event loop watches that like a socket. Where
pidfds are missing, :func:`wait_for_exit` polls ``/proc`` every ``poll_interval`` seconds.

:func:`describe_exit` (pure) turns what was learnt into an :class:`~shoal.runtimes.base.Exit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import select
import signal

from shoal.runtimes import procfs
from shoal.runtimes.base import Exit

ADOPTED_REASON = "exited (adopted; status unknown)"


def signal_name(number: int) -> str:
    """``SIGKILL`` for 9; ``signal 64`` for numbers without a name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def describe_exit(returncode: int | None, *, oom: bool = False, limit: str = "") -> Exit:
    """An :class:`Exit` from asyncio's ``returncode`` (negative: killed by that signal; None:
    unknown, for adopted processes) and whether the memory limit killed something."""
    code: int | None = None
    signum: int | None = None
    if returncode is None:
        reason = ADOPTED_REASON
    elif returncode >= 0:
        code = returncode
        reason = f"exited with code {returncode}"
    else:
        signum = -returncode
        reason = f"killed by {signal_name(signum)}"
    if oom:
        limit_text = f" ({limit})" if limit else ""
        if code is None:
            reason = f"out of memory{limit_text}"
        else:
            reason = f"{reason} after running out of memory{limit_text}"
    return Exit(code=code, signal=signum, oom_killed=oom, reason=reason)


def open_pidfd(pid: int) -> int | None:
    """A pidfd for ``pid``; None if this kernel or Python has none (then poll /proc).

    Raises :class:`ProcessLookupError` when there is no such process.
    """
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        fd: int = opener(pid)
    except OSError as exc:
        if exc.errno == errno.ESRCH:
            raise ProcessLookupError(pid) from exc
        if exc.errno in (errno.ENOSYS, errno.EPERM, errno.EINVAL):
            return None
        raise
    return fd


def pidfd_exited(pidfd: int) -> bool:
    """True when the process behind ``pidfd`` has already exited (the fd polls readable)."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(0))


async def wait_for_exit(
    pid: int, start_time: float | None, *, pidfd: int | None, poll_interval: float
) -> None:
    """Return once the process ``pid`` (started at ``start_time``) no longer runs.

    With a ``pidfd`` the loop is told by the kernel; without one, ``/proc`` is polled. The
    caller owns ``pidfd`` and closes it.
    """
    if pidfd is None:
        while procfs.is_alive(pid, start_time):
            await asyncio.sleep(poll_interval)
        return
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, readable)
    try:
        await exited
    finally:
        loop.remove_reader(pidfd)


async def wait_group_gone(pgid: int, *, timeout: float, interval: float = 0.01) -> list[int]:
    """Wait until no live process has process group ``pgid``; the pids still left, if any."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = procfs.group_members(pgid)
        if not left or loop.time() >= deadline:
            return left
        for pid in left:  # a member might have ignored the group kill's timing: repeat it
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(interval)


def signal_group(pgid: int, signum: int) -> bool:
    """Send ``signum`` to process group ``pgid``; False when the group no longer exists."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:  # the group is now someone else's: not ours to signal
        return False
    return True


__all__ = [
    "ADOPTED_REASON",
    "describe_exit",
    "open_pidfd",
    "pidfd_exited",
    "signal_group",
    "signal_name",
    "wait_for_exit",
    "wait_group_gone",
]
