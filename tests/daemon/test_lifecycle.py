"""`shoal up -d`, `ps`, `logs`, `scale`, `restart`, `apply`, `down` against real processes."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.daemon.conftest import Project, processes_in, wait_until

pytestmark = pytest.mark.timeout(90)

WEB = """
name: demo
services:
  web:
    command: [{python}, app.py]
    replicas: {replicas}
    health: {{http: /healthz, interval: 200ms, start_period: 5s}}
    stop_grace_period: 2s
"""


def web(replicas: int = 1) -> str:
    return WEB.format(python=json.dumps(sys.executable), replicas=replicas)


def get(port: int, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        body: dict[str, Any] = json.loads(r.read())
        return body


def test_up_ps_logs_down_leaves_nothing(project: Project) -> None:
    project.write(web(replicas=2))
    up = project.shoal("up", "-d", "--wait-timeout", "30")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "ready" in up.stdout
    rows = project.ps()
    assert [r["instance"] for r in rows] == [0, 1]
    assert set(rows[0]) >= {
        "kind",
        "name",
        "instance",
        "runtime",
        "state",
        "ready",
        "pid",
        "port",
        "restarts",
        "uptime",
    }
    assert all(r["ready"] and r["state"] == "running" and r["runtime"] == "process" for r in rows)
    ports = {r["port"] for r in rows}
    assert len(ports) == 2  # each replica its own PORT
    for row in rows:
        assert get(row["port"], "/whoami")["pid"] == row["pid"]
    logs = project.shoal("logs", "web", "--tail", "50")
    assert logs.returncode == 0
    assert "web#0" in logs.stdout and "listening on" in logs.stdout
    again = project.shoal("up", "-d")
    assert again.returncode != 0 and "already running" in again.stderr
    state = project.root / ".shoal"
    assert oct((state / "token").stat().st_mode & 0o777) == "0o600"
    daemon = project.daemon_pid()
    down = project.shoal("down")
    assert down.returncode == 0, down.stderr
    assert not (state / "api-url").exists()
    assert [p for p in processes_in(project.root) if p != daemon] == []


def test_api_needs_the_token_and_documents_itself(project: Project) -> None:
    project.write(web())
    project.shoal("up", "-d", check=True)
    url, token = project.api()
    assert url.startswith("http://127.0.0.1:")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{url}/v1/instances", timeout=5)
    assert info.value.code == 401
    info.value.close()
    request = urllib.request.Request(
        f"{url}/v1/openapi.json", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=5) as r:
        doc = json.loads(r.read())
    assert doc["openapi"].startswith("3.")
    assert "/v1/services/{name}/scale" in doc["paths"]
    bad = urllib.request.Request(
        f"{url}/v1/services/web/scale",
        data=b'{"replicas": -1}',
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(bad, timeout=5)
    assert info.value.code == 400
    info.value.close()
    missing = project.shoal("scale", "nope=2")
    assert missing.returncode == 3 and "no service named 'nope'" in missing.stderr


def test_crashed_replica_is_replaced_quickly(project: Project) -> None:
    project.write(web())
    project.shoal("up", "-d", check=True)
    [row] = project.ready("web")
    os.kill(row["pid"], signal.SIGKILL)
    started = time.monotonic()
    new = wait_until(lambda: [r for r in project.ready("web") if r["pid"] != row["pid"]], 15)
    assert time.monotonic() - started < 10
    assert new[0]["restarts"] == 1
    assert get(new[0]["port"], "/whoami")["pid"] == new[0]["pid"]


def test_unhealthy_instance_is_restarted(project: Project) -> None:
    manifest = web().replace(
        "health: {http: /healthz, interval: 200ms, start_period: 5s}",
        "health: {http: /healthz, interval: 100ms, start_period: 0s, failures: 2}",
    )
    manifest += "    env: {FAIL_HEALTH_AFTER: '5'}\n"
    project.write(manifest)
    project.shoal("up", "-d", check=True)
    first = project.ps()[0]["pid"]
    row = wait_until(
        lambda: [r for r in project.ps() if r["restarts"] >= 1 and r["pid"] != first], 20
    )
    assert row[0]["name"] == "web"
    logs = project.shoal("logs", "web").stdout
    assert "unhealthy" in logs


def test_dependencies_start_in_order_and_restarting_one_leaves_the_other(project: Project) -> None:
    py = json.dumps(sys.executable)
    project.write(f"""
        name: demo
        services:
          db:
            command: [{py}, app.py]
            env: {{START_DELAY: "1"}}
            health: {{http: /healthz, interval: 100ms}}
          api:
            command: [{py}, app.py]
            depends_on: {{db: healthy}}
            health: {{http: /healthz, interval: 100ms}}
    """)
    project.shoal("up", "-d", check=True)
    lines = project.shoal("logs", "--tail", "200").stdout.splitlines()
    db_ready = next(
        i for i, line in enumerate(lines) if line.startswith("db#0") and "ready" in line
    )
    api_started = next(
        i for i, line in enumerate(lines) if line.startswith("api#0") and "started pid" in line
    )
    assert db_ready < api_started
    db_pid = project.ready("db")[0]["pid"]
    api_pid = project.ready("api")[0]["pid"]
    project.shoal("restart", "api", check=True)
    wait_until(lambda: [r for r in project.ready("api") if r["pid"] != api_pid], 20)
    assert project.ready("db")[0]["pid"] == db_pid


def test_scale_and_rolling_restart_never_drop_below_replicas(project: Project) -> None:
    project.write(web(replicas=1))
    project.shoal("up", "-d", check=True)
    project.shoal("scale", "web=2", check=True)
    before = wait_until(lambda: (rows := project.ready("web")) and len(rows) == 2 and rows, 20)
    old = {r["pid"] for r in before}
    url, token = project.api()
    lowest = [2]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            request = urllib.request.Request(
                f"{url}/v1/instances", headers={"Authorization": f"Bearer {token}"}
            )
            with urllib.request.urlopen(request, timeout=5) as r:
                rows = json.loads(r.read())
            lowest[0] = min(lowest[0], sum(1 for x in rows if x["ready"]))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        project.shoal("restart", "web", check=True)
        wait_until(
            lambda: (
                (rows := project.ready("web"))
                and len(rows) == 2
                and not {r["pid"] for r in rows} & old
                and len(project.ps()) == 2
            ),
            30,
        )
    finally:
        stop.set()
        watcher.join()
    assert lowest[0] >= 2, "a moment with fewer ready replicas than desired"
    project.shoal("scale", "web=0", check=True)
    wait_until(lambda: project.ps() == [], 20)


def test_apply_rolls_only_what_changed(project: Project) -> None:
    py = json.dumps(sys.executable)
    text = f"""
        name: demo
        services:
          a: {{command: [{py}, app.py], env: {{MARK: one}}, health: {{http: /healthz}}}}
          b: {{command: [{py}, app.py], health: {{http: /healthz}}}}
    """
    project.write(text)
    project.shoal("up", "-d", check=True)
    a_pid, b_pid = project.ready("a")[0]["pid"], project.ready("b")[0]["pid"]
    project.write(text.replace("MARK: one", "MARK: two"))
    result = project.shoal("apply", check=True)
    assert "a: rolling update" in result.stdout and "b:" not in result.stdout
    row = wait_until(lambda: [r for r in project.ready("a") if r["pid"] != a_pid], 20)[0]
    assert get(row["port"], "/whoami")["mark"] == "two"
    assert project.ready("b")[0]["pid"] == b_pid
    project.write(text.replace("MARK: one", "MARK: [broken"))
    bad = project.shoal("apply")
    assert bad.returncode == 2


def test_daemon_kill9_then_up_adopts_instances(project: Project) -> None:
    project.write(web(replicas=2))
    project.shoal("up", "-d", check=True)
    before = {r["instance"]: (r["pid"], r["port"]) for r in project.ps()}
    os.kill(project.daemon_pid(), signal.SIGKILL)
    time.sleep(0.2)
    up = project.shoal("up", "-d", "--wait-timeout", "30")
    assert up.returncode == 0, up.stdout + up.stderr
    after = {r["instance"]: (r["pid"], r["port"]) for r in project.ready("web")}
    assert after == before  # same processes, same ports: adopted, not duplicated
    assert "adopted" in project.shoal("logs", "web").stdout


def test_up_after_down_starts_everything_again(project: Project) -> None:
    """`shoal down` then `shoal up`: the stopped instances are not "settled" ones to keep
    stopped (as an instance that ended on its own before a daemon crash is)."""
    project.write(web(replicas=1))
    project.shoal("up", "-d", check=True)
    project.shoal("down", check=True)
    again = project.shoal("up", "-d", "--wait-timeout", "30")
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(project.ready("web")) == 1


def test_a_manual_scale_survives_a_daemon_kill9_but_not_down(project: Project) -> None:
    """An acknowledged `shoal scale` is state: a crashed daemon's successor keeps it; a
    deliberate `shoal down` ends it, and the next `shoal up` follows the manifest."""
    project.write(web(replicas=1))
    project.shoal("up", "-d", check=True)
    project.shoal("scale", "web=2", check=True)
    wait_until(lambda: len(project.ready("web")) == 2, 30)
    os.kill(project.daemon_pid(), signal.SIGKILL)
    time.sleep(0.2)
    project.shoal("up", "-d", "--wait-timeout", "30", check=True)
    time.sleep(1.0)  # a reconcile that dropped the scale would be stopping web#1 by now
    assert len(project.ready("web")) == 2
    assert "scale web=2" in project.shoal("logs", "shoal").stdout
    project.shoal("down", check=True)
    project.shoal("up", "-d", "--wait-timeout", "30", check=True)
    assert len(project.ready("web")) == 1


def test_down_without_a_daemon_stops_what_it_left(project: Project) -> None:
    project.write(web())
    project.shoal("up", "-d", check=True)
    pid = project.ps()[0]["pid"]
    os.kill(project.daemon_pid(), signal.SIGKILL)
    time.sleep(0.2)
    (project.root / ".shoal" / "api-url").unlink()
    down = project.shoal("down")
    assert down.returncode == 0 and "leftover" in down.stdout
    wait_until(lambda: not os.path.exists(f"/proc/{pid}"), 10)


def test_up_reports_services_that_fail(project: Project) -> None:
    project.write("""
        name: demo
        services:
          broken:
            command: ["false"]
            restart: {policy: on-failure, max_retries: 2, backoff: {initial: 50ms}}
    """)
    up = project.shoal("up", "-d", "--wait-timeout", "20")
    assert up.returncode == 7, up.stdout + up.stderr
    assert "broken" in up.stdout and "fatal" in up.stdout


def test_up_does_not_call_ready_a_service_that_lives_for_a_moment(project: Project) -> None:
    # Ready (no health check: running) for about 30 ms at a time, between 50 ms backoffs: a
    # status poll often finds it ready; up -d waits for two in a row (100 ms apart) that find
    # the same process.
    project.write("""
        name: demo
        services:
          flaky:
            command: ["sh", "-c", "sleep 0.03; exit 1"]
            restart: {policy: on-failure, max_retries: 4, backoff: {initial: 50ms, max: 50ms}}
    """)
    up = project.shoal("up", "-d", "--wait-timeout", "20")
    assert up.returncode == 7, up.stdout + up.stderr
    assert "flaky" in up.stdout and "fatal" in up.stdout
