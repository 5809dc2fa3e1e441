"""Standby instances: forked ahead of demand, taken by the next scale-up, running nothing of the
function (``after_fork`` included) until then; dropped on reload, idle retirement and stop."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from shoal.functions.pool import FunctionPool
from tests.functions.conftest import HandlerWriter, PoolFactory, alive, eventually, ok_value

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(15)]

HOOKS = """
import os

def after_fork():
    with open({marks!r}, "a") as out:
        out.write(f"{{os.getpid()}}\\n")

def handler(event, context):
    return {{"pid": os.getpid(), "ppid": os.getppid()}}
"""


def standby_pid(pool: FunctionPool) -> int | None:
    templates = pool.snapshot().templates
    return templates[0].standby_pid if templates else None


def hooks(write_handler: HandlerWriter, tmp_path: Path, name: str = "hooks.py") -> Path:
    return write_handler(name, HOOKS.format(marks=str(tmp_path / "after_fork.txt")))


def after_fork_pids(tmp_path: Path) -> list[int]:
    marks = tmp_path / "after_fork.txt"
    return [int(line) for line in marks.read_text().split()] if marks.exists() else []


async def test_the_cold_start_takes_the_standby_which_ran_nothing_before(
    write_handler: HandlerWriter, make_pool: PoolFactory, tmp_path: Path
) -> None:
    pool = await make_pool(hooks(write_handler, tmp_path), idle_timeout=0.05)
    await eventually(lambda: standby_pid(pool) is not None)
    standby = standby_pid(pool)
    assert standby is not None and alive(standby)
    assert pool.snapshot().instances == ()  # not an instance: the function is at zero
    assert pool.metrics().instances == 0
    assert after_fork_pids(tmp_path) == []  # nothing of the function ran in it yet

    result = await pool.invoke({})
    value = ok_value(result)
    assert value["pid"] == standby
    assert value["ppid"] == pool.snapshot().templates[0].pid
    assert result.cold and result.init_duration_ms is not None
    assert after_fork_pids(tmp_path) == [standby]  # after_fork ran once it was taken
    assert pool.metrics().instance_starts == 1

    # another standby is forked for the next scale-up; the taken instance scales to zero
    await eventually(lambda: standby_pid(pool) not in (None, standby))
    await eventually(lambda: not alive(standby))
    again = await pool.invoke({})
    assert again.cold and ok_value(again)["pid"] != standby


async def test_without_standby_every_cold_start_forks(
    write_handler: HandlerWriter, make_pool: PoolFactory, tmp_path: Path
) -> None:
    pool = await make_pool(hooks(write_handler, tmp_path), standby=False)
    result = await pool.invoke({})
    assert result.cold
    assert standby_pid(pool) is None
    assert after_fork_pids(tmp_path) == [ok_value(result)["pid"]]


async def test_a_reload_drops_the_standby_unused(
    write_handler: HandlerWriter, make_pool: PoolFactory, tmp_path: Path
) -> None:
    path = hooks(write_handler, tmp_path)
    pool = await make_pool(path, watch_interval=0.05)
    await eventually(lambda: standby_pid(pool) is not None)
    old = standby_pid(pool)
    assert old is not None
    path.write_text(path.read_text() + "\nVERSION = 2\n")
    await eventually(lambda: pool.snapshot().templates[0].generation == 2)
    await eventually(lambda: standby_pid(pool) not in (None, old))
    await eventually(lambda: not alive(old))
    assert after_fork_pids(tmp_path) == []  # the old standby exited having run nothing
    value = ok_value(await pool.invoke({}))
    assert value["pid"] != old


async def test_a_killed_standby_is_replaced(
    write_handler: HandlerWriter, make_pool: PoolFactory, tmp_path: Path
) -> None:
    lines: list[str] = []
    pool = await make_pool(hooks(write_handler, tmp_path), on_log=lines.append)
    await eventually(lambda: standby_pid(pool) is not None)
    killed = standby_pid(pool)
    assert killed is not None
    os.kill(killed, signal.SIGKILL)
    await eventually(lambda: standby_pid(pool) not in (None, killed), timeout=5.0)
    assert any("standby instance exited unexpectedly" in line for line in lines)
    assert ok_value(await pool.invoke({}))["pid"] != killed


async def test_an_idle_template_takes_its_standby_along(
    write_handler: HandlerWriter, make_pool: PoolFactory, tmp_path: Path
) -> None:
    pool = await make_pool(
        hooks(write_handler, tmp_path), idle_timeout=0.05, template_idle_timeout=0.3
    )
    await eventually(lambda: standby_pid(pool) is not None)
    standby = standby_pid(pool)
    assert standby is not None
    ok_value(await pool.invoke({}))
    await eventually(lambda: not pool.snapshot().templates)
    await eventually(lambda: not alive(standby))


async def test_min_instances_take_the_standby_too(
    write_handler: HandlerWriter, make_pool: PoolFactory, tmp_path: Path
) -> None:
    pool = await make_pool(hooks(write_handler, tmp_path), min_instances=1)
    await eventually(lambda: standby_pid(pool) is not None and pool.metrics().idle == 1)
    warm = pool.snapshot().instances[0].pid
    assert warm is not None and warm != standby_pid(pool)
    assert after_fork_pids(tmp_path) == [warm]
    assert ok_value(await pool.invoke({}))["pid"] == warm
