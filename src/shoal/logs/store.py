"""The log store: instance output and shoal's own lines, stamped, rotated, read and streamed.

It sits beside the state store, below the control plane (DESIGN.md §3): the supervisor
registers each instance's raw output file when it starts one and unregisters it when the
instance has exited; the gateway, the function pool and the supervisor :meth:`LogStore.append`
lines of their own; the API serves :meth:`LogStore.read` and :meth:`LogStore.subscribe`.

Layout under ``root`` (``.shoal/logs/``)::

    catalog#2.log, .log.1 ...   the stamped records of a source (see shoal.logs.records)
    raw/catalog#2.raw           what the instance writes, appended by the child itself
    raw/catalog#2.raw.offset    how far the tailer has read it (survives a daemon restart)

Source names become file names percent-encoded (``/`` and other unsafe bytes as ``%2F``...;
``#`` stays), so the name is recovered exactly from the file.

One tailer task (named ``shoal.logs.tailer``, started by :meth:`LogStore.start`, stopped by
:meth:`LogStore.stop`) polls every registered raw file each ``poll_interval`` seconds: file
tailing cannot be waited on portably, and a tick with nothing new costs one ``fstat`` per
file. Each line is stamped with the wall-clock time it was read (``clock``, injected).

Call order at an instance's end: wait for the exit, :meth:`LogStore.unregister` (drains the
last output), then :meth:`LogStore.append` the "exited" line, so it follows the output.

Everything runs on the event loop's thread and is not thread-safe; ``read`` only reads files,
so it may also run in a worker thread (a torn last line is skipped).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Callable, Collection
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote, unquote

from shoal.logs.records import LogRecord, Stream, quantize
from shoal.logs.rotating import DEFAULT_KEEP, DEFAULT_MAX_BYTES, RotatingLog, read_records
from shoal.logs.splitting import DEFAULT_MAX_LINE, decode_line
from shoal.logs.subscribing import DEFAULT_QUEUE_SIZE, Subscription
from shoal.logs.tailing import Tail

logger = logging.getLogger(__name__)

_SAFE = "#@+,-_=~"
DEFAULT_POLL_INTERVAL = 0.1
"""Seconds between two reads of every raw file."""
DEFAULT_READ_BUDGET = 4 * 1024 * 1024
"""Bytes read per source per tick at most; the rest waits for the next tick."""


def file_stem(source: str) -> str:
    """``catalog#2`` -> ``catalog#2``; ``a/b`` -> ``a%2Fb``; ``.x`` -> ``%2Ex``."""
    if not source:
        raise ValueError("a log source needs a name")
    stem = quote(source, safe=_SAFE)
    if stem.startswith("."):
        stem = "%2E" + stem[1:]
    if len(stem) > 200:
        raise ValueError(f"log source name too long for a file name: {source[:40]!r}...")
    return stem


class LogStore:
    """Owns ``root`` (``.shoal/logs``); see the module docstring."""

    def __init__(
        self,
        root: Path,
        *,
        clock: Callable[[], float] = time.time,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        max_line: int = DEFAULT_MAX_LINE,
        max_bytes: int = DEFAULT_MAX_BYTES,
        keep: int = DEFAULT_KEEP,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        read_budget: int = DEFAULT_READ_BUDGET,
    ) -> None:
        """``clock``: wall clock stamping lines; ``poll_interval``: seconds between tailer
        ticks; ``max_line``: bytes per line before it is split; ``max_bytes`` and ``keep``:
        rotation; ``queue_size``: records a live reader may lag; ``read_budget``: bytes per
        source per tick."""
        self.root = root
        self.clock = clock
        self.poll_interval = poll_interval
        self.max_line = max_line
        self.max_bytes = max_bytes
        self.keep = keep
        self.queue_size = queue_size
        self.read_budget = read_budget
        self._tails: dict[str, Tail] = {}
        self._logs: dict[str, RotatingLog] = {}
        # weak: a stream its reader abandoned without closing (a cancelled ``async for``)
        # stops receiving once it is garbage-collected
        self._subscriptions: weakref.WeakSet[Subscription] = weakref.WeakSet()
        self._errors: dict[str, str] = {}
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ paths

    def raw_path(self, source: str) -> Path:
        """Where an instance labelled ``source`` should write its output."""
        return self.root / "raw" / f"{file_stem(source)}.raw"

    def log_path(self, source: str) -> Path:
        """The current (newest) log file of ``source``."""
        return self.root / f"{file_stem(source)}.log"

    def sources(self) -> list[str]:
        """Every source registered now or with a log file, sorted."""
        found = set(self._tails) | set(self._logs)
        if self.root.is_dir():
            found.update(unquote(p.name[: -len(".log")]) for p in self.root.glob("*.log"))
        return sorted(found)

    # ------------------------------------------------------------------ writing

    def register(
        self, source: str, raw_path: Path | None = None, *, offset: int | None = None
    ) -> None:
        """Follow ``raw_path`` (default :meth:`raw_path`) as ``source``'s output, from
        ``offset`` if given, else from the saved offset, else from its first byte."""
        path = raw_path if raw_path is not None else self.raw_path(source)
        current = self._tails.get(source)
        if current is not None:
            if current.raw_path == path:
                return
            self.unregister(source, final=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._tails[source] = Tail(source, path, max_line=self.max_line, offset=offset)

    def unregister(self, source: str, final: bool = True) -> None:
        """Stop following ``source``. First everything already written is read; with ``final``
        (the instance has ended) its unfinished last line too, and the raw file and its saved
        offset are deleted. Without ``final`` they stay, to be registered again later."""
        tail = self._tails.pop(source, None)
        if tail is None:
            return
        try:
            lines = tail.read(None)
            if final:
                lines += tail.finish()
            self._emit(source, [decode_line(line) for line in lines], "out")
            tail.commit()
        except OSError as exc:
            logger.warning("[%s] cannot drain %s: %s", source, tail.raw_path, exc)
        if final:
            tail.remove_files()
        else:
            tail.close()

    def append(self, source: str, text: str, *, stream: Stream = "shoal") -> None:
        """Write lines shoal produced itself (one record per line of ``text``)."""
        self._emit(source, text.removesuffix("\n").split("\n"), stream)

    def offset(self, source: str) -> int:
        """How far ``source``'s raw file has been read (for callers that store it elsewhere)."""
        return self._tails[source].offset

    def poll(self) -> int:
        """One tailer pass over every registered source now; the number of new lines."""
        count = 0
        for source, tail in list(self._tails.items()):
            try:
                lines = tail.read(self.read_budget)
                count += self._emit(source, [decode_line(line) for line in lines], "out")
                tail.commit()
            except OSError as exc:
                if self._errors.get(source) != str(exc):
                    logger.warning("[%s] cannot tail %s: %s", source, tail.raw_path, exc)
                self._errors[source] = str(exc)
            else:
                self._errors.pop(source, None)
        return count

    def _emit(self, source: str, texts: list[str], stream: Stream) -> int:
        """Stamp, write, then publish: a live reader never sees a record the files lack."""
        if not texts:
            return 0
        now = quantize(self.clock())
        records = [LogRecord(source, now, text, stream) for text in texts]
        log = self._logs.get(source)
        if log is None:
            log = RotatingLog(self.log_path(source), max_bytes=self.max_bytes, keep=self.keep)
            self._logs[source] = log
        log.write(records)
        for subscription in list(self._subscriptions):
            for record in records:
                subscription.offer(record)
        return len(records)

    # ------------------------------------------------------------------ reading

    def read(
        self,
        sources: Collection[str] | None = None,
        since: float | None = None,
        tail: int | None = None,
    ) -> list[LogRecord]:
        """Records of ``sources`` (all when None) merged in time order: only those at or after
        ``since`` (epoch seconds), and only the last ``tail``."""
        names = sorted(set(sources)) if sources is not None else self.sources()
        merged: list[LogRecord] = []
        for source in names:
            merged += read_records(source, self.log_path(source), self.keep, since=since, tail=tail)
        merged.sort(key=lambda record: record.time)
        if tail is not None:
            merged = merged[-tail:] if tail > 0 else []
        return merged

    @property
    def subscribers(self) -> int:
        """How many live streams are open."""
        return len(self._subscriptions)

    def subscribe(
        self, sources: Collection[str] | None = None, *, queue_size: int | None = None
    ) -> Subscription:
        """A live stream of the records written from now on (see :mod:`shoal.logs.subscribing`).

        Close it (``async with``, or :meth:`Subscription.aclose`) when done; one its reader
        just drops is let go when it is garbage-collected."""
        subscription = Subscription(
            sources,
            queue_size=queue_size or self.queue_size,
            on_close=self._subscriptions.discard,
        )
        self._subscriptions.add(subscription)
        return subscription

    # ------------------------------------------------------------------ running

    async def start(self) -> None:
        """Start the tailer task."""
        if self._task is not None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self._stopping.clear()
        self._task = asyncio.create_task(self._tailing(), name="shoal.logs.tailer")
        self._task.add_done_callback(_tailer_ended)

    async def stop(self) -> None:
        """Stop the tailer, read what is complete, save every offset, end every live stream.
        Sources stay registered on disk: a later store resumes where this one stopped."""
        self._stopping.set()
        if self._task is not None:
            task, self._task = self._task, None
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for source in list(self._tails):
            self.unregister(source, final=False)
        for log in self._logs.values():
            log.close()
        self._logs.clear()
        for subscription in list(self._subscriptions):
            subscription.end()
        self._subscriptions.clear()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _tailing(self) -> None:
        while not self._stopping.is_set():
            self.poll()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):  # sleep, or wake on stop()
                    await self._stopping.wait()


def _tailer_ended(task: asyncio.Task[None]) -> None:
    """The tailer's guard: say how it ended."""
    if task.cancelled():
        logger.debug("log tailer cancelled")
    elif task.exception() is not None:
        logger.error("log tailer crashed; logs are no longer collected", exc_info=task.exception())
    else:
        logger.debug("log tailer stopped")


__all__ = [
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_READ_BUDGET",
    "LogStore",
    "file_stem",
]
