"""A real shoal daemon for a benchmark: ``shoal up -d`` on a manifest in a temporary folder.

Benchmarks that measure what users get (through the gateway, through the control API) run the
daemon exactly as ``shoal up -d`` does, in its own process, and talk to it over 127.0.0.1 like
any client. :func:`running_daemon` writes the manifest (and any files beside it), starts the
daemon, waits until it is ready, and always stops it (``shoal down``, then a kill of whatever is
left in its process group) however the benchmark ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.timing import python_env

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Daemon:
    """A started daemon: where its manifest lives and how to reach its control API."""

    folder: Path
    url: str
    token: str
    pid: int

    def api(self, path: str) -> Any:
        """GET a control API path; the decoded JSON (or text for ``/metrics``)."""
        request = urllib.request.Request(
            self.url + path, headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read().decode()
        return body if path == "/metrics" else json.loads(body)

    def instances(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.api("/v1/instances")
        return rows

    def metrics(self) -> dict[str, float]:
        """``/metrics`` samples by their full name with labels."""
        text: str = self.api("/metrics")
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out


def shoal(folder: Path, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shoal", *args],
        cwd=folder,
        env=python_env({"PYTHONPATH": os.environ.get("BENCH_SRC", str(ROOT / "src"))}),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextlib.contextmanager
def running_daemon(manifest: str, files: Mapping[str, str | bytes] = {}) -> Iterator[Daemon]:
    """Run ``shoal up -d`` on ``manifest`` (YAML text) with ``files`` written beside it."""
    with tempfile.TemporaryDirectory(prefix="shoal-bench-") as tmp:
        folder = Path(tmp)
        (folder / "shoal.yaml").write_text(manifest)
        for name, content in files.items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
        started = shoal(folder, "up", "-d")
        try:
            if started.returncode != 0:
                raise RuntimeError(f"shoal up -d failed: {started.stdout}{started.stderr}")
            state = folder / ".shoal"
            yield Daemon(
                folder=folder,
                url=(state / "api-url").read_text().strip(),
                token=(state / "token").read_text().strip(),
                pid=int((state / "daemon.pid").read_text().split()[0]),
            )
        finally:
            stopped = shoal(folder, "down")
            if stopped.returncode != 0:
                print(f"shoal down: {stopped.stdout}{stopped.stderr}", file=sys.stderr)


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (``/proc/PID/task/PID/children``), [] once it is gone."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            return [int(p) for p in listing.read().split()]
    except OSError:
        return []


__all__ = ["Daemon", "children", "running_daemon", "shoal"]
