"""The gateway's throughput and latency against nginx as a reverse proxy, same backend, same run.

Three targets, all on 127.0.0.1, each hammered by ``wrk -t1`` for a fixed time, at 16 and 64
connections, interleaved round by round (who goes first rotates):

- **direct**: the backend itself, an nginx (one worker) serving a 1 KiB file;
- **nginx**: an nginx (one worker) configured here as a keep-alive reverse proxy to that backend,
  with what a gateway does switched on: X-Forwarded-For/-Proto/-Host and X-Request-Id headers,
  body and header limits, a buffered access log;
- **shoal**: :class:`shoal.gateway.Gateway` in its own process on uvloop, every feature on: a route
  table of services, a host route and a function trigger, the manifest's limits, per-route
  metrics, and an access-log sink (a bounded deque: the cheapest real consumer).

Figures: requests/s of shoal against nginx's (DESIGN.md §6: >= 0.85x), p99 latency against
nginx's (<= 1.5x), the p50/p99 latency each proxy adds over hitting the backend directly, and the
CPU time (user + system, from ``/proc``) each proxy process spends per request. On a shared 2-core
machine that last one is the steadiest: wrk, the backend and the proxy compete for the same two
cores, so requests/s moves with whatever else runs, while CPU per request mostly does not.
One process each: the gateway is one process, so nginx gets one worker. ``--quick``: one round of
3 s per point; full: three rounds of 10 s. Needs ``wrk`` and ``nginx`` (Debian packages).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import from the repo root, not bench/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import asyncio
import collections
import contextlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import uvloop

from bench.figures import Baseline, Figure, at_least, at_most
from bench.harness import Run, main
from bench.http import free_port
from bench.stats import cv
from shoal.gateway import Gateway, compile_routes
from shoal.manifest import Manifest

CONCURRENCY = (16, 64)
BODY = bytes(range(97, 123)) * 39 + b"0123456789"  # 1024 bytes
MANIFEST = {
    "name": "bench",
    "gateway": {"timeout": "30s", "max_body": "6M", "max_header": "32K"},
    "services": {
        "api": {"command": ["x"], "routes": [{"path": "/api", "strip_prefix": True}]},
        "catalog": {"command": ["x"], "routes": ["/catalog", "/catalog-v2"]},
        "orders": {"command": ["x"], "routes": ["/orders"]},
        "shop": {"command": ["x"], "routes": [{"path": "/", "host": "shop.local"}]},
    },
    "functions": {
        "thumb": {
            "handler": "f.py:handler",
            "triggers": [{"http": {"path": "/thumb", "methods": ["POST"]}}],
        }
    },
}


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before listening")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


NGINX_COMMON = """
worker_processes 1;
daemon off;
pid {dir}/{name}.pid;
error_log {dir}/{name}-error.log warn;
events {{ worker_connections 4096; }}
http {{
  client_body_temp_path {dir}/tmp-body;
  proxy_temp_path {dir}/tmp-proxy;
  fastcgi_temp_path {dir}/tmp-fastcgi;
  uwsgi_temp_path {dir}/tmp-uwsgi;
  scgi_temp_path {dir}/tmp-scgi;
  keepalive_requests 1000000;
  {http}
}}
"""

BACKEND = """
  access_log off;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{ root {dir}/www; }}
  }}
"""

PROXY = """
  access_log {dir}/proxy-access.log combined buffer=64k flush=1s;
  upstream backend {{ server 127.0.0.1:{backend}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    client_max_body_size 6m;
    large_client_header_buffers 4 32k;
    location /api/ {{
      proxy_pass http://backend/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Request-Id $request_id;
      proxy_read_timeout 30s;
    }}
  }}
"""


def nginx_config(folder: Path, name: str, http: str) -> Path:
    path = folder / f"{name}.conf"
    path.write_text(NGINX_COMMON.format(dir=folder, name=name, http=http))
    return path


def serve_gateway() -> None:
    """The gateway child: ``python -c 'from bench.gateway import serve_gateway; ...'``.

    Reads the backend's port from ``SHOAL_BENCH_BACKEND``, prints ``PORT <n>`` once listening.
    """

    async def run() -> None:
        manifest = Manifest.model_validate(MANIFEST)
        sink: collections.deque[str] = collections.deque(maxlen=4096)
        gateway = Gateway(manifest.gateway, compile_routes(manifest), access_log=sink.append)
        port = await gateway.start("127.0.0.1", 0)
        gateway.set_endpoints("api", [(0, int(os.environ["SHOAL_BENCH_BACKEND"]))])
        print(f"PORT {port}", flush=True)
        await asyncio.Event().wait()

    uvloop.run(run())


@dataclass
class Sample:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int = 0
    cpu_us: float = 0.0  # CPU time of the proxy's processes per request, microseconds


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes ``pids`` used so far (0 for one that is gone)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / tick


def family(pid: int) -> list[int]:
    """``pid`` and its children (nginx: the master and its worker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [pid, *(int(c) for c in children.read_text().split())]
    except OSError:
        return [pid]


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def parse_wrk(out: str) -> Sample:
    """Requests/s and the p50/p99 latency (ms) of ``wrk --latency`` output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    count = re.search(r"(\d+) requests in", out)
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.MULTILINE))
    if rps is None or "50" not in lat or "99" not in lat:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors is not None:
        raise RuntimeError(f"wrk saw {errors.group(1)} error responses:\n{out}")

    def ms(text: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
        return float(value) * _UNITS[unit]

    requests = int(count.group(1)) if count is not None else 0
    return Sample(float(rps.group(1)), ms(lat["50"]), ms(lat["99"]), requests)


def wrk(url: str, connections: int, seconds: int, pids: list[int] | None = None) -> Sample:
    """One wrk run; with ``pids``, also the CPU time those processes spent per request."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    before = cpu_seconds(pids or [])
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=seconds + 30)
    used = cpu_seconds(pids or []) - before
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr}")
    sample = parse_wrk(done.stdout)
    if sample.requests:
        sample.cpu_us = used / sample.requests * 1e6
    return sample


@contextlib.contextmanager
def processes(folder: Path, root: Path) -> Iterator[dict[str, tuple[str, list[int]]]]:
    """Start the backend, the nginx proxy and the gateway; yield each target's URL and pids."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists() or shutil.which("wrk") is None:
        raise RuntimeError("bench/gateway.py needs wrk and nginx: apt-get install wrk nginx-light")
    (folder / "www").mkdir()
    (folder / "www" / "file.txt").write_bytes(BODY)
    for path in [folder, *folder.rglob("*")]:  # nginx workers may run as nobody
        path.chmod(0o755 if path.is_dir() else 0o644)
    ports = {"backend": free_port(), "proxy": free_port()}
    backend_conf = nginx_config(
        folder, "backend", BACKEND.format(port=ports["backend"], dir=folder)
    )
    proxy_conf = nginx_config(
        folder, "proxy", PROXY.format(port=ports["proxy"], backend=ports["backend"], dir=folder)
    )
    started: list[subprocess.Popen[bytes]] = []
    try:
        for conf in (backend_conf, proxy_conf):
            proc = subprocess.Popen(
                [nginx, "-p", str(folder), "-c", str(conf), "-e", str(folder / "nginx.log")],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            started.append(proc)
        wait_for_port(ports["backend"], started[0])
        wait_for_port(ports["proxy"], started[1])
        env = {**os.environ, "SHOAL_BENCH_BACKEND": str(ports["backend"])}
        gateway = subprocess.Popen(
            [sys.executable, "-c", "from bench.gateway import serve_gateway; serve_gateway()"],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
        )
        started.append(gateway)
        assert gateway.stdout is not None
        line = gateway.stdout.readline().decode()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the gateway did not start: {line!r}")
        port = int(line.split()[1])
        yield {
            "direct": (f"http://127.0.0.1:{ports['backend']}/file.txt", family(started[0].pid)),
            "nginx": (f"http://127.0.0.1:{ports['proxy']}/api/file.txt", family(started[1].pid)),
            "shoal": (f"http://127.0.0.1:{port}/api/file.txt", [gateway.pid]),
        }
    finally:
        for proc in reversed(started):
            proc.terminate()
        for proc in started:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def measure(run: Run) -> Iterator[Figure]:
    """shoal's gateway vs nginx as a reverse proxy, and both vs the backend alone."""
    seconds = run.pick(quick=3, full=10)
    rounds = run.pick(quick=1, full=3)
    taken: dict[tuple[str, int], list[Sample]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="shoal-bench-gateway-") as tmp,
        processes(Path(tmp), run.root) as urls,
    ):
        for url, _ in urls.values():  # warm up: pools filled, code paths hot
            wrk(url, 64, 1)
        for r in range(rounds):
            for c in CONCURRENCY:
                order = list(urls)
                order = order[r % 3 :] + order[: r % 3]
                for name in order:
                    url, pids = urls[name]
                    sample = wrk(url, c, seconds, pids)
                    taken.setdefault((name, c), []).append(sample)
                    print(
                        f"gateway: c{c} {name}: {sample.rps:.0f} req/s, "
                        f"p50 {sample.p50_ms:.2f} ms, p99 {sample.p99_ms:.2f} ms, "
                        f"CPU {sample.cpu_us:.1f} us/request",
                        file=sys.stderr,
                    )
    for c in CONCURRENCY:
        yield from figures(taken, c, seconds)


def figures(taken: dict[tuple[str, int], list[Sample]], c: int, seconds: int) -> Iterator[Figure]:
    def med(name: str, field: str) -> float:
        return float(statistics.median(getattr(s, field) for s in taken[name, c]))

    shoal = taken["shoal", c]
    design = "DESIGN.md §6"
    yield Figure(
        name=f"requests/s through the gateway, {c} connections",
        value=round(med("shoal", "rps"), 1),
        unit="req/s",
        baseline=Baseline("nginx reverse proxy (1 worker)", round(med("nginx", "rps"), 1)),
        target=at_least(0.85, source=design),
        samples=len(shoal),
        cv=round(cv([s.rps for s in shoal]), 4),
        note=f"wrk -t1 -c{c} -d{seconds}s, 1 KiB file; direct: {med('direct', 'rps'):.0f} req/s",
    )
    yield Figure(
        name=f"p99 latency through the gateway, {c} connections",
        value=round(med("shoal", "p99_ms"), 3),
        unit="ms",
        baseline=Baseline("nginx reverse proxy (1 worker)", round(med("nginx", "p99_ms"), 3)),
        target=at_most(1.5, source=design),
        samples=len(shoal),
        cv=round(cv([s.p99_ms for s in shoal]), 4),
        note="wrk's p99 of the whole request",
    )
    yield Figure(
        name=f"CPU time per request in the proxy process, {c} connections",
        value=round(med("shoal", "cpu_us"), 1),
        unit="us",
        baseline=Baseline("nginx reverse proxy (1 worker)", round(med("nginx", "cpu_us"), 1)),
        samples=len(shoal),
        cv=round(cv([s.cpu_us for s in shoal]), 4),
        note=(
            "user + system time from /proc over the wrk run, per request: steadier than req/s "
            f"on a shared machine; the backend: {med('direct', 'cpu_us'):.1f} us/request"
        ),
    )
    for stat in ("p50", "p99"):
        field = f"{stat}_ms"
        direct = med("direct", field)
        yield Figure(
            name=f"{stat} latency added over the backend, {c} connections",
            value=round(med("shoal", field) - direct, 3),
            unit="ms",
            baseline=Baseline("added by nginx", round(med("nginx", field) - direct, 3)),
            samples=len(shoal),
            note=f"the backend alone: {stat} {direct:.3f} ms",
        )


if __name__ == "__main__":
    sys.exit(main("gateway", measure))
