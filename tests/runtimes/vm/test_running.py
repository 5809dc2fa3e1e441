"""VmRuntime on its own (no daemon): exit codes reported by the guest init, stop after the grace
period, adoption by a new runtime, sweep of an unrecorded qemu. Every VM here is a restore of one
snapshot made for the module (one cold boot + one snapshot, then about a second per VM)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.runtimes import procfs
from shoal.runtimes.base import Handle, InstanceSpec, Limits
from shoal.runtimes.vm import Baker, VmRuntime

pytestmark = [pytest.mark.timeout(120), pytest.mark.asyncio]
VMAPP = Path(__file__).with_name("vmapp")
ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def app(baked: Baker, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test app with a fresh VERSION, booted once and snapshotted (later VMs restore)."""
    folder = tmp_path_factory.mktemp("vmrun") / "vmapp"
    shutil.copytree(VMAPP, folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "VERSION").write_text(f"run-{time.time_ns()}\n")

    async def snapshot() -> None:
        runtime = VmRuntime()
        spec = make_spec(folder, 0)
        handle = await runtime.start(spec)  # a cold boot: returns once the guest listens
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{spec.host_port}/healthz", timeout=5):
                pass  # at once: no probe went into a guest whose network was not up
            assert "shoal-init: ready at" in spec.log_path.read_text()
            await asyncio.wait_for(asyncio.gather(*runtime._makers.values()), 240)
        finally:
            await runtime.stop(handle, 1.0)
            await runtime.close()

    asyncio.run(snapshot())
    return folder


@pytest.fixture(autouse=True)
def no_leftover_vms(app: Path) -> Iterator[None]:
    """Every VM of this module carries SHOAL_STATE=<module folder>: none may outlive a test."""
    yield
    left = procfs.with_environ({"SHOAL_STATE": state_of(app)})
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"qemu processes left running: {left}"


def state_of(app: Path) -> str:
    return str(app.parent / "state")


def make_spec(app: Path, ordinal: int, host_port: int | None = None) -> InstanceSpec:
    return InstanceSpec(
        app="vmtest",
        kind="service",
        name="run",
        ordinal=ordinal,
        revision="r",
        command=("python3", "app.py"),
        env={
            "PORT": "8080",
            "SHOAL_APP": "vmtest",
            "SHOAL_SERVICE": "run",
            "SHOAL_STATE": state_of(app),
            "SHOAL_INSTANCE": str(ordinal),
        },
        port=8080,
        host_port=host_port or free_port(),
        limits=Limits(),
        stop_grace=1.0,
        log_path=app.parent / "logs" / f"run-{ordinal}.log",
        build=app,
    )


def get(spec: InstanceSpec, path: str) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{spec.host_port}{path}", timeout=10) as r:
        body: dict[str, object] = json.loads(r.read())
        return body


async def test_the_commands_exit_code_is_the_instances(app: Path) -> None:
    runtime = VmRuntime()
    spec = make_spec(app, 1)
    try:
        handle = await runtime.start(spec)
        assert "restored from snapshot" in spec.log_path.read_text()
        assert (await asyncio.to_thread(get, spec, "/exit/3"))["exiting"] == 3
        ended = await asyncio.wait_for(runtime.wait(handle), 30)
        assert (ended.code, ended.reason) == (3, "exited with code 3")
        assert not procfs.is_alive(handle.pid or 0, handle.pid_start_time)
        assert not Path(handle.runtime_ref or "/nonexistent").exists()  # run folder removed
    finally:
        await runtime.close()


async def test_stop_kills_the_command_after_the_grace_period(app: Path) -> None:
    runtime = VmRuntime()
    spec = make_spec(app, 2)
    try:
        handle = await runtime.start(spec)
        await asyncio.to_thread(get, spec, "/ignore-term")
        started = time.monotonic()
        ended = await runtime.stop(handle, 1.0)
        took = time.monotonic() - started
        assert ended.signal == signal.SIGKILL, ended
        assert 0.9 < took < 10
    finally:
        await runtime.close()


def started_by_a_dead_daemon(app: Path, ordinal: int) -> tuple[InstanceSpec, Handle]:
    """A VM whose runtime's process exited without stopping it (see tests/.../starting.py)."""
    spec = make_spec(app, ordinal)
    result = subprocess.run(
        [sys.executable, "-m", "tests.runtimes.vm.starting", str(app), str(ordinal),
         str(spec.host_port)],
        cwd=ROOT, capture_output=True, text=True, timeout=90, check=True,
    )  # fmt: skip
    started = json.loads(result.stdout)
    handle = Handle(
        spec=spec,
        pid=started["pid"],
        pid_start_time=started["start"],
        host_port=spec.host_port,
        runtime_ref=started["ref"],
    )
    return spec, handle


async def test_a_new_runtime_adopts_then_stops_a_running_vm(app: Path) -> None:
    spec, handle = await asyncio.to_thread(started_by_a_dead_daemon, app, 3)
    runtime = VmRuntime()
    try:
        assert procfs.is_alive(handle.pid or 0, handle.pid_start_time)
        adopted = await runtime.adopt(handle)
        assert adopted is not None
        assert (await asyncio.to_thread(get, spec, "/healthz"))["ok"] is True
        ended = await runtime.stop(adopted, 2.0)
        assert ended.code == 0  # the app's exit, reported by the guest init over the new line
        await asyncio.sleep(0.1)
        assert not procfs.is_alive(handle.pid or 0, handle.pid_start_time)
        stale = await VmRuntime().adopt(handle)
        assert stale is None  # gone: not adopted again
    finally:
        await runtime.close()


async def test_sweep_kills_a_vm_nobody_recorded(app: Path) -> None:
    _, handle = await asyncio.to_thread(started_by_a_dead_daemon, app, 4)
    runtime = VmRuntime()
    identity = {"SHOAL_STATE": state_of(app), "SHOAL_SERVICE": "run", "SHOAL_INSTANCE": "4"}
    try:
        assert await runtime.sweep(identity) == [handle.pid]
        await asyncio.sleep(0.3)
        assert not procfs.is_alive(handle.pid or 0, handle.pid_start_time)
        assert not Path(handle.runtime_ref or "/nonexistent").exists()
    finally:
        await runtime.close()


@pytest.mark.parametrize("after", [0.05, 0.3])
async def test_a_start_cancelled_midway_leaves_no_qemu(app: Path, after: float) -> None:
    runtime = VmRuntime()
    spec = make_spec(app, 5)
    try:
        starting = asyncio.create_task(runtime.start(spec))
        await asyncio.sleep(after)
        if starting.done():  # too fast to catch: stop it the normal way
            await runtime.stop(starting.result(), 0)
        else:
            starting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await starting
    finally:
        await runtime.close()
    await asyncio.sleep(0.2)
    assert procfs.with_environ({"SHOAL_STATE": state_of(app)}) == []
