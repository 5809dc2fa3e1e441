"""VmRuntime on its own (no daemon): exit codes reported by the guest init, stop after the grace
period, adoption by a new runtime, sweep of an unrecorded qemu. Every VM here is a restore of one
snapshot made for the module (one cold boot + one snapshot, then about a second per VM)."""

from __future__ import annotations

import asyncio
import dataclasses
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
from typing import Any

import pytest

from shoal.runtimes import procfs
from shoal.runtimes.base import Handle, InstanceSpec, Limits
from shoal.runtimes.vm import Baker, VmRuntime, standbys

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


def started_by_a_dead_daemon(
    app: Path, ordinal: int, *extra: str
) -> tuple[InstanceSpec, Handle, dict[str, Any]]:
    """A VM whose runtime's process exited without stopping it (see tests/.../starting.py);
    the third item is everything that process printed."""
    spec = make_spec(app, ordinal)
    result = subprocess.run(
        [sys.executable, "-m", "tests.runtimes.vm.starting", str(app), str(ordinal),
         str(spec.host_port), *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=90, check=True,
    )  # fmt: skip
    started: dict[str, Any] = json.loads(result.stdout)
    handle = Handle(
        spec=spec,
        pid=started["pid"],
        pid_start_time=started["start"],
        host_port=spec.host_port,
        runtime_ref=started["ref"],
    )
    return spec, handle, started


async def test_a_new_runtime_adopts_then_stops_a_running_vm(app: Path) -> None:
    spec, handle, _ = await asyncio.to_thread(started_by_a_dead_daemon, app, 3)
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
    _, handle, _ = await asyncio.to_thread(started_by_a_dead_daemon, app, 4)
    runtime = VmRuntime()
    identity = {"SHOAL_STATE": state_of(app), "SHOAL_SERVICE": "run", "SHOAL_INSTANCE": "4"}
    try:
        assert await runtime.sweep(identity) == [handle.pid]
        await asyncio.sleep(0.3)
        assert not procfs.is_alive(handle.pid or 0, handle.pid_start_time)
        assert not Path(handle.runtime_ref or "/nonexistent").exists()
    finally:
        await runtime.close()


async def standing_by(runtime: VmRuntime) -> int:
    for _ in range(3000):
        if pids := runtime.standbys.pids():
            return pids.pop()
        await asyncio.sleep(0.01)
    raise AssertionError("no standby qemu within 30 s")


def environ(pid: int) -> dict[str, str]:
    items = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
    return dict(item.partition("=")[::2] for item in items if item)


async def test_a_start_takes_over_the_standby_qemu_launched_after_the_last(app: Path) -> None:
    runtime = VmRuntime()
    first, second = make_spec(app, 6), make_spec(app, 7)
    try:
        handle = await runtime.start(first)  # this runtime has no standby yet: a qemu of its own
        assert "(a standby clone)" not in first.log_path.read_text()
        standby = await standing_by(runtime)
        assert standby != handle.pid
        identity = environ(standby)
        assert identity["SHOAL_VM_STANDBY"] == "1" and identity["SHOAL_SERVICE"] == "run"
        assert "SHOAL_INSTANCE" not in identity  # which instance it becomes is not known yet
        with pytest.raises(ConnectionRefusedError):  # nothing forwarded to it yet
            socket.create_connection(("127.0.0.1", second.host_port or 0), timeout=1).close()

        taken = await runtime.start(second)
        assert taken.pid == standby
        assert "restored from snapshot" in second.log_path.read_text()
        assert "(a standby clone)" in second.log_path.read_text()
        whoami = await asyncio.to_thread(get, second, "/whoami")
        assert abs(float(str(whoami["time"])) - time.time()) < 5  # clock synced at take-over
        await asyncio.to_thread(get, second, "/print/from-the-taken-standby")
        assert await standing_by(runtime) not in (standby, handle.pid)  # the next one

        ended = await runtime.stop(taken, 2.0)
        assert ended.code == 0, ended
        assert "from-the-taken-standby" in second.log_path.read_text()  # console moved over
        assert not Path(taken.runtime_ref or "/nonexistent").exists()
        await runtime.stop(handle, 2.0)
    finally:
        await runtime.close()  # kills the standby: no_leftover_vms checks


async def test_a_standby_clones_command_runs_nothing_until_it_is_taken_over(app: Path) -> None:
    """The snapshot is taken with the command stopped; a standby clone runs its kernel ahead
    (primed), the command only once a start's sync thaws it."""
    runtime = VmRuntime()
    first = make_spec(app, 11)
    first = dataclasses.replace(first, env={**first.env, "VMAPP_TICK": "1"})  # its own image
    second = dataclasses.replace(make_spec(app, 12), env=first.env)
    try:
        handle = await runtime.start(first)  # a cold boot: its command ticks
        await asyncio.wait_for(asyncio.gather(*runtime._makers.values()), 240)
        await runtime.stop(handle, 1.0)
        assert "tick 3" in first.log_path.read_text()
        standby = await standing_by(runtime)
        await asyncio.sleep(1.0)  # 20 ticks, were it running
        standing = Path(environ(standby)["SHOAL_VM_RUN"]) / standbys.QEMU_LOG
        assert "tick" not in standing.read_text()

        taken = await runtime.start(second)
        assert taken.pid == standby
        await asyncio.sleep(1.0)
        ticks = [line for line in second.log_path.read_text().splitlines() if "tick" in line]
        assert len(ticks) >= 5, ticks  # thawed: it goes on from where the snapshot stopped it
        assert int(ticks[0].split()[1]) > 1
        await runtime.stop(taken, 1.0)
    finally:
        await runtime.close()


async def test_a_taken_standby_is_adopted_or_swept_like_any_vm(app: Path) -> None:
    """A runtime that took over a standby dies: its instance is adopted, the unrecorded first
    one is swept by its environment, the standby it left is killed as an orphan."""
    spec, handle, started = await asyncio.to_thread(started_by_a_dead_daemon, app, 8, "standby")
    left = int(started["standby"])
    first = int(started["first"]["pid"])
    assert all(procfs.is_alive(pid, None) for pid in (handle.pid or 0, left, first))
    runtime = VmRuntime()
    try:
        adopted = await runtime.adopt(handle)
        assert adopted is not None
        await asyncio.sleep(0.3)
        assert not procfs.is_alive(left, None)  # the orphaned standby, killed on adoption
        assert (await asyncio.to_thread(get, spec, "/healthz"))["ok"] is True
        identity = {"SHOAL_STATE": state_of(app), "SHOAL_SERVICE": "run", "SHOAL_INSTANCE": "108"}
        assert await runtime.sweep(identity) == [first]
        ended = await runtime.stop(adopted, 2.0)
        assert ended.code == 0, ended
    finally:
        await runtime.close()


async def test_sweep_finds_a_taken_standby_by_its_identity_file(app: Path) -> None:
    _, handle, started = await asyncio.to_thread(started_by_a_dead_daemon, app, 9, "standby")
    runtime = VmRuntime()
    identity = {"SHOAL_STATE": state_of(app), "SHOAL_SERVICE": "run"}
    try:
        assert await runtime.sweep({**identity, "SHOAL_INSTANCE": "9"}) == [handle.pid]
        assert await runtime.sweep({**identity, "SHOAL_INSTANCE": "109"}) == [
            started["first"]["pid"]
        ]
        await asyncio.sleep(0.3)
        assert not procfs.is_alive(int(started["standby"]), None)
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
