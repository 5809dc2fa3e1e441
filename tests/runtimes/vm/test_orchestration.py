"""A VM service under the daemon, end to end on real qemu: bake, start, health, requests through
the gateway, a snapshot of a fresh boot, crash of qemu -> restart restored from the snapshot
(fresh entropy, right clock), kill -9 of the daemon and adoption, scale to 2, a rolling update
after a code change with no failed request, and ``shoal down`` leaving no qemu behind.

One test walks the whole life cycle: every VM boot costs seconds under TCG, so the steps share
them (the suite's budget is a few minutes including a cold bake)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from shoal.runtimes.vm import Baker
from tests.daemon.conftest import Project, wait_until
from tests.runtimes.vm.conftest import qemus_of

VMAPP = Path(__file__).with_name("vmapp")

MANIFEST = """
name: vmdemo
services:
  web:
    runtime: vm
    build: ./vmapp
    command: [python3, app.py]
    port: 8080
    replicas: 1
    routes: [{path: /web, strip_prefix: true}]
    health: {http: /healthz, interval: 200ms, timeout: 2s, start_period: 180s}
    restart: {backoff: {initial: 100ms}}
    update: {drain: 500ms}
    stop_grace_period: 3s
    resources: {memory: 256M, cpus: 1}
"""


def fetch(port: int, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=20) as r:
        body: dict[str, Any] = json.loads(r.read())
        return body


def pids(project: Project) -> dict[int, int]:
    return {r["instance"]: r["pid"] for r in project.ready("web")}


def log_of(project: Project, name: str) -> str:
    return project.shoal("logs", name).stdout


@pytest.mark.timeout(600)
def test_vm_service_life_cycle(baked: Baker, no_leftover_vms: Project) -> None:
    project = no_leftover_vms
    app = project.root / "vmapp"
    shutil.copytree(VMAPP, app, ignore=shutil.ignore_patterns("__pycache__"))
    (app / "VERSION").write_text(f"v1-{os.getpid()}-{time.time_ns()}\n")  # a fresh image
    project.write(MANIFEST)
    gateway = project.gateway_port
    state = str(project.root / ".shoal")

    # bake (kernel and base cached by the session fixture; the service disk now), cold boot
    up = project.shoal("up", "-d", "--wait-timeout", "300", timeout=330)
    assert up.returncode == 0, up.stdout + up.stderr
    first = fetch(gateway, "/web/whoami")
    assert first["version"].startswith("v1-")
    assert "booting VM image" in log_of(project, "web")
    assert "vm: baked web" in log_of(project, "shoal")
    assert len(qemus_of(state)) == 1

    # the first instance is healthy: a fresh boot of its image is snapshotted in the background
    wait_until(lambda: "snapshot of web#snapshot ready" in log_of(project, "shoal"), timeout=240)

    # crash of the qemu process -> restart, restored from the snapshot
    (before,) = pids(project).values()
    os.kill(before, signal.SIGKILL)
    wait_until(lambda: (p := pids(project)) and p[0] != before, timeout=60)
    assert "restored from snapshot" in log_of(project, "web")
    assert "(a standby clone)" in log_of(project, "web")  # launched once the snapshot was made
    second = fetch(gateway, "/web/whoami")
    assert second["boot"] != first["boot"]  # the clone's boot is the snapshot's, not instance 0's
    assert abs(second["time"] - time.time()) < 5  # its wall clock was set on restore

    # kill -9 of the daemon: the VMs keep running and the next daemon adopts them
    running = pids(project)  # one instance: `shoal scale` is not kept across daemons
    os.kill(project.daemon_pid(), signal.SIGKILL)
    wait_until(lambda: not (project.root / ".shoal" / "daemon.pid").exists() or _dead(project))
    again = project.shoal("up", "-d", "--wait-timeout", "120", timeout=150)
    assert again.returncode == 0, again.stdout + again.stderr
    assert pids(project) == running
    assert "adopted pid" in log_of(project, "web")

    # scale to 2: the new replica restores too; both clones serve, each with its own randomness
    project.shoal("scale", "web=2", check=True)
    wait_until(lambda: len(pids(project)) == 2, timeout=60)
    answers = [fetch(gateway, "/web/whoami") for _ in range(6)]
    assert len({a["token"] for a in answers}) == 6
    assert log_of(project, "web").count("restored from snapshot") >= 2
    running = pids(project)

    # rolling update after a code change: no request fails while both replicas are replaced
    (app / "VERSION").write_text(f"v2-{os.getpid()}-{time.time_ns()}\n")
    failures: list[str] = []
    served = 0
    done = threading.Event()

    def hammer() -> None:
        nonlocal served
        while not done.is_set():
            try:
                fetch(gateway, "/web/whoami")
                served += 1
            except (urllib.error.URLError, OSError, ValueError) as exc:
                failures.append(repr(exc))
            time.sleep(0.05)

    worker = threading.Thread(target=hammer, daemon=True)
    worker.start()
    try:
        project.shoal("restart", "web", check=True)
        wait_until(
            lambda: (
                all(fetch(gateway, "/web/whoami")["version"].startswith("v2-") for _ in range(4))
                and len(pids(project)) == 2
                and not set(pids(project).values()) & set(running.values())
            ),
            timeout=300,
            every=0.5,
        )
    finally:
        done.set()
        worker.join(30)
    assert not failures, failures[:5]
    assert served > 0

    # stop: nothing left
    down = project.shoal("down", "--timeout", "60", timeout=90)
    assert down.returncode == 0, down.stdout + down.stderr
    assert qemus_of(state) == []


@pytest.mark.timeout(300)
def test_an_autoscaled_vm_service_starts_from_zero_on_a_request(
    baked: Baker, no_leftover_vms: Project
) -> None:
    """min 0: the gateway holds the first request while a VM boots cold; scaled to zero
    again, the next request is served by a clone restored into the standby qemu."""
    project = no_leftover_vms
    app = project.root / "vmapp"
    shutil.copytree(VMAPP, app, ignore=shutil.ignore_patterns("__pycache__"))
    (app / "VERSION").write_text(f"zero-{os.getpid()}-{time.time_ns()}\n")
    manifest = MANIFEST.replace("replicas: 1", "autoscale: {min: 0, max: 2, target_concurrency: 1}")
    project.write(manifest)
    up = project.shoal("up", "-d", "--wait-timeout", "300", timeout=330)
    assert up.returncode == 0, up.stdout + up.stderr
    assert pids(project) == {}
    assert fetch(project.gateway_port, "/web/healthz") == {"ok": True}  # held through a boot
    assert "booting VM image" in log_of(project, "web")
    wait_until(lambda: "snapshot of web#snapshot ready" in log_of(project, "shoal"), timeout=240)

    project.shoal("scale", "web=0", check=True)
    wait_until(lambda: pids(project) == {} and not project.ps(), timeout=60)
    answer = fetch(project.gateway_port, "/web/whoami")  # held through a restore
    assert answer["version"].startswith("zero-")
    assert "(a standby clone)" in log_of(project, "web")
    down = project.shoal("down", "--timeout", "60", timeout=90)
    assert down.returncode == 0, down.stdout + down.stderr


def _dead(project: Project) -> bool:
    try:
        os.kill(project.daemon_pid(), 0)
    except (OSError, ValueError):
        return True
    return False
