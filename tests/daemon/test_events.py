"""The event bus in the daemon: publish (API, CLI, SDK), SQS batches with partial failure,
retries with backoff, dead letters, redrive, asynchronous invocation, metrics and topics."""

from __future__ import annotations

import itertools
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.conftest import Project, wait_until

pytestmark = pytest.mark.timeout(90)

# Writes one line per record it sees (id, body, receive count) to seen.jsonl; fails records whose
# body has "fail": true (partial batch failure); raises for an event with "boom" (async).
HANDLER = """
import json, os, time
from shoal.events import publish

def handler(event, context):
    root = os.environ["LAMBDA_TASK_ROOT"]
    with open(os.path.join(root, "seen.jsonl"), "a") as out:
        if "Records" not in event:
            out.write(json.dumps({"async": event, "t": time.time()}) + "\\n")
            if event.get("boom"):
                raise ValueError("boom")
            if event.get("forward"):
                publish("orders", {"n": event["forward"], "from": "sdk"})
            if event.get("token"):
                out.write(json.dumps({"env": {k: v for k, v in os.environ.items()
                                              if k.startswith("SHOAL_")}}) + "\\n")
            return {"ok": True}
        failures = []
        for r in event["Records"]:
            body = json.loads(r["body"])
            out.write(json.dumps({
                "id": r["messageId"], "body": body, "t": time.time(),
                "count": int(r["attributes"]["ApproximateReceiveCount"]),
                "source": r["eventSourceARN"],
            }) + "\\n")
            if body.get("fail"):
                failures.append({"itemIdentifier": r["messageId"]})
        return {"batchItemFailures": failures}
"""

MANIFEST = """
name: demo
functions:
  sink:
    handler: fn.py:handler
    timeout: 5s
    triggers:
      - event: {topic: orders, batch_size: 10, retries: 2, dead_letter: orders.failed}
topics:
  orders: {retention: 1h}
  orders.failed: {}
"""


def seen(project: Project) -> list[dict[str, Any]]:
    path = project.root / "seen.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def post(project: Project, path: str, body: Any) -> tuple[int, Any]:
    url, token = project.api()
    request = urllib.request.Request(
        f"{url}{path}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        return r.status, json.loads(r.read())


def get_text(project: Project, path: str) -> str:
    url, token = project.api()
    request = urllib.request.Request(f"{url}{path}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as r:
        return str(r.read().decode())


@pytest.fixture
def bus(project: Project) -> Project:
    (project.root / "fn.py").write_text(HANDLER)
    project.write(MANIFEST)
    project.shoal("up", "-d", check=True)
    return project


def test_publish_delivers_sqs_batches_and_dead_letters_after_retries(bus: Project) -> None:
    status, body = post(bus, "/v1/topics/orders/events", {"n": 1})
    assert status == 202 and len(body["ids"]) == 1
    cli = bus.shoal("publish", "orders", "--data", '{"n": 2}')
    assert cli.returncode == 0 and "published" in cli.stdout
    bad = bus.shoal("publish", "orders", "--data", '{"n": 3, "fail": true}')
    assert bad.returncode == 0
    wait_until(lambda: len([s for s in seen(bus) if s.get("body", {}).get("n") == 3]) == 3, 20)
    got = seen(bus)
    ok = [s for s in got if s.get("body", {}).get("n") in (1, 2)]
    assert sorted(s["body"]["n"] for s in ok) == [1, 2]  # delivered once each (acked)
    assert all(s["source"].endswith(":orders") for s in ok)
    failing = [s for s in got if s.get("body", {}).get("n") == 3]
    assert [s["count"] for s in failing] == [1, 2, 3]  # first delivery + 2 retries
    gaps = [b["t"] - a["t"] for a, b in itertools.pairwise(failing)]
    assert gaps[0] >= 0.9 and gaps[1] >= 1.9  # exponential backoff: 1 s, then 2 s
    rows = wait_until(lambda: json.loads(bus.shoal("dlq", "orders", "--json").stdout), 10)
    assert len(rows) == 1 and rows[0]["payload"] == {"n": 3, "fail": True}
    assert "batchItemFailures" in rows[0]["error"] and rows[0]["queue"] == "orders.failed"
    metrics = get_text(bus, "/metrics")
    assert 'shoal_topic_dead_letters{queue="orders"} 1' in metrics
    assert 'shoal_topic_depth{queue="orders"} 0' in metrics
    assert "shoal_events_delivery_lag_seconds_count" in metrics
    topics = json.loads(bus.shoal("topics", "--json").stdout)
    orders = next(t for t in topics if t["name"] == "orders")
    assert orders["subscribers"] == ["sink"] and orders["dead_letters"] == 1
    # redrive: the dead letter goes back to orders and is delivered again (and fails again)
    redrive = bus.shoal("dlq", "redrive", "orders")
    assert redrive.returncode == 0 and "1 dead letters sent back" in redrive.stdout
    wait_until(lambda: len([s for s in seen(bus) if s.get("body", {}).get("n") == 3]) >= 4, 10)
    unknown = bus.shoal("publish", "nope", "--data", "{}")
    assert unknown.returncode == 3 and "no topic named 'nope'" in unknown.stderr
    not_json = bus.shoal("publish", "orders", "--data", "{nope")
    assert not_json.returncode == 4


def test_async_invoke_retries_twice_then_dead_letters_and_sdk_publishes(bus: Project) -> None:
    queued = bus.shoal("invoke", "sink", "--async", "--data", '{"boom": true}')
    assert queued.returncode == 0 and "queued" in queued.stdout
    wait_until(lambda: len([s for s in seen(bus) if s.get("async", {}).get("boom")]) == 3, 20)
    dead = wait_until(lambda: json.loads(bus.shoal("dlq", "async:sink", "--json").stdout), 10)
    assert dead[0]["payload"] == {"boom": True} and "ValueError" in dead[0]["error"]
    # the SDK inside a function publishes through the events endpoint (SHOAL_EVENTS_URL)
    bus.shoal("invoke", "sink", "--async", "--data", '{"forward": 7}', check=True)
    wait_until(lambda: [s for s in seen(bus) if s.get("body", {}).get("from") == "sdk"], 15)


def test_a_functions_token_publishes_but_cannot_drive_the_control_api(bus: Project) -> None:
    bus.shoal("invoke", "sink", "--data", '{"token": true}', check=True)
    env = wait_until(lambda: [s["env"] for s in seen(bus) if "env" in s], 10)[0]
    url, admin = bus.api()
    assert env["SHOAL_TOKEN"] != admin and "SHOAL_API_URL" not in env
    token = {"Authorization": f"Bearer {env['SHOAL_TOKEN']}"}
    refused = urllib.request.Request(f"{url}/v1/instances", headers=token)
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(refused, timeout=10)
    assert caught.value.code == 401
    caught.value.close()
    publish = urllib.request.Request(
        f"{env['SHOAL_EVENTS_URL']}/v1/topics/orders/events",
        data=json.dumps({"n": 11, "from": "token"}).encode(),
        method="POST",
        headers=token,
    )
    with urllib.request.urlopen(publish, timeout=10) as answer:
        assert answer.status == 202
    wait_until(lambda: [s for s in seen(bus) if s.get("body", {}).get("from") == "token"], 15)


def test_sdk_outside_shoal_says_what_is_missing(tmp_path: Path, monkeypatch: Any) -> None:
    from shoal.errors import DaemonNotRunning
    from shoal.events import publish

    for name in ("SHOAL_EVENTS_URL", "SHOAL_API_URL", "SHOAL_TOKEN", "SHOAL_STATE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(DaemonNotRunning, match="SHOAL_API_URL"):
        publish("orders", {})
