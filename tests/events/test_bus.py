"""The bus on a real SQLite file: group commit batches concurrent publishes into one transaction,
answers each only once committed, fans out to queues, and never strands a publisher."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import pytest_asyncio

from shoal.errors import StoreError, UnknownName
from shoal.events.bus import Bus, GroupCommit
from shoal.store import Store

pytestmark = [pytest.mark.timeout(30), pytest.mark.asyncio]


@pytest_asyncio.fixture
async def bus(tmp_path: Path) -> AsyncIterator[Bus]:
    opened = Bus(
        tmp_path / "state.db",
        {"orders": 3600.0, "orders>a": 3600.0, "orders>b": 3600.0, "solo": 60.0},
        {"orders": ("orders>a", "orders>b"), "solo": ("solo",)},
    )
    await opened.open()
    yield opened
    await opened.close()


async def test_concurrent_publishes_share_commits_and_are_durable(bus: Bus, tmp_path: Path) -> None:
    ids = await asyncio.gather(*(bus.publish("solo", f'{{"n": {n}}}') for n in range(200)))
    flat = [i[0] for i in ids]
    assert len(set(flat)) == 200
    assert bus.commits < 20  # 200 publishes, a handful of transactions
    with Store.open(tmp_path / "state.db") as other:  # another connection sees them all
        assert other.depth("solo") == 200
        payloads = {m.payload_json for m in other.list_messages("solo")}
    assert payloads == {f'{{"n": {n}}}' for n in range(200)}


async def test_a_topic_with_several_subscribers_fans_out(bus: Bus) -> None:
    ids = await bus.publish("orders", '{"id": 1}')
    assert len(ids) == 2
    leased_a = await bus.lease("orders>a", 10, 30.0)
    leased_b = await bus.lease("orders>b", 10, 30.0)
    assert [m.payload_json for m in leased_a + leased_b] == ['{"id": 1}'] * 2
    with pytest.raises(UnknownName, match="no topic named 'nope'"):
        await bus.publish("nope", "{}")


async def test_publish_wakes_the_queue(bus: Bus) -> None:
    waker = bus.waker("solo")
    waker.clear()
    await bus.publish("solo", "{}")
    assert waker.is_set()


async def test_no_submission_is_stranded_when_the_committer_winds_down() -> None:
    """Regression: a submit arriving between the committer's last look at its queue and the task's
    done-callback used to wait forever. Here every write finishes at a random moment."""
    executor = ThreadPoolExecutor(1)
    lock = threading.Lock()
    counter = [0]

    def write(items: list[tuple[str, str]]) -> list[int]:
        with lock:
            start = counter[0]
            counter[0] += len(items)
        return list(range(start, start + len(items)))

    commit = GroupCommit(write, executor)

    async def one(n: int) -> list[int]:
        await asyncio.sleep((n % 7) * 0.0005)
        return await commit.submit([("t", "{}")])

    try:
        for _ in range(20):
            results = await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(50))), 5)
            assert len(results) == 50
    finally:
        executor.shutdown()


async def test_a_failed_commit_fails_its_batch_only() -> None:
    executor = ThreadPoolExecutor(1)
    calls = [0]

    def write(items: list[tuple[str, str]]) -> list[int]:
        calls[0] += 1
        if calls[0] == 1:
            raise StoreError("disk full")
        return list(range(len(items)))

    commit = GroupCommit(write, executor)
    try:
        with pytest.raises(StoreError, match="disk full"):
            await commit.submit([("t", "{}")])
        assert await commit.submit([("t", "{}"), ("t", "{}")]) == [0, 1]
    finally:
        executor.shutdown()
