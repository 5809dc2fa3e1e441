"""`make up`, the README's first command, runs examples/shop for real (on a copy of it)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.daemon.conftest import processes_in, wait_until

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api(state: Path, path: str) -> object:
    url = (state / "api-url").read_text().strip()
    token = (state / "token").read_text().strip()
    request = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as r:
        return json.loads(r.read())


def test_make_up_runs_the_shop_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    shop = tmp_path / "shop"
    shutil.copytree(
        REPO / "examples" / "shop", shop, ignore=shutil.ignore_patterns(".shoal", "*.db")
    )
    gateway = free_port()
    env = {**os.environ, "SHOP_PORT": str(gateway), "NO_COLOR": "1"}
    make = subprocess.Popen(
        ["make", "--no-print-directory", "up", f"EXAMPLE={shop / 'shoal.yaml'}"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    state = shop / ".shoal"
    try:
        wait_until((state / "api-url").exists, 60)

        def all_ready() -> bool:
            status = api(state, "/v1/status")
            assert isinstance(status, dict)
            services = status["services"]
            return bool(services) and all(s["ready"] == s["desired"] for s in services)

        wait_until(all_ready, 60)
        rows = api(state, "/v1/instances")
        assert isinstance(rows, list)
        assert sorted((r["name"], r["instance"]) for r in rows if r["kind"] == "service") == [
            ("catalog", 0),
            ("catalog", 1),
            ("orders", 0),
        ]
        base = f"http://127.0.0.1:{gateway}"
        with urllib.request.urlopen(f"{base}/catalog/products", timeout=5) as r:
            assert r.status == 200
            products = json.loads(r.read())
        first = (products["products"] if isinstance(products, dict) else products)[0]
        order = urllib.request.Request(
            f"{base}/orders",
            data=json.dumps({"items": [{"id": first["id"], "qty": 1}]}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(order, timeout=10) as r:  # orders -> gateway -> catalog
            assert r.status == 201
            created = json.loads(r.read())

        def confirmed() -> bool:  # orders -> orders.created (durable) -> notify (SQS batch)
            topics = api(state, "/v1/topics")
            assert isinstance(topics, list)
            row = next(t for t in topics if t["name"] == "orders.created")
            return (
                row["subscribers"] == ["notify"]
                and row["depth"] == 0
                and bool(api(state, "/v1/jobs"))
            )

        wait_until(confirmed, 30)
        thumb = urllib.request.Request(
            f"{base}/thumbnail",
            data=json.dumps({"width": 1000, "height": 500, "max": 100}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(thumb, timeout=10) as r:  # a Lambda handler, unchanged
            assert r.status == 200
            answer = json.loads(r.read())
        assert answer["thumbnail"] == {"width": 100, "height": 50}, answer
    finally:
        os.killpg(make.pid, signal.SIGINT)  # Ctrl-C in the terminal reaches the whole group
        out, _ = make.communicate(timeout=60)
    text = out.decode(errors="replace")
    assert "daemon stopped" in text, text[-3000:]
    assert "not run yet" not in text
    order_id = created["id"]
    assert f"notify: sent confirmation of order {order_id}" in text, text[-3000:]
    assert "REPORT RequestId:" in text
    time.sleep(0.1)
    assert processes_in(shop) == []
