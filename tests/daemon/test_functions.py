"""Functions in the daemon: HTTP triggers through the gateway, `shoal invoke`, errors mapped."""

from __future__ import annotations

import json
import os
import signal
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from shoal.store import Store, default_db_path
from tests.daemon.conftest import Project, wait_until

pytestmark = pytest.mark.timeout(60)

HANDLER = """
import time


def handler(event, context):
    if event.get("queryStringParameters", {}).get("boom") or event.get("boom"):
        raise ValueError("boom")
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return {"statusCode": 201, "headers": {"x-fn": context.function_name}, "body": "made"}
"""


def test_http_trigger_invoke_and_errors(project: Project) -> None:
    (project.root / "fn.py").write_text(HANDLER)
    project.write("""
        name: demo
        functions:
          maker:
            handler: fn.py:handler
            timeout: 1s
            triggers:
              - http: {path: /make}
    """)
    project.shoal("up", "-d", check=True)
    base = f"http://127.0.0.1:{project.gateway_port}"
    with urllib.request.urlopen(f"{base}/make", timeout=10) as r:
        assert r.status == 201 and r.headers["x-fn"] == "maker" and r.read() == b"made"
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{base}/make?boom=1", timeout=10)
    assert info.value.code == 500
    info.value.close()
    ok = project.shoal("invoke", "maker", "--data", "{}")
    assert ok.returncode == 0 and json.loads(ok.stdout)["statusCode"] == 201
    assert "REPORT RequestId:" in ok.stderr and "Billed Duration" in ok.stderr
    kinds = {r["kind"] for r in project.ps()}
    assert {"template", "function"} <= kinds  # the warm instance stays until idle_timeout
    # and a standby is forked ahead of the next scale-up, shown as such
    standby = wait_until(lambda: [r for r in project.ps() if r["kind"] == "standby"] or None)
    assert standby[0]["name"] == "maker" and standby[0]["state"] == "standby"
    assert standby[0]["pid"] and not standby[0]["ready"]
    bad = project.shoal("invoke", "maker", "--data", '{"boom": true}')
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["errorType"] == "ValueError"
    slow = project.shoal("invoke", "maker", "--data", '{"sleep": 5}')
    assert slow.returncode == 1 and "timed out" in slow.stdout.lower() + slow.stderr.lower()
    missing = project.shoal("invoke", "nope")
    assert missing.returncode == 3
    assert "REPORT RequestId:" in project.shoal("logs", "maker").stdout
    url, token = project.api()
    request = urllib.request.Request(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as r:
        metrics = r.read().decode()
    figures = dict(
        line.rsplit(" ", 1) for line in metrics.splitlines() if line.startswith("shoal_function_")
    )
    assert figures['shoal_function_invocations_total{function="maker"}'] == "5"
    assert figures['shoal_function_errors_total{function="maker"}'] == "3"
    assert figures['shoal_function_timeouts_total{function="maker"}'] == "1"
    assert int(figures['shoal_function_cold_starts_total{function="maker"}']) >= 1
    assert figures['shoal_function_duration_seconds_count{function="maker"}'] == "5"
    assert figures['shoal_function_duration_seconds_bucket{function="maker",le="+Inf"}'] == "5"
    assert "# TYPE shoal_function_duration_seconds histogram" in metrics
    # every invocation recorded in the store (in batches, within FLUSH_EVERY)
    with Store.open(default_db_path(project.root / "shoal.yaml")) as store:
        wait_until(lambda: len(store.list_invocations("maker")) == 5, 5)
        statuses = sorted(r.status for r in store.list_invocations("maker"))
    assert statuses.count("ok") == 2 and "timeout" in statuses


def test_function_processes_end_with_a_killed_daemon_and_come_back(project: Project) -> None:
    """Functions hold no state worth adopting: when the daemon is killed with -9, its
    forkserver, templates and instances see their control sockets close and exit (nothing is
    left running), and the next `shoal up` starts them afresh."""
    (project.root / "fn.py").write_text(HANDLER)
    project.write("""
        name: demo
        functions:
          maker:
            handler: fn.py:handler
            min_instances: 2
            triggers:
              - http: {path: /make}
    """)
    project.shoal("up", "-d", check=True)
    rows = wait_until(
        lambda: [r for r in project.ps() if r["kind"] == "function" and r["ready"]] or None
    )
    wait_until(lambda: [r for r in project.ps() if r["kind"] == "standby"] or None)
    pids = [r["pid"] for r in project.ps() if r["kind"] in ("template", "function", "standby")]
    assert len(pids) >= 4, rows  # the template, two instances, the standby
    os.kill(project.daemon_pid(), signal.SIGKILL)
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() and not _zombie(pid) for pid in pids))
    project.shoal("up", "-d", check=True)
    base = f"http://127.0.0.1:{project.gateway_port}"
    with urllib.request.urlopen(f"{base}/make", timeout=10) as r:
        assert r.status == 201


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
