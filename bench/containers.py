"""Container start-to-ready: shoal's container runtime vs bare ``docker run``, same probe.

DESIGN.md §6: "container service: `shoal` start-to-ready within 1.2x of bare `docker run` +
health".

One round starts the busybox test image (``httpd`` on 8080, published on a free 127.0.0.1
port) twice, in alternating order:

- **shoal**: :meth:`ContainerRuntime.start` (image check, create + start in one thread call,
  the log follower) and then the probe loop;
- **baseline**: ``docker run -d -p 127.0.0.1:PORT:8080 IMAGE`` (the CLI, as a user would) and
  then the same probe loop.

The probe loop is ``GET /healthz`` every 10 ms until a 200: the same function for both, so the
figure is what shoal's runtime adds around the engine. Each container is removed after its sample.

A second figure goes through the whole daemon: a project (``shoal up -d``) with a container
service at zero replicas. Each sample is ``scale web=1`` through the control API, timed until
the API shows the replica ready (the supervisor started the container and shoal's own health
probe passed; polled every 10 ms) and a ``GET /healthz`` on its 127.0.0.1 port answers 200.
Then ``scale web=0`` (untimed) and the next sample. Its baseline is again ``docker run`` + the
probe loop, interleaved with it.

Skips (exit 1 with the reason) where no Docker Engine answers.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import from the repo root, not bench/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import asyncio
import http.client
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator

from bench.figures import Figure, at_most
from bench.harness import Run, from_samples, main
from bench.http import free_port
from shoal.api.client import Client
from shoal.runtimes.base import InstanceSpec
from shoal.runtimes.container import ContainerRuntime, busybox_image, reachable
from shoal.store import state_dir

DESIGN = "DESIGN.md §6"
PROBE_EVERY = 0.01


def probe_until_ready(port: int, timeout: float = 30.0) -> None:
    """GET /healthz every 10 ms until it answers 200 (the same loop for both sides)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        try:
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        finally:
            connection.close()
        time.sleep(PROBE_EVERY)
    raise TimeoutError(f"127.0.0.1:{port} not ready within {timeout}s")


def bare(docker: str, image: str, app: str) -> float:
    port = free_port()
    started = time.perf_counter()
    container = subprocess.run(
        [docker, "run", "-d", "--label", f"io.shoal.app={app}", "-e", "PORT=8080",
         "-p", f"127.0.0.1:{port}:8080", image],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    probe_until_ready(port)
    took = time.perf_counter() - started
    subprocess.run([docker, "rm", "-f", container], check=True, capture_output=True)
    return took


async def under_shoal(runtime: ContainerRuntime, image: str, app: str, logs: Path) -> float:
    spec = InstanceSpec(
        app=app, kind="service", name="web", ordinal=0, revision="bench", command=None,
        env={"PORT": "8080"}, port=8080, host_port=free_port(), stop_grace=0,
        log_path=logs / "web-0.raw", image=image,
    )  # fmt: skip
    started = time.perf_counter()
    handle = await runtime.start(spec)
    await asyncio.to_thread(probe_until_ready, spec.host_port or 0)
    took = time.perf_counter() - started
    await runtime.stop(handle, grace=0)
    return took


def through_daemon(rounds: int, docker: str, image: str) -> tuple[list[float], list[float]]:
    """Samples of ``scale web=1`` -> ready under the daemon, and interleaved docker run ones."""
    daemon: list[float] = []
    baseline: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        app = f"bench-ct-{time.time_ns()}"
        (root / "shoal.yaml").write_text(
            f"name: {app}\n"
            f"gateway: {{port: {free_port()}}}\n"
            "services:\n"
            "  web:\n"
            "    runtime: container\n"
            f"    image: {image}\n"
            "    replicas: 0\n"
            "    health: {http: /healthz, interval: 1s}\n"
            "    stop_grace_period: 0s\n"
        )

        def shoal(*args: str) -> subprocess.CompletedProcess[bytes]:
            command = [sys.executable, "-m", "shoal", *args]
            return subprocess.run(command, cwd=root, check=False, capture_output=True)

        up = shoal("up", "-d")
        if up.returncode != 0:
            raise RuntimeError(f"shoal up -d failed: {up.stdout!r} {up.stderr!r}")
        state = state_dir(root / "shoal.yaml")
        client = Client.for_state(state)
        try:
            for i in range(rounds + 1):  # the first round warms up
                if i % 2:
                    bare_sample = bare(docker, image, app)
                sample = scale_up_to_ready(client)
                if i % 2 == 0:
                    bare_sample = bare(docker, image, app)
                if i:
                    daemon.append(sample)
                    baseline.append(bare_sample)
                client.scale("web", 0)
                deadline = time.monotonic() + 30
                while client.instances() and time.monotonic() < deadline:
                    time.sleep(0.05)
        finally:
            down = shoal("down", "--timeout", "30")
            if down.returncode != 0:
                print(f"shoal down: {down.stdout!r} {down.stderr!r}", file=sys.stderr)
    return daemon, baseline


def scale_up_to_ready(client: Client) -> float:
    """``scale web=1``, then the API polled every 10 ms until the replica is ready, then the
    probe loop on its port (one GET, normally); seconds."""
    started = time.perf_counter()
    client.scale("web", 1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready = [row for row in client.instances() if row.name == "web" and row.ready]
        if ready and ready[0].port is not None:
            probe_until_ready(ready[0].port)
            return time.perf_counter() - started
        time.sleep(PROBE_EVERY)
    raise TimeoutError("web not ready within 60 s of scale web=1")


def measure(run: Run) -> Iterator[Figure]:
    """Start-to-ready of a container under shoal vs bare docker run, same image and probe."""
    problem = reachable()
    docker = shutil.which("docker")
    if problem is not None or docker is None:
        raise SystemExit(f"skipped: {problem or 'no docker client on PATH'}")
    image = busybox_image()
    app = f"bench-containers-{time.time_ns()}"
    rounds = run.pick(quick=5, full=15)
    shoal_samples: list[float] = []
    bare_samples: list[float] = []

    async def rounds_of() -> None:
        runtime = ContainerRuntime()
        with tempfile.TemporaryDirectory() as logs:
            try:
                await under_shoal(runtime, image, app, Path(logs))  # warm both paths once
                await asyncio.to_thread(bare, docker, image, app)
                for i in range(rounds):
                    if i % 2:
                        bare_samples.append(await asyncio.to_thread(bare, docker, image, app))
                        shoal_samples.append(await under_shoal(runtime, image, app, Path(logs)))
                    else:
                        shoal_samples.append(await under_shoal(runtime, image, app, Path(logs)))
                        bare_samples.append(await asyncio.to_thread(bare, docker, image, app))
            finally:
                await runtime.close()

    asyncio.run(rounds_of())
    yield from_samples(
        "container start-to-ready (busybox httpd), median",
        shoal_samples,
        baseline=("docker run -d + the same probe loop", bare_samples),
        target=at_most(1.2, source=DESIGN),
        note=f"{rounds} rounds, alternating order; /healthz probed every 10 ms on 127.0.0.1",
    )
    daemon, baseline = through_daemon(rounds, docker, image)
    yield from_samples(
        "through the daemon: scale web=1 -> ready (API) and serving, median",
        daemon,
        baseline=("docker run -d + the same probe loop", baseline),
        target=at_most(1.2, source=DESIGN),
        note="control API, supervisor, runtime, shoal's health probe; API polled every 10 ms",
    )


if __name__ == "__main__":
    sys.exit(main("containers", measure))
