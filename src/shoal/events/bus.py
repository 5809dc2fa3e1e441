"""The durable event bus: publish with group commit, and the queue operations deliverers use.

    API / SDK / scheduler ──publish(topic, payload)──▶ GroupCommit ──one transaction──▶ SQLite
                                                        (answers each caller once committed)
    Deliverer ──lease / settle──▶ Bus (own connection, one worker thread) ──▶ SQLite

A publish is acknowledged only after its transaction committed with ``synchronous=FULL``: the
message survives a kill -9 of the daemon. One commit costs a disk flush (~5 ms here), so one
commit per publish caps the bus near 200 publishes/s; :class:`GroupCommit` instead commits
whatever arrived while the previous commit was running, in one transaction, and answers every
publisher of that batch at once (PostgreSQL's and InnoDB's group commit, in miniature).

The bus opens its own connection to the state database and uses it from one worker thread, so
the event loop never waits for a flush and the rest of the daemon keeps its connection.

A *topic* is what publishers name; a *queue* is what a deliverer leases. A topic with one (or
no) subscribing function is its own queue; a topic with several subscribers fans out, one
queue per subscriber named ``TOPIC>FUNCTION``, so each function gets every message once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from shoal.errors import UnknownName, UsageError
from shoal.store import Message, Store
from shoal.store.queues import QueueFigures

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_BATCH = 4096
"""Most messages in one group commit: a bigger backlog is committed in several."""


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


MAX_BATCH_EVENTS = 1000
"""Most events in one batch publish (one request, one transaction)."""


def split_batch(payload: str | bytes) -> list[str]:
    """The events of a batch publish (a JSON array), each as JSON text."""
    text = payload.decode() if isinstance(payload, bytes) else payload
    try:
        events = json.loads(text, parse_constant=_no_constants)
    except ValueError as exc:
        raise UsageError(f"the batch is not JSON: {exc}") from None
    if not isinstance(events, list) or not events:
        raise UsageError("a batch is a non-empty JSON array of events")
    if len(events) > MAX_BATCH_EVENTS:
        raise UsageError(f"a batch holds at most {MAX_BATCH_EVENTS} events, got {len(events)}")
    return [json.dumps(event, separators=(",", ":")) for event in events]


def check_json(payload: str | bytes) -> str:
    """The payload as text, if it is one JSON value (NaN and Infinity refused, as SQLite does)."""
    text = payload.decode() if isinstance(payload, bytes) else payload
    try:
        json.loads(text, parse_constant=_no_constants)
    except ValueError as exc:
        raise UsageError(f"the event is not JSON: {exc}") from None
    return text


class GroupCommit:
    """Batches concurrent writes: each :meth:`submit` waits for the commit that carries it.

    ``write(items) -> ids`` runs in ``executor`` and must commit ``items`` in one transaction.
    While it runs, new submissions queue up; the next write takes all of them (up to
    :data:`MAX_BATCH`). A failed write fails every submission of its batch.
    """

    def __init__(
        self,
        write: Callable[[list[tuple[str, str]]], list[int]],
        executor: ThreadPoolExecutor,
        *,
        on_commit: Callable[[list[tuple[str, str]]], None] = lambda items: None,
    ) -> None:
        self._write = write
        self._executor = executor
        self._on_commit = on_commit
        self._pending: list[tuple[list[tuple[str, str]], asyncio.Future[list[int]]]] = []
        self._task: asyncio.Task[None] | None = None
        self.commits = 0  # transactions so far
        self.committed = 0  # messages so far

    async def submit(self, items: list[tuple[str, str]]) -> list[int]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[int]] = loop.create_future()
        self._pending.append((items, future))
        if self._task is None:
            self._task = asyncio.create_task(self._committing(), name="events:group-commit")
            self._task.add_done_callback(self._ended)
        return await future

    async def _committing(self) -> None:
        try:
            await self._commit_all()
        finally:
            # At once, with no await between the last look at _pending and here: a submit
            # arriving after this starts a new task (a done-callback would run too late).
            self._task = None

    async def _commit_all(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch: list[tuple[list[tuple[str, str]], asyncio.Future[list[int]]]] = []
            size = 0
            while self._pending and (not batch or size + len(self._pending[0][0]) <= MAX_BATCH):
                entry = self._pending.pop(0)
                batch.append(entry)
                size += len(entry[0])
            flat = [item for items, _ in batch for item in items]
            try:
                ids = await loop.run_in_executor(self._executor, self._write, flat)
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.commits += 1
            self.committed += len(flat)
            start = 0
            for items, future in batch:
                if not future.done():
                    future.set_result(ids[start : start + len(items)])
                start += len(items)
            self._on_commit(flat)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("group commit ended: %r", task.exception())
            for _, future in self._pending:
                if not future.done():
                    future.set_exception(RuntimeError("the event bus stopped"))
            self._pending.clear()


class Bus:
    """Topics, their queues and the group commit; opened on the daemon's state database."""

    def __init__(
        self,
        db_path: Path,
        retention: Mapping[str, float],
        queues: Mapping[str, Sequence[str]],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``retention``: every topic and queue to keep, with its retention in seconds;
        ``queues``: topic -> the queues a message published on it goes to."""
        self.db_path = db_path
        self.retention = dict(retention)
        self.queues = {topic: tuple(q) for topic, q in queues.items()}
        self._clock = clock
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="shoal-bus")
        self._store: Store | None = None
        self._wakers: dict[str, asyncio.Event] = {}
        self._commit = GroupCommit(self._insert, self._executor, on_commit=self._wake)
        self.published = 0

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> int:
        """Open the connection, create the topics, end a previous daemon's leases; how many
        leased messages that daemon left (they are delivered again now)."""
        self._store = await self._run(Store.open, self.db_path)
        await self.call(self._ensure_topics)
        return await self.call(lambda s: s.end_leases())

    def _ensure_topics(self, store: Store) -> None:
        for name, retention_s in self.retention.items():
            store.ensure_topic(name, retention_s)

    async def close(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            await self._run(store.close)
        self._executor.shutdown(wait=True)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def call(self, fn: Callable[[Store], T]) -> T:
        """Run ``fn(store)`` on the bus's connection, in its worker thread."""
        return await self._run(lambda: fn(self._require()))

    def _require(self) -> Store:
        if self._store is None:
            raise RuntimeError("the event bus is not open")
        return self._store

    # ------------------------------------------------------------------ publishing

    def queues_of(self, topic: str) -> tuple[str, ...]:
        found = self.queues.get(topic)
        if found is None:
            known = ", ".join(sorted(self.queues)) or "none"
            raise UnknownName(f"no topic named {topic!r} (topics: {known})")
        return found

    async def publish(self, topic: str, payload_json: str) -> list[int]:
        """Store one event durably; the ids of its copies (one per queue of the topic)."""
        queues = self.queues_of(topic)
        ids = await self._commit.submit([(queue, payload_json) for queue in queues])
        self.published += 1
        return ids

    async def publish_many(self, topic: str, payloads: Iterable[str]) -> list[int]:
        queues = self.queues_of(topic)
        items = [(queue, payload) for payload in payloads for queue in queues]
        ids = await self._commit.submit(items)
        self.published += len(items) // max(len(queues), 1)
        return ids

    def _insert(self, items: list[tuple[str, str]]) -> list[int]:
        return self._require().publish_batch(items, self._clock())

    def _wake(self, items: list[tuple[str, str]]) -> None:
        for queue in {queue for queue, _ in items}:
            waker = self._wakers.get(queue)
            if waker is not None:
                waker.set()

    def waker(self, queue: str) -> asyncio.Event:
        """Set whenever messages were committed to ``queue`` (deliverers clear and wait)."""
        return self._wakers.setdefault(queue, asyncio.Event())

    @property
    def commits(self) -> int:
        return self._commit.commits

    # ------------------------------------------------------------------ delivering

    async def lease(self, queue: str, limit: int, lease_s: float) -> list[Message]:
        # Not durable: a lease lost in a power cut ends anyway when the next daemon starts.
        return await self.call(
            lambda s: s.lease(queue, limit, lease_s, self._clock(), durable=False)
        )

    async def next_due(self, queue: str) -> float | None:
        return await self.call(lambda s: s.next_due(queue))

    async def settle(
        self,
        acked: list[int],
        retried: list[tuple[int, float, str]],
        dead: list[tuple[int, str, str]],
    ) -> int:
        # Not durable: a lost ack means one more delivery (at least once); a lost retry or
        # dead-letter move means the message is tried again. Publishes are always durable.
        moved = await self.call(
            lambda s: s.settle(acked, retried, dead, self._clock(), durable=False)
        )
        if dead:
            self._wake([(target, "") for _, target, _ in dead])
        return moved

    # ------------------------------------------------------------------ operating

    async def figures(self) -> list[QueueFigures]:
        names = sorted(self.retention)
        return await self.call(lambda s: s.queue_figures(names, self._clock()))

    def figures_now(self) -> list[QueueFigures]:
        """The same, read on the caller's thread (for ``/metrics``, which is synchronous)."""
        return self._require().queue_figures(sorted(self.retention), self._clock())

    async def dead_letters(self, source: str) -> list[Message]:
        return await self.call(lambda s: s.dead_letters(source))

    async def redrive(self, source: str) -> int:
        count = await self.call(lambda s: s.redrive(source, self._clock()))
        if count:
            self._wake([(source, "")])
        return count

    async def purge(self) -> int:
        """Housekeeping: delete expired messages and acked ones older than a minute."""
        now = self._clock()
        expired = await self.call(lambda s: s.purge_expired(now))
        return expired + await self.call(lambda s: s.purge_acked(now - 60.0))


__all__ = ["MAX_BATCH", "MAX_BATCH_EVENTS", "Bus", "GroupCommit", "check_json", "split_batch"]
