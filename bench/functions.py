"""Functions: cold starts, warm invocations, a burst, instance memory, idle pools (via the pool).

DESIGN.md §6 measures these through the gateway; until the gateway hosts functions they are
measured here through :class:`shoal.functions.FunctionPool` directly (the figures say "via
pool"), on uvloop like the daemon, with memory cgroups where the machine allows them (as the
daemon would), using examples/shop's ``thumbnail`` handler unchanged (its init computes a
Lanczos kernel table). Interleaved with their baselines, in one run:

- **cold start via pool**: the pool is scaled to zero between samples (``idle_timeout`` 20 ms;
  the next sample waits until the instance process is gone, then 20 ms more), the template
  kept, as it is for ``template_idle_timeout`` (10 min by default) after the last instance
  went. Baseline: a fresh ``python3`` per invocation importing the same handler and calling it
  (the emulators' way), spawn to exit. p50, p99, and the ratio (DESIGN: >= 10x faster).
- **deep cold start**: the template stopped too (a pool that was idle for
  ``template_idle_timeout``, or never invoked): fork a template, import, fork an instance.
- **warm invocation**: ``invoke()`` on a warm instance, against calling the same handler in a
  process over a socketpair directly (blocking, no event loop): the floor of any dispatcher.
- **burst**: 200 concurrent first invocations of a scaled-to-zero function, ``max_instances``
  200: successes and p99 (latency from the burst's start).
- **USS per warm instance**: ``Private_*`` of ``/proc/PID/smaps_rollup`` of warm instances,
  against the direct process (a whole interpreter of its own).
- **daemon RSS with 1,000 functions at zero**: a child process importing what the daemon
  imports, starting the forkserver and 1,000 pools that hold no process (``prewarm`` off, or
  a template idle past ``template_idle_timeout``), against the same child with none.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import from the repo root, not bench/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import asyncio
import json
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import uvloop

from bench import http
from bench.daemons import Daemon, children, running_daemon
from bench.figures import Figure, at_least, at_most
from bench.harness import Run, from_samples, main
from bench.stats import median, percentile
from bench.timing import python_env, run_timed
from shoal.functions import Forkserver, FunctionPool, FunctionSpec, protocol, shapes
from shoal.functions.handles import unique_memory
from shoal.runtimes.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[1]
HANDLER = ROOT / "examples" / "shop" / "functions" / "thumbnail.py"
DESIGN = "DESIGN.md §6"
EVENT = shapes.http_event(
    method="POST",
    raw_path="/thumbnail",
    headers=[("content-type", "application/json")],
    body=b'{"width": 4000, "height": 3000, "max": 256}',
    request_id="bench",
    now=0.0,
)

FRESH = """
import importlib.util, json, sys, time
spec = importlib.util.spec_from_file_location("thumbnail", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
class Context:
    aws_request_id = "bench"
    def get_remaining_time_in_millis(self):
        return 3000
print(json.dumps(module.handler(json.loads(sys.argv[2]), Context())))
"""

DIRECT = """
import importlib.util, json, socket, sys
from shoal.functions import protocol
spec = importlib.util.spec_from_file_location("thumbnail", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
class Context:
    aws_request_id = "bench"
sock = socket.socket(fileno=int(sys.argv[2]))
reader = protocol.FrameReader(sock)
while (frame := reader.read()) is not None:
    result = module.handler(json.loads(frame[1]), Context())
    protocol.send_frame(sock, {"op": "result"}, json.dumps(result).encode())
"""

IDLE_POOLS = """
import asyncio, json, sys
from pathlib import Path
import uvloop
import shoal.daemon.running  # what the daemon process imports
from shoal.functions import Forkserver, FunctionPool, FunctionSpec
from shoal.functions.handles import unique_memory

def rss() -> int:
    with open("/proc/self/status") as status:
        return next(int(l.split()[1]) * 1024 for l in status if l.startswith("VmRSS"))

async def main(count: int, handler: str) -> None:
    forkserver = Forkserver()
    await forkserver.start()
    pools = [
        FunctionPool(FunctionSpec(name=f"f{i}", handler_file=Path(handler)),
                     forkserver=forkserver, prewarm=False)
        for i in range(count)
    ]
    for pool in pools:
        await pool.start()
    held = sum(len(p.snapshot().templates) + len(p.snapshot().instances) for p in pools)
    print(json.dumps({"rss": rss(), "processes_held": held,
                      "forkserver_uss": unique_memory(forkserver.pid or 0)}))
    for pool in pools:
        await pool.stop()
    await forkserver.stop()

uvloop.run(main(int(sys.argv[1]), sys.argv[2]))
"""


def ms(seconds: list[float]) -> str:
    return f"p50 {median(seconds) * 1000:.2f} ms, p99 {percentile(seconds, 99) * 1000:.2f} ms"


def spec(**fields: Any) -> FunctionSpec:
    return FunctionSpec(name="thumbnail", handler_file=HANDLER, timeout=10.0, **fields)


def standby_pid(pool: FunctionPool) -> int | None:
    templates = pool.snapshot().templates
    return templates[0].standby_pid if templates else None


async def at_zero(pool: FunctionPool, settle: float = 0.02) -> None:
    """Wait until the pool has no instance and (standbys on) its standby is forked."""
    while pool.snapshot().instances or (pool.standby and standby_pid(pool) is None):
        await asyncio.sleep(0.002)
    await asyncio.sleep(settle)


async def cold_starts(run: Run, forkserver: Forkserver, sandbox: Sandbox) -> dict[str, Any]:
    pool = FunctionPool(
        spec(idle_timeout=0.02), forkserver=forkserver, sandbox=sandbox, app="bench"
    )
    deep = FunctionPool(
        spec(idle_timeout=0.01),
        forkserver=forkserver,
        sandbox=sandbox,
        app="bench",
        prewarm=False,
        template_idle_timeout=0.01,
    )
    plain = FunctionPool(  # standby instances off: every cold start forks
        spec(idle_timeout=0.02), forkserver=forkserver, sandbox=sandbox, app="bench", standby=False
    )
    await pool.start()
    await deep.start()
    await plain.start()
    fresh = [sys.executable, "-c", FRESH, str(HANDLER), json.dumps(EVENT)]
    env = python_env()
    cold: list[float] = []
    forked: list[float] = []
    standby_uss: list[float] = []
    deep_cold: list[float] = []
    baseline: list[float] = []
    rounds = run.pick(quick=30, full=200)
    deep_rounds = run.pick(quick=10, full=60)
    budget = time.monotonic() + run.pick(quick=6.0, full=300.0)
    run_timed(fresh, env=env)  # warm the page cache for the baseline
    for i in range(rounds):
        await at_zero(pool)
        started = time.perf_counter()
        result = await pool.invoke(EVENT)
        cold.append(time.perf_counter() - started)
        assert result.ok and result.cold, result
        await at_zero(plain)
        started = time.perf_counter()
        result = await plain.invoke(EVENT)
        forked.append(time.perf_counter() - started)
        assert result.ok and result.cold, result
        baseline.append(run_timed(fresh, env=env))
        if i < deep_rounds:
            while deep.snapshot().templates or deep.snapshot().instances:
                await asyncio.sleep(0.002)
            await asyncio.sleep(0.02)
            started = time.perf_counter()
            result = await deep.invoke(EVENT)
            deep_cold.append(time.perf_counter() - started)
            assert result.ok and result.cold, result
        if time.monotonic() > budget and len(cold) >= run.pick(quick=20, full=50):
            break
    await at_zero(pool)
    for _ in range(3):  # the standby's own memory, idle
        pid = standby_pid(pool)
        standby_uss.append(float((unique_memory(pid) if pid else None) or 0))
        await asyncio.sleep(0.05)
    await pool.stop()
    await deep.stop()
    await plain.stop()
    summary = (
        f"cold {ms(cold)}; standby off {ms(forked)}; deep {ms(deep_cold)}; fresh {ms(baseline)}"
    )
    print(f"functions: {summary}", file=sys.stderr)
    return {
        "cold": cold,
        "forked": forked,
        "standby_uss": standby_uss,
        "deep": deep_cold,
        "baseline": baseline,
    }


class Direct:
    """The handler in a bare process, called over a socketpair: the floor of any dispatcher."""

    def __init__(self) -> None:
        self.sock, theirs = socket.socketpair()
        self.process = subprocess.Popen(
            [sys.executable, "-c", DIRECT, str(HANDLER), str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            env=python_env({"PYTHONPATH": str(ROOT / "src")}),
        )
        theirs.close()
        self.reader = protocol.FrameReader(self.sock)
        self.event = json.dumps(EVENT).encode()

    def call(self, i: int) -> float:
        """One round trip; its seconds."""
        started = time.perf_counter()
        protocol.send_frame(self.sock, {"op": "invoke", "id": str(i)}, self.event)
        assert self.reader.read() is not None
        return time.perf_counter() - started

    def close(self) -> float:
        """Stop it; its unique memory (bytes) just before."""
        uss = float(unique_memory(self.process.pid) or 0)
        self.sock.close()
        self.process.wait(timeout=10)
        return uss


async def warm_and_uss(run: Run, forkserver: Forkserver, sandbox: Sandbox) -> dict[str, Any]:
    pool = FunctionPool(spec(max_instances=50), forkserver=forkserver, sandbox=sandbox, app="bench")
    await pool.start()
    direct = Direct()
    warm: list[float] = []
    floor: list[float] = []
    await pool.invoke(EVENT)
    for i in range(run.pick(quick=300, full=3000)):
        started = time.perf_counter()
        await pool.invoke(EVENT)
        warm.append(time.perf_counter() - started)
        floor.append(direct.call(i))
    count = run.pick(quick=10, full=20)
    for _ in range(5):  # `count` instances, each warm: several invocations each
        await asyncio.gather(*(pool.invoke(EVENT) for _ in range(count)))
    pids = [i.pid for i in pool.snapshot().instances if i.pid is not None]
    uss = [float(m) for m in (unique_memory(pid) for pid in pids) if m]
    direct_uss = direct.close()
    await pool.stop()
    print(f"functions: warm {ms(warm)}; direct {ms(floor)}; {len(uss)} instances", file=sys.stderr)
    return {"warm": warm, "floor": floor, "uss": uss, "direct_uss": direct_uss}


def idle_daemon(count: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", IDLE_POOLS, str(count), str(HANDLER)],
        capture_output=True,
        text=True,
        check=True,
        env=python_env({"PYTHONPATH": str(ROOT / "src")}),
        cwd=tempfile.gettempdir(),
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


GATEWAY_MANIFEST = """\
name: fnbench
gateway: {port: PORT, max_body: 6M, timeout: 30s}
functions:
  thumbnail:
    handler: thumbnail.py:handler
    timeout: 10s
    idle_timeout: 20ms
    max_instances: 20
    triggers: [{http: {path: /thumbnail, methods: [POST]}}]
  warm:
    handler: thumbnail.py:handler
    timeout: 10s
    min_instances: 1
    triggers: [{http: {path: /warm, methods: [POST]}}]
  burst:
    handler: thumbnail.py:handler
    timeout: 10s
    idle_timeout: 100ms
    max_instances: 200
    triggers: [{http: {path: /burst, methods: [POST]}}]
"""


def wait_for_zero(daemon: Daemon, function: str, settle: float = 0.02) -> None:
    """Until ``function`` has no instance (its processes gone too) and its standby is forked,
    as a function at zero is; then ``settle`` more seconds."""
    deadline = time.monotonic() + 30
    while True:
        rows = [r for r in daemon.instances() if r["name"] == function]
        templates = [int(r["pid"]) for r in rows if r["kind"] == "template" and r["pid"]]
        standby = {int(r["pid"]) for r in rows if r["kind"] == "standby" and r["pid"]}
        instances = [r for r in rows if r["kind"] == "function"]
        if templates and standby and not instances and set(children(templates[0])) <= standby:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{function} did not come to rest at zero: {rows}")
        time.sleep(0.005)
    time.sleep(settle)


async def http_burst(port: int, request: bytes, size: int) -> list[tuple[bool, float]]:
    """``size`` connections opened first, then one request on each at once."""
    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(size)]
    started = time.perf_counter()

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[bool, float]:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        return head.startswith(b"HTTP/1.1 200"), time.perf_counter() - started

    try:
        return await asyncio.gather(*(one(r, w) for r, w in streams))
    finally:
        for _, writer in streams:
            writer.close()


def through_gateway(run: Run) -> dict[str, Any]:
    """Cold starts, warm invocations and a burst over HTTP through a real daemon's gateway."""
    port = http.free_port()
    manifest = GATEWAY_MANIFEST.replace("PORT", str(port))
    body = EVENT["body"].encode()
    fresh = [sys.executable, "-c", FRESH, str(HANDLER), json.dumps(EVENT)]
    env = python_env()
    with running_daemon(manifest, {"thumbnail.py": HANDLER.read_text()}) as daemon:
        # cold: a new connection to a function with no instance, as a first visitor makes
        cold_request = http.request_bytes("POST", "/thumbnail", body)
        assert http.once(port, cold_request)[0] == 200  # the template is warm from here on
        cold: list[float] = []
        baseline: list[float] = []
        run_timed(fresh, env=env)  # the page cache, for the baseline
        budget = time.monotonic() + run.pick(quick=10.0, full=240.0)
        for _ in range(run.pick(quick=60, full=200)):
            wait_for_zero(daemon, "thumbnail")
            started = time.perf_counter()
            status, _ = http.once(port, cold_request)
            cold.append(time.perf_counter() - started)
            assert status == 200, status
            baseline.append(run_timed(fresh, env=env))
            if time.monotonic() > budget and len(cold) >= 50:
                break
        counted = daemon.metrics()['shoal_function_cold_starts_total{function="thumbnail"}']
        # warm: keep-alive to an instance kept warm, paired with a direct socketpair round trip
        direct = Direct()
        warm: list[float] = []
        floor: list[float] = []
        warm_request = http.request_bytes("POST", "/warm", body)
        with http.connect(port) as sock:
            for i in range(run.pick(quick=600, full=3000)):
                started = time.perf_counter()
                status, _ = http.exchange(sock, warm_request)
                warm.append(time.perf_counter() - started)
                assert status == 200, status
                floor.append(direct.call(i))
        direct.close()
        # burst: 200 first requests at once to a function at zero (max_instances 200)
        burst_request = http.request_bytes("POST", "/burst", body)
        assert http.once(port, burst_request)[0] == 200
        wait_for_zero(daemon, "burst", settle=0.2)
        before = daemon.metrics()['shoal_function_instance_starts_total{function="burst"}']
        outcomes = uvloop.run(http_burst(port, burst_request, 200))
        after = daemon.metrics()['shoal_function_instance_starts_total{function="burst"}']
    latencies = [t for _, t in outcomes]
    print(
        f"functions via gateway: cold {ms(cold)} ({int(counted) - 1} counted cold of "
        f"{len(cold)}); fresh {ms(baseline)}; warm {ms(warm)}; direct {ms(floor)}; "
        f"burst {ms(latencies)}, {int(after - before)} instances",
        file=sys.stderr,
    )
    return {
        "cold": cold,
        "counted_cold": int(counted) - 1,
        "baseline": baseline,
        "warm": warm,
        "floor": floor,
        "burst": {
            "ok": sum(ok for ok, _ in outcomes),
            "latencies": latencies,
            "instances": int(after - before),
        },
    }


async def measure_all(run: Run) -> dict[str, Any]:
    sandbox = Sandbox.detect()
    forkserver = Forkserver()
    await forkserver.start()
    try:
        results = await cold_starts(run, forkserver, sandbox)
        results.update(await warm_and_uss(run, forkserver, sandbox))
    finally:
        await forkserver.stop()
    results["limits"] = "with memory cgroups" if sandbox.memory else "without memory cgroups"
    return results


def measure(run: Run) -> Iterator[Figure]:
    """Through the gateway: cold, warm, burst; the pool alone (where the time goes); instance
    USS; 1,000 idle pools' daemon RSS."""
    g = through_gateway(run)
    r = uvloop.run(measure_all(run))
    fresh = "fresh python3 per invocation"
    note = (
        "examples/shop thumbnail; HTTP POST through a `shoal up -d` daemon's gateway, a new "
        f"connection each; scaled to zero between samples; {r['limits']}"
    )
    yield from_samples(
        "cold start through the gateway, p50",
        g["cold"],
        stat="p50",
        baseline=(fresh, g["baseline"]),
        target=at_most(0.1, source=DESIGN),
        note=note + "; DESIGN: >= 10x faster than the fresh process",
    )
    yield from_samples(
        "cold start through the gateway, p50 (value)",
        g["cold"],
        stat="p50",
        target=at_most(5, on="value", source=DESIGN),
        note=f"first response from a function with no instance ({g['counted_cold']} counted cold "
        "by the daemon's /metrics)",
    )
    yield from_samples(
        "cold start through the gateway, p99",
        g["cold"],
        stat="p99",
        baseline=(fresh, g["baseline"]),
        target=at_most(20, on="value", source=DESIGN),
        note="nearest-rank p99",
    )
    overhead = [a - b for a, b in zip(g["warm"], g["floor"], strict=True)]
    yield from_samples(
        "warm invocation through the gateway, p50",
        g["warm"],
        stat="p50",
        baseline=("the handler in a process called over a socketpair", g["floor"]),
        note="keep-alive HTTP POST to a function with a warm instance",
    )
    yield from_samples(
        "warm invocation overhead through the gateway, p50",
        overhead,
        stat="p50",
        target=at_most(0.5, on="value", source=DESIGN),
        note="gateway round trip minus the direct one, paired samples",
    )
    burst_result = g["burst"]
    yield Figure(
        name="burst through the gateway: 200 concurrent first requests, successes",
        value=float(burst_result["ok"]),
        unit="ok",
        target=at_least(200, on="value", source=DESIGN),
        samples=200,
        note=f"max_instances 200; {burst_result['instances']} instances started",
    )
    yield from_samples(
        "burst through the gateway: 200 concurrent first requests, p99",
        burst_result["latencies"],
        stat="p99",
        target=at_most(150, on="value", source=DESIGN),
        note="200 connections open first; latency from the burst's start; scaled to zero before",
    )
    yield from_samples(
        "of which the pool alone: cold start, p50",
        r["cold"],
        stat="p50",
        baseline=(fresh, r["baseline"]),
        note="FunctionPool.invoke in-process on uvloop, no HTTP: take the standby, answer",
    )
    yield from_samples(
        "of which the pool alone, standby instances off: cold start, p50",
        r["forked"],
        stat="p50",
        baseline=("the pool with standby instances (above)", r["cold"]),
        note="every cold start forks its instance (FunctionPool(standby=False)), interleaved",
    )
    yield from_samples(
        "USS of a function's standby instance at zero, median",
        r["standby_uss"],
        unit="MB",
        scale=1 / (1 << 20),
        note="Private_* of the standby forked ahead of the next scale-up, idle",
    )
    yield from_samples(
        "deep cold start via pool (template stopped too), p50",
        r["deep"],
        stat="p50",
        baseline=(fresh, r["baseline"]),
        target=at_most(0.5),
        note="fork a template from the forkserver, import the handler, fork an instance",
    )
    yield from_samples(
        "of which the pool alone: warm invocation overhead, p50",
        [a - b for a, b in zip(r["warm"], r["floor"], strict=True)],
        stat="p50",
        note="invoke() on uvloop minus a blocking round trip to a bare process, paired",
    )
    yield from_samples(
        "USS per warm instance, median",
        r["uss"],
        unit="MB",
        scale=1 / (1 << 20),
        baseline=("fresh python3 serving the same handler", [r["direct_uss"]]),
        target=at_most(5, on="value", source=DESIGN),
        note="Private_* of /proc/PID/smaps_rollup after several invocations each",
    )
    idle = [idle_daemon(1000) for _ in range(run.pick(quick=1, full=3))]
    empty = [idle_daemon(0) for _ in range(len(idle))]
    assert all(i["processes_held"] == 0 for i in idle)
    yield from_samples(
        "daemon RSS with 1,000 functions at zero",
        [float(i["rss"]) for i in idle],
        unit="MB",
        scale=1 / (1 << 20),
        baseline=("the same process with no function", [float(e["rss"]) for e in empty]),
        target=at_most(150, on="value", source=DESIGN),
        note=(
            "imports shoal.daemon.running; pools hold no process; the forkserver's USS is "
            f"{(idle[0]['forkserver_uss'] or 0) / (1 << 20):.1f} MB on top"
        ),
    )


if __name__ == "__main__":
    sys.exit(main("functions", measure))
