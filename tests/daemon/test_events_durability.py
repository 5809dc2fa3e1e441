"""Durability: events published while the daemon is killed with -9 at random moments are all
delivered after a restart (at least once; none accepted is lost)."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.daemon.conftest import Project, wait_until
from tests.daemon.test_events import HANDLER, seen

pytestmark = pytest.mark.timeout(120)

MANIFEST = """
name: demo
functions:
  sink:
    handler: fn.py:handler
    timeout: 5s
    triggers:
      - event: {topic: orders, batch_size: 10, retries: 2}
topics:
  orders: {retention: 1h}
"""


class Publisher(threading.Thread):
    """Publishes {"n": 0, 1, 2, ...} as fast as the daemon answers; keeps what got a 202."""

    def __init__(self, project: Project) -> None:
        super().__init__(name="publisher", daemon=True)
        self.project = project
        self.accepted: list[int] = []
        self.refused = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            try:
                url, token = self.project.api()
                request = urllib.request.Request(
                    f"{url}/v1/topics/orders/events",
                    data=json.dumps({"n": n}).encode(),
                    method="POST",
                    headers={"Authorization": f"Bearer {token}"},
                )
                with urllib.request.urlopen(request, timeout=5) as r:
                    if r.status == 202:
                        self.accepted.append(n)
            except (OSError, urllib.error.URLError, ValueError):
                self.refused += 1  # the daemon is down: not accepted, may or may not be kept
                time.sleep(0.02)
            n += 1


def delivered(project: Project) -> list[int]:
    return [s["body"]["n"] for s in seen(project) if "body" in s]


def test_kill9_at_random_moments_loses_no_accepted_event(project: Project) -> None:
    (project.root / "fn.py").write_text(HANDLER)
    project.write(MANIFEST)
    project.shoal("up", "-d", check=True)
    publisher = Publisher(project)
    publisher.start()
    rng = random.Random(os.getpid())
    try:
        for _ in range(3):
            time.sleep(rng.uniform(0.3, 1.5))
            os.kill(project.daemon_pid(), signal.SIGKILL)
            time.sleep(rng.uniform(0.0, 0.3))
            project.shoal("up", "-d", check=True)
        time.sleep(0.5)
    finally:
        publisher.stopping.set()
        publisher.join(10)
    accepted = set(publisher.accepted)
    assert len(accepted) > 50, f"too few publishes accepted: {len(accepted)}"
    wait_until(lambda: accepted <= set(delivered(project)), 60, every=0.2)
    got = delivered(project)
    report: dict[str, Any] = {
        "accepted": len(accepted),
        "refused": publisher.refused,
        "delivered": len(set(got)),
        "duplicates": len(got) - len(set(got)),
    }
    print(json.dumps(report))
    assert accepted - set(got) == set(), report
