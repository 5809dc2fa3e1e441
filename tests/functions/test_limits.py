"""Limits on real processes: timeouts, memory, crashes, concurrency, max_instances and queue."""

from __future__ import annotations

import asyncio
import time

import pytest

from shoal.errors import (
    FunctionCrashed,
    FunctionOutOfMemory,
    FunctionThrottled,
    FunctionTimeout,
    FunctionUnavailable,
)
from shoal.functions.templating import remove_leftover_cgroups
from shoal.runtimes import cgroupfs
from shoal.runtimes.sandbox import Sandbox
from tests.functions.conftest import (
    TEST_APP,
    HandlerWriter,
    PoolFactory,
    alive,
    eventually,
    ok_value,
)

pytestmark = [pytest.mark.timeout(10)]

WORKER = """
    import os, time

    def handler(event, context):
        started = time.monotonic()
        if event.get("sleep"):
            time.sleep(event["sleep"])
        if event.get("exit") is not None:
            os._exit(event["exit"])
        if event.get("allocate_mb"):
            blocks = [bytearray(1 << 20) for _ in range(event["allocate_mb"])]
            for block in blocks:
                for i in range(0, len(block), 4096):
                    block[i] = 1
        return {"pid": os.getpid(), "started": started, "ended": time.monotonic()}
"""


@pytest.mark.asyncio
async def test_timeout_kills_the_instance_and_the_next_invocation_works(
    write_handler: HandlerWriter, make_pool: PoolFactory
) -> None:
    pool = await make_pool(write_handler("worker.py", WORKER), timeout=0.5)
    pid = ok_value(await pool.invoke({}))["pid"]
    started = time.monotonic()
    result = await pool.invoke({"sleep": 5})
    assert time.monotonic() - started < 2
    assert isinstance(result.error, FunctionTimeout)
    assert (result.status, result.error.http_status) == ("timeout", 504)
    assert "Task timed out after 0.50 seconds" in result.error.message
    assert result.value()["errorType"] == "Sandbox.Timedout"
    await eventually(lambda: not alive(pid))
    after = await pool.invoke({})
    assert ok_value(after)["pid"] != pid
    assert after.cold
    assert pool.metrics().timeouts == 1


@pytest.mark.asyncio
async def test_a_per_invocation_timeout_overrides_the_functions(
    write_handler: HandlerWriter, make_pool: PoolFactory
) -> None:
    pool = await make_pool(write_handler("worker.py", WORKER), timeout=5.0)
    result = await pool.invoke({"sleep": 2}, timeout=0.2)
    assert result.status == "timeout"


@pytest.mark.asyncio
async def test_memory_limit_kills_the_instance(
    write_handler: HandlerWriter, make_pool: PoolFactory
) -> None:
    sandbox = Sandbox.detect()
    if sandbox.memory is None:
        reason = f"memory limits cannot be enforced on this machine: {sandbox.why_not}"
        print(reason)
        pytest.skip(reason)
    pool = await make_pool(
        write_handler("worker.py", WORKER), memory_bytes=64 << 20, sandbox=sandbox
    )
    small = await pool.invoke({"allocate_mb": 8})
    pid = ok_value(small)["pid"]
    assert small.max_memory_bytes is not None and small.max_memory_bytes > 8 << 20
    result = await pool.invoke({"allocate_mb": 200})
    assert isinstance(result.error, FunctionOutOfMemory)
    assert result.status == "oom"
    assert "out of memory: the limit is 64 MB" in result.error.message
    assert result.value()["errorType"] == "Runtime.OutOfMemory"
    await eventually(lambda: not alive(pid))
    assert ok_value(await pool.invoke({}))["pid"] != pid
    assert pool.metrics().oom_kills == 1


@pytest.mark.asyncio
async def test_a_crash_mid_invocation_fails_it_clearly_and_is_replaced(
    write_handler: HandlerWriter, make_pool: PoolFactory
) -> None:
    pool = await make_pool(write_handler("worker.py", WORKER))
    pid = ok_value(await pool.invoke({}))["pid"]
    result = await pool.invoke({"exit": 3})
    assert isinstance(result.error, FunctionCrashed)
    assert result.status == "crash"
    assert "Runtime exited with error: exit status 3" in result.error.message
    assert result.value()["errorType"] == "Runtime.ExitError"
    replacement = await pool.invoke({})
    assert ok_value(replacement)["pid"] != pid
    assert pool.metrics().crashes == 1
    assert [i.pid for i in pool.snapshot().instances] == [ok_value(replacement)["pid"]]


@pytest.mark.asyncio
async def test_concurrency_per_instance(
    write_handler: HandlerWriter, make_pool: PoolFactory
) -> None:
    pool = await make_pool(write_handler("worker.py", WORKER), concurrency=2, max_instances=1)
    results = await asyncio.gather(*(pool.invoke({"sleep": 0.3}) for _ in range(4)))
    values = [ok_value(r) for r in results]
    assert len({v["pid"] for v in values}) == 1
    events = sorted([(v["started"], 1) for v in values] + [(v["ended"], -1) for v in values])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    assert peak == 2


@pytest.mark.asyncio
async def test_max_instances_then_queue_then_throttle(
    write_handler: HandlerWriter, make_pool: PoolFactory
) -> None:
    pool = await make_pool(
        write_handler("worker.py", WORKER), max_instances=2, queue_size=1, max_starting=2
    )
    calls = [asyncio.ensure_future(pool.invoke({"sleep": 0.4})) for _ in range(4)]
    throttled = await calls[3]  # answered at once
    assert isinstance(throttled.error, FunctionThrottled)
    assert (throttled.status, throttled.error.http_status) == ("throttled", 429)
    assert throttled.error.temporary
    assert not any(c.done() for c in calls[:3])
    assert pool.snapshot().queued == 1
    results = await asyncio.gather(*calls[:3])
    pids = [ok_value(r)["pid"] for r in results]
    assert len(set(pids)) == 2  # the queued one ran on one of the two instances
    assert results[2].latency_ms > 350  # it waited for a busy instance
    assert pool.metrics().throttles == 1


@pytest.mark.asyncio
async def test_a_cancelled_queued_invocation_leaves_the_queue(
    write_handler: HandlerWriter, make_pool: PoolFactory
) -> None:
    pool = await make_pool(write_handler("worker.py", WORKER), max_instances=1, queue_size=5)
    running = asyncio.ensure_future(pool.invoke({"sleep": 0.3}))
    await asyncio.sleep(0.05)
    queued = asyncio.ensure_future(pool.invoke({}))
    await asyncio.sleep(0.05)
    assert pool.snapshot().queued == 1
    queued.cancel()
    await asyncio.gather(queued, return_exceptions=True)
    assert pool.snapshot().queued == 0
    ok_value(await running)


@pytest.mark.asyncio
async def test_a_timeout_fails_the_other_invocations_on_that_instance(
    write_handler: HandlerWriter, make_pool: PoolFactory
) -> None:
    pool = await make_pool(
        write_handler("worker.py", WORKER), concurrency=2, max_instances=1, timeout=5.0
    )
    slow = asyncio.ensure_future(pool.invoke({"sleep": 3}))
    short = asyncio.ensure_future(pool.invoke({"sleep": 3}, timeout=0.3))
    assert (await short).status == "timeout"
    sibling = await slow
    assert isinstance(sibling.error, FunctionCrashed)
    assert "another invocation on it timed out" in sibling.error.message


@pytest.mark.asyncio
async def test_stop_fails_what_is_queued_or_running_and_never_hangs(
    write_handler: HandlerWriter, make_pool: PoolFactory
) -> None:
    pool = await make_pool(write_handler("worker.py", WORKER), max_instances=1, timeout=5.0)
    running = asyncio.ensure_future(pool.invoke({"sleep": 5}))
    queued = asyncio.ensure_future(pool.invoke({}))
    await asyncio.sleep(0.2)
    pid = pool.snapshot().instances[0].pid
    await pool.stop()
    for call in (running, queued):
        result = await asyncio.wait_for(call, 2)
        assert isinstance(result.error, FunctionUnavailable)
        assert result.error.http_status == 503
    assert pid is not None and not alive(pid)
    late = await pool.invoke({})
    assert late.status == "error" and isinstance(late.error, FunctionUnavailable)


def test_leftover_cgroups_of_a_killed_daemon_are_removed() -> None:
    sandbox = Sandbox.detect()
    if sandbox.memory is None:
        pytest.skip(f"no memory cgroups here: {sandbox.why_not}")
    folder = sandbox.memory.parent / cgroupfs.safe_name(TEST_APP)
    folder.mkdir(parents=True, exist_ok=True)
    ours, theirs = folder / "fn-3-a1b2c3-7", folder / "web-0-a1b2c3"  # a service's: not ours
    ours.mkdir()
    theirs.mkdir()
    try:
        assert remove_leftover_cgroups(sandbox, TEST_APP) == [ours.name]
        assert not ours.exists() and theirs.exists()
    finally:
        theirs.rmdir()
