"""Container services under the daemon (`shoal up -d` ...), on the real engine: every supervisor
feature a process gets: build before start, crash -> restart with backoff, rolling update
through the gateway with zero failed requests, scale to zero and back, kill -9 of the daemon
and adoption, and the engine-missing error."""

from __future__ import annotations

import os
import signal
import textwrap
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.daemon.conftest import Project, wait_until

pytestmark = pytest.mark.timeout(120)

# busybox httpd; /whoami answers the container's hostname (its short id) and MARK
SERVE = '["sh", "-c", "echo $HOSTNAME $MARK > /www/whoami; exec httpd -f -p $PORT -h /www"]'


def manifest(app: str, image: str, extra: str = "", replicas: str = "replicas: 1") -> str:
    return f"""
        name: {app}
        services:
          web:
            runtime: container
            image: {image}
            command: {SERVE}
            {replicas}
            routes: [{{path: /web, strip_prefix: true}}]
            health: {{http: /healthz, interval: 100ms, start_period: 10s}}
            update: {{drain: 1s}}
            stop_grace_period: 1s
            {extra}
    """


def fetch(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return str(r.read().decode())


def refs(project: Project) -> dict[int, Any]:
    return {r["instance"]: r["pid"] for r in project.ready("web")}


def test_build_then_crash_restarts_with_backoff(
    app_name: str, project: Project, busybox: str, engine: Any
) -> None:
    site = project.root / "site"
    site.mkdir()
    (site / "Dockerfile").write_text(f"FROM {busybox}\nCOPY hello.txt /www/hello.txt\n")
    (site / "hello.txt").write_text("built by shoal\n")
    built = manifest(app_name, busybox).replace(f"image: {busybox}", "build: ./site")
    project.write(built)
    try:
        up = project.shoal("up", "-d", "--wait-timeout", "60")
        assert up.returncode == 0, up.stdout + up.stderr
        row = project.ready("web")[0]
        assert fetch(row["port"], "/hello.txt") == "built by shoal\n"
        assert "Successfully built" in project.shoal("logs", "shoal", "--tail", "200").stdout
        containers = engine.api.containers(
            filters={"label": [f"io.shoal.app={app_name}", "io.shoal.service=web"]}
        )
        engine.api.kill(containers[0]["Id"], signal="KILL")
        again = wait_until(lambda: [r for r in project.ready("web") if r["pid"] != row["pid"]], 30)[
            0
        ]
        assert again["restarts"] == 1
        assert "killed by SIGKILL" in project.shoal("logs", "web").stdout
        crashy = [  # a service that crashes by itself (`up -d` would have waited for it)
            "  crashy:",
            "    runtime: container",
            f"    image: {busybox}",
            '    command: [sh, -c, "echo crashing; sleep 0.2; exit 3"]',
            "    restart: {backoff: {initial: 200ms, factor: 2}}",
        ]
        project.write(textwrap.dedent(built).rstrip("\n") + "\n" + "\n".join(crashy) + "\n")
        project.shoal("apply", check=True)
        crashes = wait_until(
            lambda: (
                (text := project.shoal("logs", "crashy").stdout).count("restart in") >= 3 and text
            ),
            30,
            every=0.5,
        )
        assert "crashing" in crashes and "exited with code 3" in crashes
        delays = [
            float(line.split("restart in ")[1].rstrip("s"))
            for line in crashes.splitlines()
            if "restart in" in line
        ]
        assert delays[1] > delays[0] * 1.5, delays  # the backoff grows
    finally:
        project.shoal("down", "--timeout", "30")
        for image in engine.api.images(filters={"reference": f"shoal/{app_name}-web"}):
            engine.api.remove_image(image["Id"], force=True)


def test_rolling_update_through_the_gateway_fails_no_request(
    app_name: str, project: Project, busybox: str
) -> None:
    project.write(manifest(app_name, busybox, replicas="replicas: 2"))
    project.shoal("up", "-d", "--wait-timeout", "60", check=True)
    port = project.gateway_port
    old = set(refs(project).values())
    served: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                served.append(fetch(port, "/web/whoami").split()[0])
            except (OSError, urllib.error.HTTPError) as exc:
                failures.append(repr(exc))

    workers = [threading.Thread(target=load) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(0.3)
        project.shoal("restart", "web", check=True)
        wait_until(
            lambda: (
                (now := refs(project))
                and len(now) == 2
                and not set(now.values()) & old
                and len(project.ps()) == 2
            ),
            60,
        )
        time.sleep(0.3)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert failures == []
    assert len(set(served)) >= 3, "both revisions answered"


def test_scaled_to_zero_container_starts_on_first_request(
    app_name: str, project: Project, busybox: str
) -> None:
    project.write(
        manifest(app_name, busybox, replicas="autoscale: {min: 0, max: 2, target_concurrency: 5}")
    )
    project.shoal("up", "-d", check=True)
    assert project.ps() == []
    assert fetch(project.gateway_port, "/web/healthz") == "ok\n"
    assert len(project.ready("web")) == 1
    project.shoal("scale", "web=0", check=True)
    wait_until(lambda: project.ps() == [], 20)
    assert fetch(project.gateway_port, "/web/healthz") == "ok\n"  # and back from zero


def test_daemon_kill9_then_up_adopts_containers(
    app_name: str, project: Project, busybox: str, engine: Any
) -> None:
    project.write(manifest(app_name, busybox, replicas="replicas: 2"))
    project.shoal("up", "-d", "--wait-timeout", "60", check=True)
    before = {r["instance"]: (r["pid"], r["port"]) for r in project.ps()}
    ids = {c["Id"] for c in engine.api.containers(filters={"label": f"io.shoal.app={app_name}"})}
    os.kill(project.daemon_pid(), signal.SIGKILL)
    time.sleep(0.2)
    up = project.shoal("up", "-d", "--wait-timeout", "60")
    assert up.returncode == 0, up.stdout + up.stderr
    after = {r["instance"]: (r["pid"], r["port"]) for r in project.ready("web")}
    assert after == before  # same containers, same ports: adopted, not duplicated
    now = {c["Id"] for c in engine.api.containers(filters={"label": f"io.shoal.app={app_name}"})}
    assert now == ids
    assert "adopted" in project.shoal("logs", "web").stdout
    assert fetch(after[0][1], "/healthz") == "ok\n"
    os.kill(project.daemon_pid(), signal.SIGKILL)  # again, and this time `shoal down` cleans up
    time.sleep(0.2)
    (project.root / ".shoal" / "api-url").unlink()
    down = project.shoal("down")
    assert down.returncode == 0 and "leftover" in down.stdout, down.stdout + down.stderr
    assert engine.api.containers(all=True, filters={"label": f"io.shoal.app={app_name}"}) == []


def test_no_engine_is_a_clear_error(
    app_name: str, project: Project, busybox: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.write(manifest(app_name, busybox))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{project.root}/no-engine.sock")
    result = project.shoal("up", "-d", "--wait-timeout", "20")
    assert result.returncode != 0
    text = result.stdout + result.stderr
    assert f"Docker Engine not reachable at unix://{project.root}/no-engine.sock" in text
    assert "install docker.io and start dockerd, or use runtime: process" in text
    assert "Traceback" not in text
