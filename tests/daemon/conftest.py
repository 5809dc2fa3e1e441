"""Helpers for the daemon tests: a project folder with the test app, the CLI as a child process,
and a guarantee that nothing a test started outlives it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

APP = Path(__file__).with_name("app.py")


def processes_in(folder: Path) -> list[int]:
    """Pids whose working directory is inside ``folder`` (the instances a test started)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if state != "Z" and (cwd == str(folder) or cwd.startswith(f"{folder}/")):
            found.append(int(entry))
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(every)


@dataclass
class Project:
    root: Path

    gateway_port: int = 0

    def write(self, manifest: str) -> None:
        """Write the manifest; unless it says otherwise, its gateway gets a free port."""
        text = textwrap.dedent(manifest).lstrip()
        if "gateway:" not in text:
            if not self.gateway_port:
                self.gateway_port = free_port()
            text = text.rstrip("\n") + f"\ngateway: {{port: {self.gateway_port}}}\n"
        (self.root / "shoal.yaml").write_text(text)

    def shoal(
        self, *args: str, timeout: float = 60.0, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
        result = subprocess.run(
            [sys.executable, "-m", "shoal", *args],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"shoal {' '.join(args)} -> {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result

    def ps(self) -> list[dict[str, Any]]:
        result = self.shoal("ps", "--json", check=True)
        rows: list[dict[str, Any]] = json.loads(result.stdout)
        return rows

    def ready(self, name: str) -> list[dict[str, Any]]:
        return [
            r for r in self.ps() if r["name"] == name and r["ready"] and r["state"] == "running"
        ]

    def daemon_pid(self) -> int:
        return int((self.root / ".shoal" / "daemon.pid").read_text())

    def api(self) -> tuple[str, str]:
        state = self.root / ".shoal"
        return (state / "api-url").read_text().strip(), (state / "token").read_text().strip()


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    root = tmp_path / "app"
    root.mkdir()
    shutil.copy(APP, root / "app.py")
    proj = Project(root)
    try:
        yield proj
    finally:
        if (root / ".shoal" / "api-url").exists() or (root / ".shoal" / "state.db").exists():
            proj.shoal("down", "--timeout", "30")
        with contextlib.suppress(OSError):
            pid = proj.daemon_pid()
            os.kill(pid, signal.SIGKILL)
        left = processes_in(root)
        for pid in left:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
        assert not left, f"processes left behind: {left}"
