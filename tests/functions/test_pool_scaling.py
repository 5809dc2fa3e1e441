"""Scaling on real processes (short real times): to zero and back, min_instances, reload, bursts.

The reaping decisions themselves are tested in virtual time in ``test_scaling.py``.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.functions.conftest import HandlerWriter, PoolFactory, alive, eventually, ok_value

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(10)]

SLEEPER = """
    import os, time

    VERSION = 1

    def handler(event, context):
        time.sleep(event.get("sleep", 0))
        return {"pid": os.getpid(), "version": VERSION}
"""


async def test_scale_to_zero_after_idle_timeout(
    write_handler: HandlerWriter, make_pool: PoolFactory
) -> None:
    pool = await make_pool(write_handler("fn.py", SLEEPER), idle_timeout=0.3)
    pid = ok_value(await pool.invoke({}))["pid"]
    done = time.monotonic()
    await eventually(lambda: not pool.snapshot().instances)
    assert time.monotonic() - done >= 0.25  # counted from the end of the last invocation
    await eventually(lambda: not alive(pid))
    assert pool.snapshot().templates[0].state == "running"  # the template stays, forking is cheap
    again = await pool.invoke({})
    assert again.cold and ok_value(again)["pid"] != pid


async def test_a_busy_instance_is_never_reaped(
    write_handler: HandlerWriter, make_pool: PoolFactory
) -> None:
    pool = await make_pool(write_handler("fn.py", SLEEPER), idle_timeout=0.1)
    long = asyncio.ensure_future(pool.invoke({"sleep": 1.0}))
    short = await pool.invoke({})  # a second instance, idle for most of the long call
    await asyncio.sleep(0.5)
    states = {i.pid: i.state for i in pool.snapshot().instances}
    assert ok_value(short)["pid"] not in states  # the idle one went
    assert list(states.values()) == ["busy"]  # the busy one, idle_timeout long past, stays
    assert ok_value(await long)["pid"] in states
    await eventually(lambda: not pool.snapshot().instances)


async def test_min_instances_are_kept_warm(
    write_handler: HandlerWriter, make_pool: PoolFactory
) -> None:
    pool = await make_pool(write_handler("fn.py", SLEEPER), min_instances=2, idle_timeout=0.1)
    await eventually(lambda: [i.state for i in pool.snapshot().instances] == ["idle", "idle"])
    first = await pool.invoke({})
    assert not first.cold  # provisioned: no cold start
    await asyncio.sleep(0.4)
    assert len(pool.snapshot().instances) == 2


async def test_an_idle_template_stops_and_the_pool_holds_no_process(
    write_handler: HandlerWriter, make_pool: PoolFactory
) -> None:
    pool = await make_pool(
        write_handler("fn.py", SLEEPER), idle_timeout=0.05, template_idle_timeout=0.2
    )
    template_pid = pool.snapshot().templates[0].pid
    ok_value(await pool.invoke({}))
    await eventually(lambda: not pool.snapshot().templates)
    assert template_pid is not None
    await eventually(lambda: not alive(template_pid))
    deep = await pool.invoke({})  # a new template is forked, then an instance
    assert ok_value(deep)["version"] == 1 and deep.cold
    assert pool.metrics().template_starts == 2


async def test_without_prewarm_nothing_runs_until_the_first_invocation(
    write_handler: HandlerWriter, make_pool: PoolFactory
) -> None:
    pool = await make_pool(write_handler("fn.py", SLEEPER), prewarm=False)
    assert pool.snapshot().templates == ()
    assert ok_value(await pool.invoke({}))["version"] == 1


async def test_a_changed_handler_starts_a_new_template_and_old_work_finishes(
    write_handler: HandlerWriter, make_pool: PoolFactory
) -> None:
    path = write_handler("fn.py", SLEEPER)
    pool = await make_pool(path, watch_interval=0.05)
    old = asyncio.ensure_future(pool.invoke({"sleep": 0.8}))
    await asyncio.sleep(0.2)
    old_pid = pool.snapshot().instances[0].pid
    path.write_text(path.read_text().replace("VERSION = 1", "VERSION = 2"))
    await eventually(lambda: pool.snapshot().templates[0].generation == 2)
    new = await pool.invoke({})
    assert ok_value(new)["version"] == 2
    finished = await old
    assert ok_value(finished) == {"pid": old_pid, "version": 1}  # in-flight work finished
    await eventually(lambda: old_pid is not None and not alive(old_pid))
    await eventually(lambda: len(pool.snapshot().templates) == 1)


async def test_an_unchanged_file_touched_does_not_reload(
    write_handler: HandlerWriter, make_pool: PoolFactory
) -> None:
    path = write_handler("fn.py", SLEEPER)
    pool = await make_pool(path, watch_interval=None)
    path.write_text(path.read_text())  # new mtime, same content
    assert not pool.reload_if_changed()
    path.write_text(path.read_text() + "\n# changed\n")
    assert pool.reload_if_changed()
    assert pool.snapshot().templates[0].generation == 2


async def test_a_burst_of_first_invocations_all_succeed(
    write_handler: HandlerWriter, make_pool: PoolFactory
) -> None:
    pool = await make_pool(write_handler("fn.py", SLEEPER), max_instances=50, queue_size=0)
    results = await asyncio.gather(*(pool.invoke({}) for _ in range(50)))
    assert all(r.ok for r in results)
    assert 1 <= pool.metrics().instance_starts <= 50
    slow = await asyncio.gather(*(pool.invoke({"sleep": 0.5}) for _ in range(8)))
    assert len({ok_value(r)["pid"] for r in slow}) == 8  # slow work gets an instance each
