"""One daemon per folder; the API's files are written atomically and with the right modes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shoal.api import endpoint
from shoal.daemon.locking import DaemonLock
from shoal.errors import DaemonNotRunning, DaemonRunning


def test_second_lock_in_another_process_is_refused(tmp_path: Path) -> None:
    state = tmp_path / ".shoal"
    lock = DaemonLock(state)
    lock.acquire()
    try:
        code = (
            "import sys; from pathlib import Path; from shoal.daemon.locking import DaemonLock\n"
            "from shoal.errors import DaemonRunning\n"
            f"try: DaemonLock(Path({str(state)!r})).acquire()\n"
            "except DaemonRunning as e: print(e); sys.exit(3)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=False
        )
        assert result.returncode == 3 and "already running" in result.stdout
    finally:
        lock.release()
    DaemonLock(state).acquire()  # free again once released


def test_lock_dies_with_its_process(tmp_path: Path) -> None:
    state = tmp_path / ".shoal"
    code = (
        "import os, signal; from pathlib import Path; from shoal.daemon.locking import DaemonLock\n"
        f"DaemonLock(Path({str(state)!r})).acquire(); os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=False)
    lock = DaemonLock(state)
    assert not lock.held_elsewhere()
    lock.acquire()
    lock.release()


def test_endpoint_files(tmp_path: Path) -> None:
    state = tmp_path / ".shoal"
    with pytest.raises(DaemonNotRunning, match="shoal up"):
        endpoint.discover(state)
    token = endpoint.new_token(state)
    assert (state / "token").stat().st_mode & 0o777 == 0o600
    endpoint.publish(state, "http://127.0.0.1:1234")
    found = endpoint.discover(state)
    assert (found.url, found.token) == ("http://127.0.0.1:1234", token)
    assert found.pid is not None
    endpoint.withdraw(state)
    with pytest.raises(DaemonNotRunning):
        endpoint.discover(state)
    assert DaemonRunning.__mro__[1].__name__ == "DaemonError"
