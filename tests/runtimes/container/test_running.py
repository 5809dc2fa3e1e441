"""The container runtime against a real Docker Engine: start, health, logs, settings read back
from the engine, exits (code, signal, OOM), stop with grace, adoption, sweep, no engine."""

from __future__ import annotations

import asyncio
import signal
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from shoal.errors import EngineUnavailable, ImageError, RuntimeNotAvailable
from shoal.runtimes.base import Handle, InstanceSpec, Limits
from shoal.runtimes.container import ContainerRuntime
from shoal.runtimes.container.engine import (
    LABEL_APP,
    LABEL_INSTANCE,
    LABEL_REVISION,
    LABEL_SERVICE,
    LABEL_STATE,
)
from tests.daemon.conftest import free_port

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]


def spec_of(app: str, image: str, tmp_path: Path, **fields: Any) -> InstanceSpec:
    port = free_port()
    defaults: dict[str, Any] = {
        "app": app,
        "kind": "service",
        "name": "web",
        "ordinal": 0,
        "revision": "r1",
        "command": None,
        "env": {"PORT": "8080", "SHOAL_STATE": str(tmp_path / ".shoal")},
        "port": 8080,
        "host_port": port,
        "stop_grace": 1.0,
        "log_path": tmp_path / "logs" / "web-0.raw",
        "image": image,
    }
    defaults.update(fields)
    return InstanceSpec(**defaults)


async def get(port: int, path: str = "/healthz", timeout: float = 15.0) -> bytes:
    """GET 127.0.0.1:port/path, retrying until the container answers."""
    deadline = asyncio.get_running_loop().time() + timeout

    def once() -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            body: bytes = r.read()
            return body

    while True:
        try:
            return await asyncio.to_thread(once)
        except OSError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)


async def log_text(path: Path, needle: str, timeout: float = 10.0) -> str:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        text = path.read_text() if path.exists() else ""
        if needle in text or asyncio.get_running_loop().time() > deadline:
            return text
        await asyncio.sleep(0.05)


async def test_start_serves_on_127_0_0_1_logs_and_stops_with_sigterm(
    runtime: ContainerRuntime, busybox: str, app_name: str, tmp_path: Path, engine: Any
) -> None:
    spec = spec_of(app_name, busybox, tmp_path)
    handle = await runtime.start(spec)
    assert handle.runtime_ref and handle.pid and handle.host_port == spec.host_port
    assert await get(handle.host_port or 0) == b"ok\n"
    assert "response:200" in await log_text(spec.log_path, "response:200")
    exit_ = await runtime.stop(handle, grace=5)
    assert exit_.signal == signal.SIGTERM, exit_  # reached the app through docker-init
    assert await runtime.wait(handle) == exit_  # remembered for a late wait
    assert engine.api.containers(all=True, filters={"id": handle.runtime_ref}) == []  # removed


async def test_settings_are_what_the_engine_reports(
    runtime: ContainerRuntime, busybox: str, app_name: str, tmp_path: Path, engine: Any
) -> None:
    spec = spec_of(
        app_name,
        busybox,
        tmp_path,
        ordinal=3,
        revision="abc123",
        command=("sh", "-c", 'echo "$GREETING from $(pwd)"; exec httpd -f -p "$PORT" -h /www'),
        env={"PORT": "9000", "GREETING": "hello", "SHOAL_STATE": str(tmp_path)},
        port=9000,
        workdir=Path("/www"),
        limits=Limits(cpus=0.5, memory_bytes=64 << 20),
        stop_grace=3.0,
    )
    handle = await runtime.start(spec)
    try:
        found = engine.api.inspect_container(handle.runtime_ref)
        host, config = found["HostConfig"], found["Config"]
        assert host["NanoCpus"] == 500_000_000
        assert host["Memory"] == 64 << 20 and host["MemorySwap"] == 64 << 20
        assert host["PortBindings"] == {
            "9000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(spec.host_port)}]
        }
        assert host["Init"] is True
        assert config["WorkingDir"] == "/www"
        assert config["Cmd"] == list(spec.command or ())
        assert "GREETING=hello" in config["Env"]
        assert config["StopTimeout"] == 3
        labels = config["Labels"]
        assert labels[LABEL_APP] == app_name and labels[LABEL_SERVICE] == "web"
        assert labels[LABEL_INSTANCE] == "3" and labels[LABEL_REVISION] == "abc123"
        assert labels[LABEL_STATE] == str(tmp_path)
        assert found["State"]["Pid"] == handle.pid
        assert await get(spec.host_port or 0) == b"ok\n"
        assert "hello from /www" in await log_text(spec.log_path, "hello from /www")
        stats = await runtime.stats(handle)
        assert stats is not None and 0 < stats.rss_bytes < 64 << 20
    finally:
        await runtime.stop(handle, grace=0)


async def test_exit_code_signal_and_out_of_memory_are_reported(
    runtime: ContainerRuntime, busybox: str, app_name: str, tmp_path: Path
) -> None:
    failing = await runtime.start(
        spec_of(app_name, busybox, tmp_path, command=("sh", "-c", "echo bye; exit 3"))
    )
    exited = await asyncio.wait_for(runtime.wait(failing), 20)
    assert exited.code == 3 and exited.reason == "exited with code 3"
    assert "bye" in failing.spec.log_path.read_text()

    sleeper = await runtime.start(
        spec_of(app_name, busybox, tmp_path, name="sleeper", command=("sleep", "60"))
    )
    await runtime.signal(sleeper, signal.SIGKILL)
    killed = await asyncio.wait_for(runtime.wait(sleeper), 20)
    assert killed.signal == signal.SIGKILL and killed.code is None

    hog = await runtime.start(
        spec_of(
            app_name,
            busybox,
            tmp_path,
            name="hog",
            command=("sh", "-c", "x=$(yes | head -c 200000000); echo survived"),
            limits=Limits(memory_bytes=16 << 20),
        )
    )
    oom = await asyncio.wait_for(runtime.wait(hog), 30)
    assert oom.oom_killed, oom
    assert "memory limit 16M" in oom.reason


async def test_stop_kills_after_the_grace_period(
    runtime: ContainerRuntime, busybox: str, app_name: str, tmp_path: Path
) -> None:
    stubborn = ("sh", "-c", "trap '' TERM; while true; do sleep 1; done")
    handle = await runtime.start(spec_of(app_name, busybox, tmp_path, command=stubborn))
    started = asyncio.get_running_loop().time()
    exit_ = await runtime.stop(handle, grace=1)
    took = asyncio.get_running_loop().time() - started
    assert exit_.signal == signal.SIGKILL and 0.9 < took < 8, (exit_, took)


async def test_a_later_runtime_adopts_a_running_container_and_keeps_its_log(
    busybox: str, app_name: str, tmp_path: Path, engine: Any
) -> None:
    ticking = ("sh", "-c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done")
    spec = spec_of(app_name, busybox, tmp_path, command=ticking)
    first = ContainerRuntime()
    handle = await first.start(spec)
    await log_text(spec.log_path, "tick 2")
    await first.close()  # the daemon goes away; the container keeps running
    assert engine.api.inspect_container(handle.runtime_ref)["State"]["Running"]
    await asyncio.sleep(0.5)  # output while nobody follows

    second = ContainerRuntime()
    try:
        stored = Handle(
            spec=spec, pid=handle.pid, host_port=handle.host_port, runtime_ref=handle.runtime_ref
        )
        adopted = await second.adopt(stored)
        assert adopted is not None and adopted.runtime_ref == handle.runtime_ref
        assert adopted.pid == handle.pid
        text = await log_text(spec.log_path, "tick 12")
        ticks = [int(line.split()[1]) for line in text.splitlines() if line.startswith("tick")]
        assert set(range(1, max(ticks) + 1)) <= set(ticks), "output lost while nobody followed"
        other = Handle(
            spec=spec_of(app_name, busybox, tmp_path, name="other"), runtime_ref=handle.runtime_ref
        )
        assert await second.adopt(other) is None  # labels say it is another instance's
        exit_ = await second.stop(adopted, grace=1)
        assert exit_.signal in (signal.SIGTERM, signal.SIGKILL)
        third = ContainerRuntime()
        gone = Handle(spec=spec, runtime_ref=handle.runtime_ref)
        assert await third.adopt(gone) is None  # removed: nothing to adopt
        await third.close()
    finally:
        await second.close()


async def test_sweep_removes_containers_no_record_claims(
    runtime: ContainerRuntime, busybox: str, app_name: str, tmp_path: Path, engine: Any
) -> None:
    state = str(tmp_path / ".shoal")
    env = {"PORT": "8080", "SHOAL_STATE": state}
    orphan = ContainerRuntime()
    lost = await orphan.start(spec_of(app_name, busybox, tmp_path, ordinal=1, env=env))
    await orphan.close()  # its start was never recorded
    kept = await runtime.start(spec_of(app_name, busybox, tmp_path, ordinal=1, env=env))
    removed = await runtime.sweep(
        {"SHOAL_STATE": state, "SHOAL_SERVICE": "web", "SHOAL_INSTANCE": "1"}
    )
    assert removed == [lost.runtime_ref]
    assert await runtime.sweep({"SHOAL_SERVICE": "web"}) == []  # never unscoped
    assert engine.api.inspect_container(kept.runtime_ref)["State"]["Running"]
    await runtime.stop(kept, grace=0)


async def test_missing_image_and_missing_engine_are_clear_errors(
    runtime: ContainerRuntime, app_name: str, tmp_path: Path
) -> None:
    with pytest.raises(ImageError, match="could not be pulled"):
        await runtime.start(spec_of(app_name, "shoal-test/absent:nope", tmp_path))
    nowhere = ContainerRuntime(url=f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(EngineUnavailable) as info:
        await nowhere.start(spec_of(app_name, "busybox", tmp_path))
    message = str(info.value)
    assert message.startswith(f"Docker Engine not reachable at unix://{tmp_path}/no-engine.sock")
    assert "install docker.io and start dockerd, or use runtime: process" in message
    assert isinstance(info.value, RuntimeNotAvailable)
    await nowhere.close()
