"""Fixtures for the function tests: handler files, pools on one forkserver, and leak checks.

Every test that runs processes goes through ``make_pool``: its pools share one forkserver
whose command line carries a unique tag (every template and instance is forked from it, so
they carry it too). At teardown the pools and the forkserver are stopped, and the test fails if
any process with the tag is left, if an asyncio task is left, or if a cgroup folder of the test
is left. The daemon's loop is uvloop, so these tests run on it too.
"""

from __future__ import annotations

import asyncio
import os
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import uvloop

from shoal.functions.forkserver import Forkserver
from shoal.functions.pool import FunctionPool
from shoal.functions.results import InvocationResult
from shoal.functions.spec import FunctionSpec
from shoal.runtimes import cgroupfs
from shoal.runtimes.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "examples" / "shop" / "functions"
TEST_APP = f"shoalfntest-{os.getpid()}"

PoolFactory = Callable[..., Awaitable[FunctionPool]]
HandlerWriter = Callable[..., Path]


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The pools run on uvloop in the daemon: test them there."""
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture
def write_handler(tmp_path: Path) -> HandlerWriter:
    """``write_handler("h.py", code)``: a handler file (dedented) in the test's folder."""

    def write(name: str, code: str) -> Path:
        path = tmp_path / "code" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(code).lstrip())
        return path

    return write


def tagged_processes(tag: str) -> list[int]:
    """Live (non-zombie) processes whose command line carries ``tag``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                argv = cmdline.read()
            with open(f"/proc/{entry}/stat") as stat:
                state = stat.read().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if tag.encode() in argv and state != "Z":
            found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait (on the loop) until ``predicate()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)


def cgroup_folders() -> list[str]:
    """The cgroup folders left below this test session's app folder."""
    sandbox = Sandbox.detect()
    if sandbox.memory is None:
        return []
    folder = sandbox.memory.parent / cgroupfs.safe_name(TEST_APP)
    try:
        return sorted(p.name for p in folder.iterdir() if p.is_dir())
    except OSError:
        return []


@pytest_asyncio.fixture
async def make_pool(tmp_path: Path) -> AsyncIterator[PoolFactory]:
    """``await make_pool(path, **spec_fields, pool_option=...)``: a started pool; everything it
    started must be gone at teardown."""
    tag = f"shoalfntest-{uuid.uuid4().hex[:10]}"
    forkserver = Forkserver(tag=tag, log_path=tmp_path / "forkserver.log")
    await forkserver.start()
    pools: list[FunctionPool] = []
    pool_options = {
        "queue_size",
        "max_starting",
        "template_idle_timeout",
        "prewarm",
        "standby",
        "watch_interval",
        "init_timeout",
        "on_invocation",
        "on_log",
        "sandbox",
    }

    async def make(handler: Path, **fields: Any) -> FunctionPool:
        options = {k: fields.pop(k) for k in list(fields) if k in pool_options}
        name = fields.pop("name", handler.stem)
        spec = FunctionSpec(name=name, handler_file=handler, **fields)
        pool = FunctionPool(
            spec,
            forkserver=forkserver,
            app=TEST_APP,
            log_path=tmp_path / "logs" / f"{name}.log",
            **options,
        )
        pools.append(pool)
        await pool.start()
        return pool

    yield make
    for pool in pools:
        await pool.stop()
    await forkserver.stop()
    current = asyncio.current_task()
    leaked = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    left = tagged_processes(tag)
    assert not left, f"test left processes behind: {left}"
    assert not leaked, f"test leaked tasks: {leaked}"
    assert not cgroup_folders(), f"test left cgroups: {cgroup_folders()}"


@pytest.fixture(scope="session", autouse=True)
def _remove_test_cgroup_app() -> Iterator[None]:
    """Instance cgroups are removed by the pools; the app folder above them stays by design."""
    yield
    sandbox = Sandbox.detect()
    if sandbox.memory is not None:
        try:
            (sandbox.memory.parent / cgroupfs.safe_name(TEST_APP)).rmdir()
        except OSError:
            return


def ok_value(result: InvocationResult) -> Any:
    """The handler's return value, failing the test with the error if there is one."""
    assert result.error is None, f"{result.status}: {result.error} {result.payload!r}"
    return result.value()
