"""Fixtures for the runtime tests: specs, a process runtime that must end the test empty-handed.

Every test that starts processes goes through the ``runtime`` fixture: at teardown it stops
whatever the test left running (and fails the test for it), closes the runtime and checks that
no asyncio task is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from shoal.runtimes.base import InstanceSpec
from shoal.runtimes.process import ProcessRuntime
from shoal.runtimes.sandbox import Sandbox

PYTHON = sys.executable
TEST_APP = f"shoaltest-{os.getpid()}"

SpecFactory = Callable[..., InstanceSpec]


@pytest.fixture
def make_spec(tmp_path: Path) -> SpecFactory:
    """``make_spec("print('hi')", name="web")``: an InstanceSpec running that Python code."""

    def make(code: str | None = None, **fields: Any) -> InstanceSpec:
        name = fields.pop("name", "svc")
        ordinal = fields.pop("ordinal", 0)
        defaults: dict[str, Any] = {
            "app": TEST_APP,
            "kind": "service",
            "name": name,
            "ordinal": ordinal,
            "revision": "r1",
            "command": (PYTHON, "-c", code) if code is not None else None,
            "log_path": tmp_path / "logs" / f"{name}-{ordinal}.raw",
        }
        defaults.update(fields)
        return InstanceSpec(**defaults)

    return make


@pytest_asyncio.fixture
async def runtime() -> AsyncIterator[ProcessRuntime]:
    """A ProcessRuntime; the test must leave no instance running and no task behind."""
    runtime = ProcessRuntime()
    yield runtime
    leftovers = [instance.handle for instance in runtime._instances.values()]
    for handle in leftovers:
        await runtime.stop(handle, grace=0)
    await runtime.close()
    current = asyncio.current_task()
    leaked = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert not leftovers, f"test left instances running: {[h.spec.label for h in leftovers]}"
    assert not leaked, f"test leaked tasks: {leaked}"


async def _eventually(
    predicate: Callable[[], bool], *, timeout: float = 5.0, interval: float = 0.01
) -> None:
    """Wait until ``predicate()`` holds; fail the test after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"condition not met within {timeout}s: {predicate}")
        await asyncio.sleep(interval)


@pytest.fixture
def eventually() -> Callable[..., Awaitable[None]]:
    """``await eventually(lambda: ...)``: poll a condition on the loop clock, fail on timeout."""
    return _eventually


def alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@pytest.fixture
def is_alive() -> Callable[[int], bool]:
    """``is_alive(pid)``: the process exists and is not a zombie (read from /proc)."""
    return alive


@pytest.fixture(scope="session", autouse=True)
def _remove_test_cgroup_folders() -> Iterator[None]:
    """Instance cgroups remove themselves; the ``shoal/<app>`` folders above them stay by
    design. Remove the test app's after the session."""
    yield
    sandbox = Sandbox.detect()
    for controller in (sandbox.cpu, sandbox.memory):
        if controller is not None:
            with contextlib.suppress(OSError):
                (controller.parent / TEST_APP).rmdir()
