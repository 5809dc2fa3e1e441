"""Delivery against a real bus (SQLite on disk) with a scripted handler: batches, partial batch
failure, retry timing with backoff, dead-lettering with the error, and redrive."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from shoal.events.bus import Bus
from shoal.events.delivering import BatchOutcome, Deliverer, Subscription
from shoal.events.retrying import Backoff
from shoal.store import Message

pytestmark = [pytest.mark.timeout(30), pytest.mark.asyncio]

SUB = Subscription(
    function="sink",
    topic="orders",
    queue="orders",
    dead_letter="orders.failed",
    batch_size=10,
    retries=2,
    lease_s=10.0,
    parallel=1,
)


@pytest_asyncio.fixture
async def bus(tmp_path: Path) -> AsyncIterator[Bus]:
    opened = Bus(
        tmp_path / "state.db",
        {"orders": 3600.0, "orders.failed": 3600.0},
        {"orders": ("orders",), "orders.failed": ("orders.failed",)},
    )
    await opened.open()
    yield opened
    await opened.close()


class Script:
    """A handler that records each batch (payloads, attempts, time) and fails chosen bodies."""

    def __init__(self, failing: set[str]) -> None:
        self.failing = failing
        self.calls: list[tuple[float, list[tuple[str, int]]]] = []
        self.changed = asyncio.Event()

    async def __call__(self, sub: Subscription, messages: list[Message]) -> BatchOutcome:
        self.calls.append((time.monotonic(), [(m.payload_json, m.attempts) for m in messages]))
        self.changed.set()
        failed = frozenset(m.id for m in messages if m.payload_json in self.failing)
        return BatchOutcome(failed, "item failed" if failed else "")

    def deliveries(self, payload: str) -> list[tuple[float, int]]:
        return [(t, n) for t, batch in self.calls for p, n in batch if p == payload]

    async def until(self, payload: str, count: int) -> None:
        while len(self.deliveries(payload)) < count:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 10)


async def test_partial_failure_retries_with_backoff_then_dead_letters(bus: Bus) -> None:
    script = Script(failing={'{"bad": 1}'})
    deliverer = Deliverer(SUB, bus, script, backoff=Backoff(initial=0.2, factor=2.0, max=5.0))
    await bus.publish_many("orders", ['{"ok": 1}', '{"bad": 1}', '{"ok": 2}'])
    deliverer.start()
    try:
        await script.until('{"bad": 1}', 3)
        await asyncio.sleep(0.1)  # let the last batch settle
    finally:
        await deliverer.stop()
    first = script.calls[0][1]
    assert sorted(p for p, _ in first) == ['{"bad": 1}', '{"ok": 1}', '{"ok": 2}']  # one batch
    assert len(script.deliveries('{"ok": 1}')) == 1  # acked: never again
    bad = script.deliveries('{"bad": 1}')
    assert [n for _, n in bad] == [1, 2, 3]  # ApproximateReceiveCount 1, 2, 3
    assert 0.18 <= bad[1][0] - bad[0][0] < 3.0  # first retry after ~0.2 s (slack: busy CI)
    assert 0.38 <= bad[2][0] - bad[1][0] < 3.0  # then ~0.4 s
    [dead] = await bus.dead_letters("orders")
    assert dead.topic == "orders.failed" and dead.payload_json == '{"bad": 1}'
    assert dead.last_error is not None and "failed 3 deliveries" in dead.last_error
    assert deliverer.stats.delivered == 2 and deliverer.stats.dead_lettered == 1
    assert deliverer.stats.failed == 3 and deliverer.stats.lag_count == 3
    figures = {f.topic: f for f in await bus.figures()}
    assert figures["orders"].depth == 0 and figures["orders"].dead_letters == 1
    assert await bus.redrive("orders") == 1
    assert [m.payload_json for m in await bus.lease("orders", 10, 1.0)] == ['{"bad": 1}']
    assert await bus.dead_letters("orders") == []


async def test_a_handler_that_raises_fails_the_whole_batch(bus: Bus) -> None:
    async def broken(sub: Subscription, messages: list[Message]) -> BatchOutcome:
        raise RuntimeError("handler bug")

    deliverer = Deliverer(SUB, bus, broken, backoff=Backoff(initial=30.0))
    await bus.publish_many("orders", ['{"a": 1}', '{"a": 2}'])
    [leased] = [await bus.lease("orders", 10, 10.0)]
    await deliverer.deliver(leased)
    waiting = await bus.next_due("orders")
    assert waiting is not None and waiting > time.time() + 20  # both back after the backoff
    store_errors = [m.last_error for m in await bus.call(lambda s: s.list_messages("orders"))]
    assert store_errors == ["RuntimeError: handler bug"] * 2


async def test_a_lease_left_by_a_dead_daemon_ends_when_the_bus_opens(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    spec = ({"orders": 3600.0}, {"orders": ("orders",)})
    first = Bus(path, *spec)
    await first.open()
    await first.publish("orders", "{}")
    assert len(await first.lease("orders", 10, 3600.0)) == 1  # then the daemon "dies"
    await first.close()
    second = Bus(path, *spec)
    assert await second.open() == 1
    try:
        [again] = await second.lease("orders", 10, 10.0)
        assert again.attempts == 2
    finally:
        await second.close()
