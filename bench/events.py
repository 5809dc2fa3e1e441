"""The event bus: durable publishes per second through the API, delivery latency, kill -9.

Each figure runs a real daemon (``shoal up -d`` in a temporary folder) and talks to it over
127.0.0.1 like any client:

- **durable publishes/s through the events endpoint** (``.shoal/events-url``, the API's
  publishing half, ``shoal.api.ingest``): ``CONNECTIONS`` keep-alive connections each POST
  ``/v1/topics/bench/events`` back to back (a lean asyncio client in this process); every 202
  means the event was committed with ``synchronous=FULL``. Baseline, in the same run: a fresh
  ``python3`` inserting rows into a WAL database with ``synchronous=FULL``, one commit each (what
  a publish costs without group commit). Target: >= 5,000/s (DESIGN.md §6). The same POST on the
  control API's URL (aiohttp) is measured too.
- **delivery latency**: publish -> the subscribed handler starts (the handler reads the
  publisher's timestamp from the body), p50 and p99, events published one at a time. Baseline:
  the same handler invoked synchronously through ``POST /v1/functions/NAME/invoke`` (request sent
  -> handler starts): the cost of going through the durable queue instead.
- **the HTTP stack alone**: the same client against a bare aiohttp handler that answers 202 at
  once (no auth, no JSON, no disk), in the same run: the ceiling of any publish through the
  control API on this machine, so the ratio shows what durability costs on top of it.
- **batches**: ``POST /v1/topics/NAME/batch`` with 10 events a request (PutEvents and
  SendMessageBatch take 10), 16 connections: events made durable per second.
- **kill -9**: a publisher posts as fast as the daemon answers while the daemon is killed with
  SIGKILL at random moments and started again; then: events accepted (202), delivered,
  delivered more than once, and lost (accepted, never delivered). Target: 0 lost.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import from the repo root, not bench/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import uvloop

from bench.figures import Baseline, Figure, at_least, at_most
from bench.harness import Run, from_samples, main
from bench.http import free_port
from bench.timing import python_env

ROOT = Path(__file__).resolve().parents[1]
DESIGN = "DESIGN.md §6"
CONNECTIONS = 64
BATCH = 10

HANDLER = """
import json, os, time

def handler(event, context):
    started = time.time()
    root = os.environ["LAMBDA_TASK_ROOT"]
    with open(os.path.join(root, "seen.jsonl"), "a") as out:
        records = event.get("Records")
        bodies = [json.loads(r["body"]) for r in records] if records else [event]
        for body in bodies:
            out.write(json.dumps({"n": body.get("n"), "lag": started - body.get("t", started)}))
            out.write("\\n")
    return {"batchItemFailures": []} if records else {"ok": True}
"""

MANIFEST = """
name: bench
gateway: {{port: {port}}}
functions:
  sink:
    handler: fn.py:handler
    timeout: 10s
    min_instances: 2
    triggers:
      - event: {{topic: orders, batch_size: 10}}
topics:
  orders: {{retention: 1h}}
  bench: {{retention: 1h}}
"""

RAW_SQLITE = """
import os, sqlite3, sys, time
path = sys.argv[1]
db = sqlite3.connect(path, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL"); db.execute("PRAGMA synchronous=FULL")
db.execute("CREATE TABLE m (id INTEGER PRIMARY KEY, topic TEXT, payload TEXT, at REAL)")
count, start = 0, time.perf_counter()
while time.perf_counter() - start < float(sys.argv[2]):
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT INTO m (topic, payload, at) VALUES (?, ?, ?)",
               ("bench", '{"n": 1}', time.time()))
    db.execute("COMMIT")
    count += 1
print(count / (time.perf_counter() - start))
"""


BARE_AIOHTTP = """
import sys
import uvloop
from aiohttp import web

async def accept(request):
    await request.read()
    return web.Response(text='{"ids":[1]}', status=202, content_type="application/json")

app = web.Application()
app.router.add_post("/v1/topics/{name}/events", accept)
uvloop.run(web._run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None,
                        access_log=None, handle_signals=True))
"""


class Bare:
    """A bare aiohttp server answering every publish 202 at once: no auth, no JSON, no disk."""

    token = "none"

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def bare_aiohttp() -> Iterator[Bare]:
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, "-c", BARE_AIOHTTP, str(port)], env=python_env(), cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.05)
        yield Bare(port)
    finally:
        child.terminate()
        child.wait(10)


class Shoal:
    """One project folder and its daemon (``shoal up -d``), stopped however the bench ends."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "shoal", *args],
            cwd=self.folder,
            env=python_env({"PYTHONPATH": str(ROOT / "src")}),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def up(self) -> None:
        done = self.cli("up", "-d")
        if done.returncode != 0:
            raise RuntimeError(f"shoal up -d failed: {done.stdout}{done.stderr}")

    @property
    def url(self) -> str:
        return (self.folder / ".shoal" / "api-url").read_text().strip()

    @property
    def events_url(self) -> str:
        return (self.folder / ".shoal" / "events-url").read_text().strip()

    @property
    def token(self) -> str:
        return (self.folder / ".shoal" / "token").read_text().strip()

    @property
    def pid(self) -> int:
        return int((self.folder / ".shoal" / "daemon.pid").read_text().split()[0])

    def post(self, path: str, body: Any, timeout: float = 10.0) -> tuple[int, Any]:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())

    def seen(self) -> list[dict[str, Any]]:
        path = self.folder / "seen.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def metrics(self) -> str:
        request = urllib.request.Request(
            self.url + "/metrics", headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return str(response.read().decode())


@contextlib.contextmanager
def daemon() -> Iterator[Shoal]:
    with tempfile.TemporaryDirectory(prefix="shoal-bench-events-") as tmp:
        folder = Path(tmp)
        (folder / "shoal.yaml").write_text(MANIFEST.format(port=free_port()))
        (folder / "fn.py").write_text(HANDLER)
        shoal = Shoal(folder)
        shoal.up()
        try:
            yield shoal
        finally:
            shoal.cli("down", "--timeout", "30")
            with contextlib.suppress(OSError, ValueError):
                os.kill(shoal.pid, signal.SIGKILL)


# ---------------------------------------------------------------- throughput


EVENT = b'{"order": 1, "total_cents": 1999}'


async def _hammer(url: str, token: str, seconds: float, counts: list[int], batch: int = 0) -> None:
    host, port = url.removeprefix("http://").split(":")
    body = b"[" + b",".join([EVENT] * batch) + b"]" if batch else EVENT
    path = "/v1/topics/bench/batch" if batch else "/v1/topics/bench/events"
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    reader, writer = await asyncio.open_connection(host, int(port))
    deadline = time.perf_counter() + seconds
    try:
        while time.perf_counter() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            if head.startswith(b"HTTP/1.1 202"):
                counts[0] += batch or 1
            else:
                counts[1] += 1
    finally:
        writer.close()


def publishes_per_second(
    shoal: Shoal | Bare, seconds: float, batch: int = 0, url: str | None = None
) -> float:
    """Events made durable per second, one per request (or ``batch`` per request), through
    ``url`` (the control API by default)."""
    counts = [0, 0]
    connections = CONNECTIONS if not batch else 16
    target = url or shoal.url

    async def all_of_them() -> None:
        await asyncio.gather(
            *(_hammer(target, shoal.token, seconds, counts, batch) for _ in range(connections))
        )

    start = time.perf_counter()
    uvloop.run(all_of_them())
    elapsed = time.perf_counter() - start
    if counts[1]:
        raise RuntimeError(f"{counts[1]} publishes were refused")
    return counts[0] / elapsed


def commits_of(shoal: Shoal) -> float:
    for line in shoal.metrics().splitlines():
        if line.startswith("shoal_events_commits_total"):
            return float(line.split()[-1])
    return 0.0


def raw_commits_per_second(seconds: float) -> float:
    with tempfile.TemporaryDirectory(prefix="shoal-bench-sqlite-") as tmp:
        done = subprocess.run(
            [sys.executable, "-c", RAW_SQLITE, str(Path(tmp) / "raw.db"), str(seconds)],
            capture_output=True,
            text=True,
            check=True,
            env=python_env(),
        )
    return float(done.stdout.strip())


# ---------------------------------------------------------------- latency


def latencies(shoal: Shoal, count: int) -> tuple[list[float], list[float]]:
    """Publish -> handler start, and API invoke -> handler start, interleaved."""
    for n in range(count):
        shoal.post("/v1/topics/orders/events", {"n": n, "t": time.time()})
        shoal.post("/v1/functions/sink/invoke", {"n": -1 - n, "t": time.time()})
        time.sleep(0.01)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = shoal.seen()
        if len([s for s in got if s["n"] is not None and s["n"] >= 0]) >= count:
            break
        time.sleep(0.1)
    got = shoal.seen()
    queued = [s["lag"] for s in got if s["n"] is not None and s["n"] >= 0]
    direct = [s["lag"] for s in got if s["n"] is not None and s["n"] < 0]
    return queued, direct


# ---------------------------------------------------------------- kill -9


def kill9(shoal: Shoal, kills: int) -> dict[str, int]:
    accepted: list[int] = []
    stopping = threading.Event()

    def publishing() -> None:
        n = 1_000_000
        while not stopping.is_set():
            try:
                status, _ = shoal.post("/v1/topics/orders/events", {"n": n}, timeout=5)
                if status == 202:
                    accepted.append(n)
            except (OSError, urllib.error.URLError, ValueError):
                time.sleep(0.02)
            n += 1

    publisher = threading.Thread(target=publishing, name="publisher", daemon=True)
    publisher.start()
    rng = random.Random(1234)
    try:
        for _ in range(kills):
            time.sleep(rng.uniform(0.3, 1.5))
            os.kill(shoal.pid, signal.SIGKILL)
            time.sleep(rng.uniform(0.0, 0.3))
            shoal.up()
        time.sleep(0.5)
    finally:
        stopping.set()
        publisher.join(10)
    wanted = set(accepted)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = [s["n"] for s in shoal.seen() if s["n"] is not None and s["n"] >= 1_000_000]
        if wanted <= set(got):
            break
        time.sleep(0.2)
    return {
        "published": len(wanted),
        "delivered": len(wanted & set(got)),
        "duplicated": len(got) - len(set(got)),
        "lost": len(wanted - set(got)),
    }


def measure(run: Run) -> Iterator[Figure]:
    """Durable publishes/s through the API, delivery latency, and a kill -9 run."""
    seconds = run.pick(quick=2.0, full=10.0)
    with daemon() as shoal:
        raw = raw_commits_per_second(seconds)
        fast = publishes_per_second(shoal, seconds, url=shoal.events_url)
        commits_before = commits_of(shoal)
        ours = publishes_per_second(shoal, seconds)
        per_commit = ours * seconds / max(1.0, commits_of(shoal) - commits_before)
        with bare_aiohttp() as bare:
            ceiling = publishes_per_second(bare, seconds)
        yield Figure(
            name="durable publishes through the events endpoint",
            value=round(fast),
            unit="/s",
            baseline=Baseline("raw SQLite, one commit each (synchronous=FULL)", round(raw)),
            target=at_least(5000, on="value", source=DESIGN),
            note=f"POST $(cat .shoal/events-url)/v1/topics/NAME/events, {CONNECTIONS} keep-alive "
            "connections, one event a request; 202 once committed",
        )
        yield Figure(
            name="durable publishes through the control API (aiohttp)",
            value=round(ours),
            unit="/s",
            baseline=Baseline("bare aiohttp answering 202, same client", round(ceiling)),
            note=f"the same POST on the control API's URL; ~{per_commit:.0f} publishes per commit",
        )
        batched = publishes_per_second(shoal, seconds, batch=BATCH, url=shoal.events_url)
        yield Figure(
            name=f"durable events through the events endpoint, {BATCH} per request",
            value=round(batched),
            unit="/s",
            baseline=Baseline("raw SQLite, one commit each (synchronous=FULL)", round(raw)),
            target=at_least(5000, on="value", source=DESIGN),
            note="POST /v1/topics/NAME/batch (PutEvents, SendMessageBatch: 10); 16 connections",
        )
        queued, direct = latencies(shoal, run.pick(quick=60, full=400))
        for stat in ("p50", "p99"):
            yield from_samples(
                f"publish -> handler start ({stat})",
                queued,
                stat=stat,
                baseline=("synchronous invoke through the API", direct),
                note="one event at a time; SQS batch shape",
            )
        outcome = kill9(shoal, run.pick(quick=2, full=5))
    yield Figure(
        name="events lost across kill -9 of the daemon",
        value=outcome["lost"],
        unit="events",
        target=at_most(0, on="value", source=DESIGN),
        note=(
            f"published (202) {outcome['published']}, delivered {outcome['delivered']}, "
            f"duplicated {outcome['duplicated']}"
        ),
    )


if __name__ == "__main__":
    sys.exit(main("events", measure))
