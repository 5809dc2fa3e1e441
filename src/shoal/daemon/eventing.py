"""The daemon's event bus: topics of the manifest, subscriptions of its functions, and the
glue from a leased batch to a function invocation.

    POST /v1/topics/{name}/events ─▶ Events.publish ─▶ Bus (group commit) ─▶ 202
    event trigger   ─▶ Deliverer ─▶ SQS batch (Records) ─▶ Functions.invoke ─▶ batchItemFailures
    invoke --async  ─▶ queue async:FUNCTION ─▶ Deliverer ─▶ the event itself (2 retries, Lambda)
    schedule        ─▶ queue async:FUNCTION (EventBridge invokes asynchronously, so do we)

Dead letters: a trigger's ``dead_letter`` topic, or else the implicit ``QUEUE.dlq`` (so no
failed message is ever dropped silently); ``shoal dlq TOPIC`` finds them by the queue they came
from.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shoal.api.models import DeadLetter, TopicRow
from shoal.daemon.functioning import Functions
from shoal.events.bus import Bus, check_json, split_batch
from shoal.events.delivering import BatchOutcome, Deliverer, Subscription
from shoal.events.retrying import LAMBDA_ASYNC_RETRIES
from shoal.functions import shapes
from shoal.manifest import Project
from shoal.store import Message

log = logging.getLogger(__name__)

DLQ_RETENTION_S = 14 * 86400.0
ASYNC_RETENTION_S = 6 * 3600.0  # Lambda keeps an asynchronous event at most 6 hours
HOUSEKEEPING_S = 60.0


def async_queue(function: str) -> str:
    return f"async:{function}"


def plan_subscriptions(
    project: Project,
) -> tuple[dict[str, float], dict[str, tuple[str, ...]], list[Subscription]]:
    """From the manifest: every queue with its retention, topic -> queues, subscriptions."""
    m = project.manifest
    retention = {name: topic.retention for name, topic in m.topics.items()}
    subscribers: dict[str, list[str]] = {name: [] for name in m.topics}
    for name, function in m.functions.items():
        for trigger in function.triggers:
            if trigger.event is not None:
                subscribers[trigger.event.topic].append(name)
    queues: dict[str, tuple[str, ...]] = {}
    for topic, names in subscribers.items():
        fans_out = len(names) > 1
        queues[topic] = tuple(f"{topic}>{n}" for n in names) if fans_out else (topic,)
        for queue in queues[topic]:
            retention.setdefault(queue, retention[topic])
    subs: list[Subscription] = []
    for name, function in m.functions.items():
        lease = function.timeout * 2 + 5.0
        parallel = max(1, min(function.max_instances, 4))
        for trigger in function.triggers:
            event = trigger.event
            if event is None:
                continue
            fans_out = len(subscribers[event.topic]) > 1
            queue = f"{event.topic}>{name}" if fans_out else event.topic
            dead = event.dead_letter or f"{queue}.dlq"
            retention.setdefault(dead, DLQ_RETENTION_S)
            subs.append(
                Subscription(
                    function=name,
                    topic=event.topic,
                    queue=queue,
                    dead_letter=dead,
                    batch_size=event.batch_size,
                    batch_window=event.batch_window,
                    retries=event.retries,
                    lease_s=lease,
                    parallel=parallel,
                )
            )
        queue = async_queue(name)
        retention[queue] = ASYNC_RETENTION_S
        retention[f"{queue}.dlq"] = DLQ_RETENTION_S
        queues[queue] = (queue,)
        subs.append(
            Subscription(
                function=name,
                topic=queue,
                queue=queue,
                dead_letter=f"{queue}.dlq",
                shape="event",
                batch_size=1,
                retries=LAMBDA_ASYNC_RETRIES,
                lease_s=lease,
                parallel=parallel,
            )
        )
    return retention, queues, subs


class Events:
    """The bus and its deliverers, started after the functions and stopped before them."""

    def __init__(
        self,
        project: Project,
        db_path: Path,
        functions: Functions | None,
        *,
        on_log: Callable[[str], None] = lambda text: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        retention, queues, subs = plan_subscriptions(project)
        self.project = project
        self.functions = functions
        self.bus = Bus(db_path, retention, queues, clock=clock)
        self.deliverers = [Deliverer(s, self.bus, self._handle, clock=clock) for s in subs]
        self._on_log = on_log
        self._clock = clock
        self._housekeeping: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Open the bus (publishes are accepted from now on)."""
        left = await self.bus.open()
        if left:
            self._on_log(f"events: {left} messages leased by the previous daemon are due again")

    def deliver(self) -> None:
        """Start delivering (once the functions run) and the housekeeping task."""
        if self.functions is not None:
            for deliverer in self.deliverers:
                deliverer.start()
        self._housekeeping = asyncio.create_task(self._housekeep(), name="events:housekeeping")

    async def stop_delivering(self) -> None:
        """Shutdown: no more deliveries (a batch in flight is abandoned, and redelivered by
        the next daemon); publishes are still accepted until :meth:`stop`."""
        for deliverer in self.deliverers:
            await deliverer.stop()

    async def stop(self) -> None:
        await self.stop_delivering()
        task, self._housekeeping = self._housekeeping, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.bus.close()

    async def _housekeep(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            try:
                await self.bus.purge()
            except Exception:
                log.exception("events: purging old messages failed")

    # ------------------------------------------------------------------ doors in

    async def publish(self, topic: str, payload: str | bytes) -> list[int]:
        return await self.bus.publish(topic, check_json(payload))

    async def publish_batch(self, topic: str, payload: str | bytes) -> list[int]:
        """A JSON array of events, stored in one transaction (EventBridge PutEvents, SQS
        SendMessageBatch); the id of each (of its first copy when the topic fans out)."""
        events = split_batch(payload)
        ids = await self.bus.publish_many(topic, events)
        step = len(self.bus.queues_of(topic))
        return ids[::step]

    async def invoke_async(self, function: str, event: Any) -> int:
        if self.functions is not None:
            self.functions.pool(function)  # UnknownName for a function that does not exist
        ids = await self.bus.publish(async_queue(function), json.dumps(event))
        return ids[0]

    # ------------------------------------------------------------------ delivering

    async def _handle(self, sub: Subscription, messages: list[Message]) -> BatchOutcome:
        assert self.functions is not None
        if sub.shape == "event":
            event = json.loads(messages[0].payload_json)
        else:
            event = shapes.sqs_event(
                (
                    shapes.QueueMessage(
                        message_id=str(m.id),
                        body=m.payload_json,
                        sent_at=m.created_at,
                        receive_count=m.attempts,
                    )
                    for m in messages
                ),
                queue=sub.topic,
            )
        result = await self.functions.invoke(sub.function, event)
        every = frozenset(m.id for m in messages)
        if not result.ok:
            return BatchOutcome(every, _error_text(result.status, result.payload))
        if sub.shape == "event":
            return BatchOutcome()
        failed = shapes.failed_message_ids(result.value(), [str(m.id) for m in messages])
        if not failed:
            return BatchOutcome()
        return BatchOutcome(
            frozenset(int(f) for f in failed), "the handler reported batchItemFailures"
        )

    # ------------------------------------------------------------------ views

    async def topics(self) -> list[TopicRow]:
        figures = {f.topic: f for f in await self.bus.figures()}
        by_queue: dict[str, list[str]] = {}
        for d in self.deliverers:
            by_queue.setdefault(d.subscription.queue, []).append(d.subscription.function)
        now = self._clock()
        rows = []
        for topic, queues in sorted(self.bus.queues.items()):
            subs = [f for q in queues for f in by_queue.get(q, [])]
            figs = [figures[q] for q in queues if q in figures]
            oldest = [f.oldest_created_at for f in figs if f.oldest_created_at is not None]
            rows.append(
                TopicRow(
                    name=topic,
                    retention=self.bus.retention.get(topic, 0.0),
                    subscribers=sorted(set(subs)),
                    depth=sum(f.depth for f in figs),
                    leased=sum(f.leased for f in figs),
                    lag=(now - min(oldest)) if oldest else 0.0,
                    dead_letters=sum(f.dead_letters for f in figs),
                )
            )
        return rows

    async def dead_letters(self, topic: str) -> list[DeadLetter]:
        out = []
        for queue in self.bus.queues_of(topic):
            for m in await self.bus.dead_letters(queue):
                out.append(
                    DeadLetter(
                        id=m.id,
                        topic=topic,
                        queue=m.topic,
                        payload=json.loads(m.payload_json),
                        error=m.last_error or "",
                        created_at=m.created_at,
                    )
                )
        return out

    async def redrive(self, topic: str) -> int:
        return sum([await self.bus.redrive(queue) for queue in self.bus.queues_of(topic)])

    def metrics(self) -> str:
        """Prometheus text: delivery counters and lag per subscription (queue figures are
        added by :meth:`queue_metrics`, which reads the store)."""
        lines = [
            "# HELP shoal_events_published_total Events published since the daemon started.",
            "# TYPE shoal_events_published_total counter",
            f"shoal_events_published_total {self.bus.published}",
            "# HELP shoal_events_commits_total Group commits (transactions) of publishes.",
            "# TYPE shoal_events_commits_total counter",
            f"shoal_events_commits_total {self.bus.commits}",
        ]
        series = (
            ("delivered_total", "counter", "Messages delivered and acked.", "delivered"),
            ("failed_total", "counter", "Failed deliveries (each retry counts).", "failed"),
            ("dead_lettered_total", "counter", "Messages moved to a dead-letter topic.", "dead"),
        )
        for suffix, kind, text, key in series:
            lines += [
                f"# HELP shoal_events_{suffix} {text}",
                f"# TYPE shoal_events_{suffix} {kind}",
            ]
            for d in self.deliverers:
                s = d.stats
                value = {"delivered": s.delivered, "failed": s.failed, "dead": s.dead_lettered}[key]
                labels = f'function="{d.subscription.function}",queue="{d.subscription.queue}"'
                lines.append(f"shoal_events_{suffix}{{{labels}}} {value}")
        lines += [
            "# HELP shoal_events_delivery_lag_seconds Publish to handler start (first delivery).",
            "# TYPE shoal_events_delivery_lag_seconds summary",
        ]
        for d in self.deliverers:
            s = d.stats
            labels = f'function="{d.subscription.function}",queue="{d.subscription.queue}"'
            lines.append(f"shoal_events_delivery_lag_seconds_sum{{{labels}}} {s.lag_sum:.6f}")
            lines.append(f"shoal_events_delivery_lag_seconds_count{{{labels}}} {s.lag_count}")
        return "\n".join(lines) + "\n"

    def queue_metrics(self) -> str:
        now = self._clock()
        lines = [
            "# HELP shoal_topic_depth Unacked messages per queue.",
            "# TYPE shoal_topic_depth gauge",
        ]
        figures = self.bus.figures_now()
        lines += [f'shoal_topic_depth{{queue="{f.topic}"}} {f.depth}' for f in figures]
        lines += [
            "# HELP shoal_topic_oldest_age_seconds Age of the oldest unacked message (lag).",
            "# TYPE shoal_topic_oldest_age_seconds gauge",
        ]
        for f in figures:
            age = 0.0 if f.oldest_created_at is None else max(now - f.oldest_created_at, 0.0)
            lines.append(f'shoal_topic_oldest_age_seconds{{queue="{f.topic}"}} {age:.3f}')
        lines += [
            "# HELP shoal_topic_dead_letters Unacked dead letters that came from each queue.",
            "# TYPE shoal_topic_dead_letters gauge",
        ]
        lines += [
            f'shoal_topic_dead_letters{{queue="{f.topic}"}} {f.dead_letters}' for f in figures
        ]
        return "\n".join(lines) + "\n"


def _error_text(status: str, payload: bytes) -> str:
    try:
        shape = json.loads(payload)
        return f"{status}: {shape.get('errorType', '')}: {shape.get('errorMessage', '')}"
    except (ValueError, AttributeError):
        return status


__all__ = ["Events", "async_queue", "plan_subscriptions"]
