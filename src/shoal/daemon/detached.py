"""``shoal up -d``: start the daemon in the background, then wait until every service is ready.

The daemon runs as ``python -m shoal.daemon --file FILE`` in its own session (it outlives the
terminal), writing its own messages to ``.shoal/daemon.log``. We wait for it to publish its API,
then follow ``/v1/status`` and ``/v1/instances`` until every service has its replicas ready, an
instance is ``fatal``, or the time limit passes; failures name the service and why.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shoal.api.client import Client
from shoal.api.endpoint import API_URL, discover, read_pid
from shoal.api.models import InstanceRow, Status
from shoal.daemon.locking import DaemonLock
from shoal.errors import DaemonNotRunning, DaemonRunning, ShoalError
from shoal.manifest import Project
from shoal.store import state_dir

LOG = "daemon.log"


@dataclass(frozen=True)
class Outcome:
    status: Status
    failures: dict[str, str]  # service -> why it is not ready
    pid: int


def _tail(path: Path, lines: int = 15) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:]).rstrip()
    except OSError:
        return ""


def start(
    project: Project,
    *,
    timeout: float = 60.0,
    progress: Callable[[str], None] = lambda _: None,
) -> Outcome:
    """Start a background daemon for ``project`` and wait for its services."""
    state = state_dir(project.file)
    if DaemonLock(state).held_elsewhere():
        url = (state / API_URL).read_text().strip() if (state / API_URL).exists() else "?"
        raise DaemonRunning(
            f"shoal is already running for {project.root} (pid {read_pid(state)}, API {url}); "
            "use `shoal ps`, or `shoal down` first"
        )
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    log_path = state / LOG
    (state / API_URL).unlink(missing_ok=True)
    with open(log_path, "ab") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "shoal.daemon", "--file", str(project.file)],
            cwd=project.root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + timeout
    progress(f"daemon started (pid {child.pid}); log: {log_path}")
    client = _wait_for_api(state, child, deadline, log_path)
    return Outcome(*_wait_for_services(client, deadline, progress), pid=child.pid)


def _wait_for_api(
    state: Path, child: subprocess.Popen[bytes], deadline: float, log: Path
) -> Client:
    while time.monotonic() < deadline:
        code = child.poll()
        if code is not None:
            raise DaemonNotRunning(
                f"the daemon exited with code {code} before serving:\n{_tail(log)}"
            )
        if (state / API_URL).exists() and read_pid(state) == child.pid:
            try:
                client = Client(discover(state), timeout=5.0)
                client.status()
            except ShoalError:
                pass
            else:
                return client
        time.sleep(0.05)
    raise DaemonNotRunning(f"the daemon did not serve its API in time:\n{_tail(log)}")


def _wait_for_services(
    client: Client, deadline: float, progress: Callable[[str], None]
) -> tuple[Status, dict[str, str]]:
    reported: dict[str, str] = {}
    seen_ready: dict[tuple[str, int], tuple[int | None, int]] | None = None
    while True:
        status = client.status()
        rows = client.instances()
        failures = _failures(status, rows)
        pending = {s.name for s in status.services if s.ready < s.desired}
        # Ready at two polls in a row with the same processes: a command that exits at once
        # (and is restarted) can look ready at one poll; the next one sees it gone or replaced.
        confirmed = False
        if not pending and not failures:
            now_ready = {
                (r.name, r.instance): (r.pid, r.restarts) for r in rows if r.kind == "service"
            }
            confirmed = now_ready == seen_ready
            seen_ready = now_ready
        else:
            seen_ready = None
        for s in status.services:
            line = f"{s.name}: {s.ready}/{s.desired} ready" + (
                f" ({s.waiting})" if s.waiting else ""
            )
            if reported.get(s.name) != line:
                reported[s.name] = line
                progress(line)
        if failures or (not pending and confirmed):
            return status, failures
        if time.monotonic() >= deadline:
            if not pending:
                return status, failures
            return status, {name: _why(name, status, rows) for name in sorted(pending)}
        time.sleep(0.1)


def _failures(status: Status, rows: list[InstanceRow]) -> dict[str, str]:
    """Services with an instance that gave up (fatal): waiting longer will not help."""
    out: dict[str, str] = {}
    for row in rows:
        if row.state == "fatal":
            out[row.name] = (
                f"instance {row.instance} is fatal: {row.reason or 'gave up restarting'}"
            )
    return out


def _why(name: str, status: Status, rows: list[InstanceRow]) -> str:
    for service in status.services:
        if service.name == name and service.waiting:
            return service.waiting
    mine = [r for r in rows if r.name == name]
    if not mine:
        return "no instance started"
    states = ", ".join(
        f"#{r.instance} {r.state}{'' if r.ready else ' not ready'}"
        + (f" ({r.reason})" if r.reason else "")
        + (f", {r.restarts} restarts" if r.restarts else "")
        for r in mine
    )
    return f"not ready in time: {states}"


__all__ = ["LOG", "Outcome", "start"]
