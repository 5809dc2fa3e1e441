"""Live log streams: one bounded queue per reader, so a slow reader never holds up the tailer.

``shoal logs -f`` and the dashboard read a :class:`Subscription` from
:meth:`shoal.logs.store.LogStore.subscribe`. The tailer hands every new record to every
subscription with :meth:`Subscription.offer`, which never blocks: when a reader's queue is
full, its oldest record is dropped and counted, and the reader later gets one ``dropped``
marker per source saying how many lines it missed, in place of those lines. The files keep
everything; ``read`` can fill the gap.

A subscription is registered the moment it is created (no record between ``subscribe()`` and
the first ``async for`` is lost) and is an async iterator and an async context manager::

    async with store.subscribe(["catalog#0"]) as records:
        async for record in records:
            print(record.text)
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Collection
from types import TracebackType
from typing import Self

from shoal.logs.records import LogRecord

DEFAULT_QUEUE_SIZE = 1000
"""Records a reader may fall behind by before the oldest are dropped."""


class Subscription:
    """A live stream of new records from some sources (all when ``sources`` is None)."""

    def __init__(
        self,
        sources: Collection[str] | None,
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        on_close: Callable[[Subscription], None] | None = None,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, not {queue_size}")
        self.sources = frozenset(sources) if sources is not None else None
        self.queue_size = queue_size
        self._queue: deque[LogRecord] = deque()
        self._dropped: dict[str, tuple[int, float]] = {}  # source -> (lines, time of the last)
        self._wakeup = asyncio.Event()
        self._ended = False
        self._on_close = on_close

    @property
    def dropped(self) -> int:
        """Lines dropped and not yet reported by a marker."""
        return sum(count for count, _ in self._dropped.values())

    def wants(self, source: str) -> bool:
        return self.sources is None or source in self.sources

    def offer(self, record: LogRecord) -> None:
        """Queue ``record`` if this reader wants it; drop the oldest if the queue is full."""
        if self._ended or not self.wants(record.source):
            return
        if len(self._queue) >= self.queue_size:
            old = self._queue.popleft()
            count, _ = self._dropped.get(old.source, (0, old.time))
            self._dropped[old.source] = (count + 1, old.time)
        self._queue.append(record)
        self._wakeup.set()

    def end(self) -> None:
        """No more records will come: the reader gets what is queued, then the stream stops."""
        self._ended = True
        self._wakeup.set()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> LogRecord:
        while True:
            if self._dropped:
                source, (count, when) = next(iter(self._dropped.items()))
                del self._dropped[source]
                noun = "line" if count == 1 else "lines"
                text = (
                    f"[{count} {noun} dropped: this reader fell behind; they are in the log file]"
                )
                return LogRecord(source=source, time=when, text=text, stream="dropped")
            if self._queue:
                return self._queue.popleft()
            if self._ended:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()

    async def aclose(self) -> None:
        """Stop receiving; queued records are discarded."""
        self._ended = True
        self._queue.clear()
        self._dropped.clear()
        self._wakeup.set()
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close(self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


__all__ = ["DEFAULT_QUEUE_SIZE", "Subscription"]
