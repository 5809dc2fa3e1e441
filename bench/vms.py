"""microVM services: cold boot and snapshot restore to first HTTP 200, RSS per VM, bake time.

DESIGN.md §6: "microVM service: restore from snapshot to first HTTP response <= 0.25 s; cold
boot <= 3 s under TCG (this host has no hardware KVM), <= 0.6 s with KVM".

Everything goes through :class:`~shoal.runtimes.vm.VmRuntime` (no daemon, no gateway): the clock
starts before ``start()`` and stops at the first ``200`` from ``GET /healthz`` on the forwarded
127.0.0.1 port, polled every 5 ms by the same loop for every figure.

- **cold boot**: the first start of a fresh image, then (full runs) a runtime with snapshots
  off; each sample boots the kernel, the guest init (stage one, then PID 1) and the service
  (``start()`` returns when the guest init says the port accepts; the instance log has the
  guest's timeline). Baseline: the same app as a plain ``python3`` on this host.
- **restore**: one snapshot of a fresh boot (made once, like the runtime does after the first
  healthy instance), then each sample restores a clone (RAM file mapped private, device state
  loaded, clock and entropy synced over the control line): the standby clone the runtime
  restored ahead after the previous start (its command frozen until the sync), as it does under
  a daemon. Baseline: the cold boot. The minimal app's restores are also timed with standbys off
  (each restore launches its qemu, loads the state and runs the guest's first paths itself).
- **RSS per VM**: the qemu process's RSS while serving, restored clone vs cold-booted VM.
- **bake**: cached (nothing to do), service disk only (a code change) and, in full runs only, a
  cold bake into an empty cache but for the guest kernel (gcc, mmdebstrap, mkfs: about a minute;
  the kernel's own build, once per machine, takes several minutes of ``make``).

Two apps, each measured both ways. The targets are checked on a **minimal app** (``socket``
only, a fixed reply): it is the platform's cold boot and restore, and the kind of service
DESIGN.md's own reference figures were measured with (TCG cold boot 2.7 s, restore 0.2 s).
The same steps with a stdlib ``http.server`` app (a fresh nonce, so its image is new each run)
are reported beside them: under TCG every code path an app runs is translated anew, in every
clone too, so that app adds about 1.5 s of imports to a cold boot and about 0.1 s to its first
request after a restore. A restore of it is also timed to the moment ``start()`` returns (the
clone confirmed its clock and entropy): the platform's part.
The machine is shared: load averages are in the notes.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import from the repo root, not bench/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from bench.figures import Figure, at_most
from bench.harness import Run, from_samples, main
from shoal.runtimes import procfs
from shoal.runtimes.base import Handle, InstanceSpec, Limits
from shoal.runtimes.vm import Baker, VmRuntime, hosting
from shoal.runtimes.vm.running import inputs_of

DESIGN = "DESIGN.md §6"
PROBE_EVERY = 0.005
APP = """
import os
from http.server import BaseHTTPRequestHandler, HTTPServer
NONCE = {nonce!r}
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = NONCE.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
HTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
"""
MINIMAL = """
import os, socket
NONCE = {nonce!r}
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", int(os.environ["PORT"])))
server.listen(64)
while True:
    conn, _ = server.accept()
    conn.recv(65536)
    conn.sendall(b"HTTP/1.0 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
    conn.close()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def first_200(port: int, timeout: float = 120.0) -> None:
    """``GET /healthz`` every 5 ms until a 200 (slirp accepts before the guest listens)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        with contextlib.suppress(OSError):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n")
                await writer.drain()
                line = await asyncio.wait_for(reader.readline(), 5)
                if line.startswith(b"HTTP/1.0 200") or line.startswith(b"HTTP/1.1 200"):
                    return
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
        await asyncio.sleep(PROBE_EVERY)
    raise TimeoutError(f"127.0.0.1:{port} gave no 200 within {timeout}s")


def spec_for(app: Path, logs: Path, ordinal: int) -> InstanceSpec:
    return InstanceSpec(
        app="benchvm",
        kind="service",
        name="bench",
        ordinal=ordinal,
        revision="r",
        command=("python3", "app.py"),
        env={
            "PORT": "8080",
            "SHOAL_APP": "benchvm",
            "SHOAL_SERVICE": "bench",
            "SHOAL_STATE": str(logs.parent / "state"),  # as a daemon's: standby qemus on
        },
        port=8080,
        host_port=free_port(),
        limits=Limits(memory_bytes=256 << 20, cpus=1),
        stop_grace=2.0,
        log_path=logs / f"bench-{ordinal}.log",
        build=app,
    )


async def timed_start(runtime: VmRuntime, spec: InstanceSpec) -> tuple[float, Handle, int, float]:
    """Seconds from start() to the first 200; the handle; qemu's RSS once serving; seconds
    start() itself took (for a restore: until the clone confirmed its clock and entropy)."""
    started = time.perf_counter()
    handle = await runtime.start(spec)
    returned = time.perf_counter() - started
    assert spec.host_port is not None
    await first_200(spec.host_port)
    took = time.perf_counter() - started
    stats = await runtime.stats(handle)
    return took, handle, stats.rss_bytes if stats else 0, returned


def bare_python(app: Path) -> float:
    """The same app as a plain python3 on this host, to its first 200 (the baseline)."""
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=app,
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        asyncio.run(first_200(port))
        return time.perf_counter() - started
    finally:
        process.kill()
        process.wait()


async def measure_vms(run: Run, app: Path, logs: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"cold": [], "cold_rss": [], "restore": [], "restore_rss": []}
    out["synced"] = []
    baker = Baker()
    started = time.perf_counter()
    await baker.kernel()
    await baker.base()
    (app / "app.py").write_text(APP.format(nonce=f"bench-{time.time_ns()}"))
    t0 = time.perf_counter()
    await baker.bake(inputs_of(spec_for(app, logs, 0)))
    out["bake_service"] = [time.perf_counter() - t0]
    out["bake_cached"] = []
    for _ in range(run.pick(quick=3, full=5)):
        t0 = time.perf_counter()
        await baker.bake(inputs_of(spec_for(app, logs, 0)))
        out["bake_cached"].append(time.perf_counter() - t0)
    out["prepared_in"] = time.perf_counter() - started

    warm = VmRuntime()
    try:
        first = spec_for(app, logs, 100)
        took, handle, rss, _ = await timed_start(warm, first)  # a cold boot; snapshot follows
        out["cold"].append(took)
        out["cold_rss"].append(rss)
        for maker in list(warm._makers.values()):
            await maker
        await warm.stop(handle, 2.0)
        for index in range(run.pick(quick=3, full=7)):
            took, handle, rss, synced = await timed_start(warm, spec_for(app, logs, 200 + index))
            out["restore"].append(took)
            out["synced"].append(synced)
            out["restore_rss"].append(rss)
            await warm.stop(handle, 2.0)
    finally:
        await warm.close()

    for took, rss in await cold_boots(run.pick(quick=0, full=4), app, logs, first=0):
        out["cold"].append(took)
        out["cold_rss"].append(rss)
    return out


async def measure_minimal(run: Run, app: Path, logs: Path) -> dict[str, list[float]]:
    """Cold boots and restores of the minimal app, as :func:`measure_vms` does them; then
    restores with standby qemus off (each into a qemu launched for it)."""
    out: dict[str, list[float]] = {"cold": [], "restore": [], "fresh_qemu": [], "standby_rss": []}
    runtime = VmRuntime()
    try:
        took, handle, _, _ = await timed_start(runtime, spec_for(app, logs, 300))
        out["cold"].append(took)
        for maker in list(runtime._makers.values()):
            await maker
        await runtime.stop(handle, 2.0)
        for index in range(run.pick(quick=3, full=7)):
            took, handle, _, _ = await timed_start(runtime, spec_for(app, logs, 400 + index))
            out["restore"].append(took)
            await runtime.stop(handle, 2.0)
        measured = procfs.usage(sorted(runtime.standbys.pids()))
        out["standby_rss"] = [float(measured[1])] if measured else []
    finally:
        await runtime.close()
    fresh = VmRuntime(standby=False)
    try:
        for index in range(run.pick(quick=3, full=7)):
            took, handle, _, _ = await timed_start(fresh, spec_for(app, logs, 450 + index))
            out["fresh_qemu"].append(took)
            await fresh.stop(handle, 2.0)
    finally:
        await fresh.close()
    for took, _ in await cold_boots(run.pick(quick=0, full=4), app, logs, first=500):
        out["cold"].append(took)
    return out


async def cold_boots(count: int, app: Path, logs: Path, first: int) -> list[tuple[float, int]]:
    """``count`` cold boots of ``app`` with snapshots off: (seconds to first 200, RSS) each."""
    samples: list[tuple[float, int]] = []
    cold = VmRuntime(snapshots=False)
    try:
        for index in range(count):
            took, handle, rss, _ = await timed_start(cold, spec_for(app, logs, first + index))
            samples.append((took, rss))
            await cold.stop(handle, 2.0)
    finally:
        await cold.close()
    return samples


async def cold_bake(inputs_app: Path, logs: Path) -> float:
    """A bake into an empty cache but for the kernel: gcc, mmdebstrap, mkfs (full runs only).

    The guest kernel's build (several minutes of ``make``, once per machine) is left out: its
    folder is linked in from the shared cache, so a full run stays within its time budget.
    """
    kernel = await Baker().kernel()
    with tempfile.TemporaryDirectory(prefix="shoal-bench-cache-") as cache:
        baker = Baker(Path(cache))
        (Path(cache) / kernel.parent.name).mkdir()
        os.link(kernel, Path(cache) / kernel.parent.name / kernel.name)
        started = time.perf_counter()
        await baker.bake(inputs_of(spec_for(inputs_app, logs, 0)))
        return time.perf_counter() - started


def measure(run: Run) -> Iterator[Figure]:
    hosting.require("qemu-system-x86_64")
    host = hosting.detect()
    with tempfile.TemporaryDirectory(prefix="shoal-bench-vm-") as temp:
        app = Path(temp) / "app"
        logs = Path(temp) / "logs"
        app.mkdir()
        logs.mkdir()
        (app / "app.py").write_text(APP.format(nonce="baseline"))
        baseline = [bare_python(app) for _ in range(run.pick(quick=3, full=5))]
        load_before = os.getloadavg()[0]
        r = asyncio.run(measure_vms(run, app, logs))
        minimal_app = Path(temp) / "minimal"
        minimal_app.mkdir()
        (minimal_app / "app.py").write_text(MINIMAL.format(nonce=f"bench-{time.time_ns()}"))
        minimal_baseline = [bare_python(minimal_app) for _ in range(run.pick(quick=3, full=5))]
        m = asyncio.run(measure_minimal(run, minimal_app, logs))
        load_after = os.getloadavg()[0]
        cold_bake_s = None if run.quick else asyncio.run(cold_bake(app, logs))
    load = f"load average {load_before:.1f} before, {load_after:.1f} after (2 cores, shared)"
    yield from_samples(
        f"VM cold boot to first HTTP 200 ({host.accel.upper()}), minimal app",
        m["cold"],
        unit="s",
        scale=1.0,
        baseline=("the same app as python3 on the host", minimal_baseline),
        target=at_most(3.0 if host.accel == "tcg" else 0.6, on="value", source=DESIGN),
        note=f"{host.why}; 256 MiB, 1 vCPU; kernel + guest init + python3 with socket; {load}",
    )
    yield from_samples(
        "VM restore from snapshot to first HTTP 200, minimal app",
        m["restore"],
        unit="s",
        scale=1.0,
        baseline=("cold boot", m["cold"]),
        target=at_most(0.25, on="value", source=DESIGN),
        note="taking over the standby clone restored after the previous start: port, console, "
        f"clock/entropy sync, thaw, first request; {load}",
    )
    yield from_samples(
        "VM restore with standby clones off, minimal app",
        m["fresh_qemu"],
        unit="s",
        scale=1.0,
        baseline=("taking over a standby clone", m["restore"]),
        note="each restore launches qemu, loads the state and runs the guest's first kernel "
        "paths itself (translated anew under TCG); a standby clone costs "
        + (
            f"{m['standby_rss'][0] / (1 << 20):.0f} MiB RSS while idle"
            if m["standby_rss"]
            else "an idle qemu"
        ),
    )
    yield from_samples(
        "VM cold boot, http.server app",
        r["cold"],
        unit="s",
        scale=1.0,
        baseline=("the minimal app", m["cold"]),
        note="the same with a stdlib http.server app: its own imports take about 1.5 s under "
        f"TCG; as python3 on the host it starts in {statistics.median(baseline):.3f} s; {load}",
    )
    yield from_samples(
        "VM restore, http.server app",
        r["restore"],
        unit="s",
        scale=1.0,
        baseline=("the minimal app", m["restore"]),
        note="its first request runs much more code, every path translated anew in each clone; "
        f"{load}",
    )
    yield from_samples(
        "VM restore: start() until the clone confirmed clock and entropy",
        r["synced"],
        unit="s",
        scale=1.0,
        baseline=("restore to first HTTP 200, http.server app", r["restore"]),
        note="the platform's part of a restore (the rest is the app's first request, every "
        "code path translated anew under TCG); the instance log has the steps",
    )
    yield from_samples(
        "RSS per VM, restored clone",
        [float(x) for x in r["restore_rss"]],
        unit="MiB",
        scale=1 / (1 << 20),
        baseline=("cold-booted VM", [float(x) for x in r["cold_rss"]]),
        note="qemu's RSS while serving; the clone maps the snapshot's RAM file private",
    )
    yield from_samples(
        "bake, everything cached",
        r["bake_cached"],
        unit="ms",
        baseline=("bake of the service disk only (a code change)", r["bake_service"]),
        note="content hashes of the build folder and recipes, then nothing to do",
    )
    yield from_samples(
        "bake of the service disk only (a code change)",
        r["bake_service"],
        unit="s",
        scale=1.0,
        note="copy the build folder, mkfs.ext4 -d; kernel and base root filesystem cached",
    )
    if cold_bake_s is not None:
        yield Figure(
            name="bake into an empty cache",
            value=cold_bake_s,
            unit="s",
            samples=1,
            note="gcc (guest init + initramfs), mmdebstrap minbase + python3, mkfs.ext4 -d; "
            f"the kernel's build (minutes, once per machine) not included; {load}",
        )


if __name__ == "__main__":
    sys.exit(main("vms", measure))
