"""The gateway in the daemon: only ready replicas get traffic, rolling updates under load fail
zero requests, a service scaled to zero starts on its first request, /metrics counts."""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
import urllib.request

import pytest

from tests.daemon.conftest import Project, wait_until

pytestmark = pytest.mark.timeout(90)


def manifest(extra: str = "", replicas: str = "replicas: 2") -> str:
    return f"""
        name: demo
        services:
          web:
            command: [{json.dumps(sys.executable)}, app.py]
            {replicas}
            routes: [{{path: /web, strip_prefix: true}}]
            health: {{http: /healthz, interval: 100ms}}
            update: {{drain: 2s}}
            stop_grace_period: 2s
            {extra}
    """


def test_rolling_restart_under_load_fails_no_request(project: Project) -> None:
    project.write(manifest())
    project.shoal("up", "-d", check=True)
    port = project.gateway_port
    old = {r["pid"] for r in project.ready("web")}
    served: list[int] = []
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            while not stop.is_set():
                try:
                    conn.request("GET", "/web/whoami")
                    response = conn.getresponse()
                    body = response.read()
                    if response.status != 200:
                        failures.append(f"{response.status} {body[:100]!r}")
                    else:
                        served.append(json.loads(body)["pid"])
                except (OSError, http.client.HTTPException) as exc:
                    failures.append(repr(exc))
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        finally:
            conn.close()

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(0.5)
        project.shoal("restart", "web", check=True)
        wait_until(
            lambda: (
                (rows := project.ready("web"))
                and len(rows) == 2
                and not {r["pid"] for r in rows} & old
                and len(project.ps()) == 2
            ),
            40,
        )
        time.sleep(0.5)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert failures == []
    assert len(served) > 50
    new = {r["pid"] for r in project.ready("web")}
    assert set(served) & old and set(served) & new  # both revisions answered, none failed


def test_scaled_to_zero_service_starts_on_first_request(project: Project) -> None:
    project.write(manifest(replicas="autoscale: {min: 0, max: 2, target_concurrency: 5}"))
    project.shoal("up", "-d", check=True)
    assert project.ps() == []
    started = time.monotonic()
    url = f"http://127.0.0.1:{project.gateway_port}/web/whoami"
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.status == 200
    assert time.monotonic() - started < 15
    assert len(project.ready("web")) == 1
    # a manual scale to zero within the autoscaler's range (min 0): it stays at zero over the
    # next ticks, and a new request starts it (test_gatewaying has the stale-load case)
    scaled = project.shoal("scale", "web=0", check=True)
    assert "a request starts it again" in scaled.stdout
    wait_until(lambda: project.ps() == [], 20)
    time.sleep(2.5 * 2)  # two autoscaler ticks (TICK = 2 s)
    assert project.ps() == []
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.status == 200


def test_unknown_route_404_and_metrics_count_requests(project: Project) -> None:
    project.write(manifest(replicas="replicas: 1"))
    project.shoal("up", "-d", check=True)
    base = f"http://127.0.0.1:{project.gateway_port}"
    with urllib.request.urlopen(f"{base}/web/whoami", timeout=10) as r:
        assert r.status == 200
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{base}/nowhere", timeout=10)
    assert info.value.code == 404
    info.value.close()
    url, token = project.api()
    request = urllib.request.Request(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as r:
        text = r.read().decode()
    assert 'shoal_instances{service="web",state="running"} 1' in text
    assert "web" in text and "2xx" in text
    logs = project.shoal("logs", "gateway", "--tail", "20").stdout
    assert "/web/whoami" in logs


def test_a_manual_scale_to_zero_pauses_autoscaling_until_scaled_up(project: Project) -> None:
    """As Kubernetes disables an HPA whose target is at zero: the autoscaler (min 1) must not
    bring the service back by itself; a manual scale above zero resumes it."""
    project.write(manifest(replicas="autoscale: {min: 1, max: 2, target_concurrency: 5}"))
    project.shoal("up", "-d", check=True)
    wait_until(lambda: len(project.ready("web")) == 1, 20)
    paused = project.shoal("scale", "web=0", check=True)
    assert "autoscaling paused while at 0" in paused.stdout
    wait_until(lambda: project.ps() == [], 20)
    time.sleep(2.5 * 2)  # two autoscaler ticks (TICK = 2 s): it would have scaled up to min 1
    assert project.ps() == []
    resumed = project.shoal("scale", "web=1", check=True)
    assert "autoscaling on (1-2 replicas)" in resumed.stdout
    wait_until(lambda: len(project.ready("web")) == 1, 20)
