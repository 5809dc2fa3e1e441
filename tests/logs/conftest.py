"""Fixtures for the log store tests: a store in ``tmp_path``, condition polling, leak checks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from shoal.logs import LogStore


@pytest.fixture
def logs_root(tmp_path: Path) -> Path:
    return tmp_path / ".shoal" / "logs"


@pytest_asyncio.fixture
async def store(logs_root: Path) -> AsyncIterator[LogStore]:
    """A started LogStore with a fast tailer; stopped after the test, leaving no task behind."""
    logs = LogStore(logs_root, poll_interval=0.02)
    await logs.start()
    yield logs
    await logs.stop()
    current = asyncio.current_task()
    leaked = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert not leaked, f"test leaked tasks: {leaked}"


async def _eventually(
    predicate: Callable[[], bool], *, timeout: float = 5.0, interval: float = 0.01
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


@pytest.fixture
def eventually() -> Callable[..., Awaitable[None]]:
    """``await eventually(lambda: ...)``: poll a condition, fail the test on timeout."""
    return _eventually
