"""Delivery: lease a batch of a queue, hand it to the subscriber, settle what came back.

    wait (woken by a commit, or until the next message is due)
      ─▶ lease up to batch_size ─▶ handler(subscription, messages) ─▶ BatchOutcome
      ─▶ settle: ack the delivered; retry the failed after a backoff (retrying.after_failure);
         dead-letter those that failed every retry, with the error

At least once: a message is acked only after its handler returned; a daemon killed mid-batch
leaves the lease behind, and the next daemon ends it (``Bus.open``) and delivers again. The
handler is given by the daemon (it builds the SQS batch or the plain event, invokes the
function and reads ``batchItemFailures``); this module knows nothing of functions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from shoal.events.bus import Bus
from shoal.events.retrying import Backoff, GiveUp, after_failure
from shoal.store import Message

log = logging.getLogger(__name__)

MAX_IDLE_WAIT = 30.0
"""Seconds a deliverer with nothing due waits before looking again (commits wake it sooner)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscription:
    """A function fed by a queue: a topic's event trigger, or its asynchronous invocations."""

    function: str
    topic: str  # what users named (the topic, or async:FUNCTION)
    queue: str  # what is leased (the topic, TOPIC>FUNCTION when it fans out, async:FUNCTION)
    dead_letter: str  # the queue failed messages go to
    shape: Literal["sqs", "event"] = "sqs"  # an SQS batch, or the payload itself (one a time)
    batch_size: int = 10
    batch_window: float = 0.0
    retries: int = 2
    lease_s: float = 30.0  # longer than the function's timeout
    parallel: int = 2  # batches in flight at once


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What the handler made of a batch: the messages that failed, and why."""

    failed: frozenset[int] = frozenset()
    error: str = ""


Handler = Callable[[Subscription, list[Message]], Awaitable[BatchOutcome]]


@dataclass
class DeliveryStats:
    """Counters for ``/metrics``: since the daemon started."""

    delivered: int = 0  # messages acked
    failed: int = 0  # failed deliveries (each retry counts)
    dead_lettered: int = 0
    batches: int = 0
    lag_sum: float = 0.0  # seconds from publish to handler start, summed over first deliveries
    lag_count: int = 0
    lag_max: float = 0.0
    lags: list[float] = field(default_factory=list)  # the last few, for quantiles

    def record_lag(self, lag: float) -> None:
        self.lag_sum += lag
        self.lag_count += 1
        self.lag_max = max(self.lag_max, lag)
        self.lags.append(lag)
        if len(self.lags) > 1024:
            del self.lags[:512]


class Deliverer:
    """Feeds one subscription: ``parallel`` named worker tasks, started and stopped together."""

    def __init__(
        self,
        subscription: Subscription,
        bus: Bus,
        handler: Handler,
        *,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.subscription = subscription
        self.bus = bus
        self.handler = handler
        self.backoff = backoff or Backoff()
        self.clock = clock
        self.stats = DeliveryStats()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        sub = self.subscription
        for n in range(max(sub.parallel, 1)):
            task = asyncio.create_task(self._delivering(), name=f"events:{sub.queue}#{n}")
            task.add_done_callback(self._ended)
            self._tasks.append(task)

    async def stop(self) -> None:
        """Stop leasing; a batch being delivered is abandoned (its lease ends at next start)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("delivery to %s ended: %r", self.subscription.function, exc)

    async def _delivering(self) -> None:
        sub = self.subscription
        waker = self.bus.waker(sub.queue)
        while True:
            waker.clear()
            try:
                messages = await self.bus.lease(sub.queue, sub.batch_size, sub.lease_s)
                if messages and sub.batch_window > 0 and len(messages) < sub.batch_size:
                    await asyncio.sleep(sub.batch_window)
                    more = sub.batch_size - len(messages)
                    messages += await self.bus.lease(sub.queue, more, sub.lease_s)
                if not messages:
                    await self._wait(waker)
                    continue
                await self.deliver(messages)
            except asyncio.CancelledError:
                raise
            except Exception:  # a store error: say so, wait a little, keep going
                log.exception("delivery to %s failed; trying again in 1s", sub.function)
                await asyncio.sleep(1.0)

    async def _wait(self, waker: asyncio.Event) -> None:
        due = await self.bus.next_due(self.subscription.queue)
        timeout = MAX_IDLE_WAIT if due is None else min(MAX_IDLE_WAIT, due - self.clock())
        if timeout <= 0:
            await asyncio.sleep(0.01)  # due now (another worker holds it, or a clock step)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waker.wait(), timeout)

    async def deliver(self, messages: list[Message]) -> None:
        """Hand ``messages`` (leased) to the handler and settle each one."""
        sub = self.subscription
        started = self.clock()
        for message in messages:
            if message.attempts == 1:
                self.stats.record_lag(max(started - message.created_at, 0.0))
        try:
            outcome = await self.handler(sub, messages)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the handler itself broke: every message failed
            log.exception("delivering %d messages to %s", len(messages), sub.function)
            outcome = BatchOutcome(
                frozenset(m.id for m in messages), f"{type(exc).__name__}: {exc}"
            )
        now = self.clock()
        acked, retried, dead = [], [], []
        for message in messages:
            if message.id not in outcome.failed:
                acked.append(message.id)
                continue
            decision = after_failure(
                message.attempts, sub.retries, now, outcome.error or "failed", self.backoff
            )
            if isinstance(decision, GiveUp):
                dead.append((message.id, sub.dead_letter, decision.error))
            else:
                retried.append((message.id, decision.visible_at, outcome.error or "failed"))
        await self.bus.settle(acked, retried, dead)
        self.stats.batches += 1
        self.stats.delivered += len(acked)
        self.stats.failed += len(retried) + len(dead)
        self.stats.dead_lettered += len(dead)


__all__ = ["BatchOutcome", "Deliverer", "DeliveryStats", "Handler", "Subscription"]
