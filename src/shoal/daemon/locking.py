"""One daemon per manifest folder: an exclusive ``flock`` on ``.shoal/daemon.lock``.

The kernel drops the lock when the process dies, however it dies, so a daemon killed with -9
never blocks the next ``shoal up``.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from shoal.api.endpoint import API_URL, read_pid
from shoal.errors import DaemonRunning

LOCK = "daemon.lock"


class DaemonLock:
    """Held for the daemon's lifetime; ``release()`` (or process death) frees it."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self._fd: int | None = None

    def acquire(self) -> None:
        self.state.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.state / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = read_pid(self.state)
            try:
                url = (self.state / API_URL).read_text().strip()
            except OSError:
                url = "(starting)"
            who = f"pid {pid}" if pid else "another process"
            raise DaemonRunning(
                f"shoal is already running for {self.state.parent} ({who}, API {url}); "
                "use `shoal ps`, or `shoal down` first"
            ) from None
        os.set_inheritable(fd, False)
        self._fd = fd

    def held_elsewhere(self) -> bool:
        """True when another process holds the lock (without taking it)."""
        try:
            fd = os.open(self.state / LOCK, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


__all__ = ["LOCK", "DaemonLock"]
