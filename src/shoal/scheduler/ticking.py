"""The ticking loop: sleep on an injected clock until the next fire, fire, remember, repeat.

    start: for each schedule, the fire a previous daemon missed (jobs with catch_up: once, if
           within starting_deadline) -> fire it; then the next fire from now
    loop:  sleep until the earliest next fire -> fire every schedule that is due (once each,
           however long the sleep overran) -> record last/next fire in the store

The loop owns no wall clock: :class:`Clock` gives ``now()`` (epoch seconds) and ``sleep``.
:class:`WallClock` is the real one (it sleeps in slices, so a wall-clock step is noticed
within a minute); tests pass a virtual clock and advance it, so a day of cron runs in
milliseconds. What a fire does is the caller's ``fire`` callback; it must not block.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

from shoal.manifest.schedules import Schedule, parse_schedule
from shoal.scheduler.timing import missed_fire, next_fire
from shoal.store import Store

log = logging.getLogger(__name__)

FireKind = Literal["schedule", "missed"]


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class WallClock:
    """The real clock: ``time.time`` and the loop's sleep, in slices of at most a minute."""

    slice_s = 60.0

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(min(max(seconds, 0.0), self.slice_s))


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One schedule: a function's schedule trigger or a job's schedule."""

    key: str  # the store's name for it: function:NAME:N or job:NAME
    target: str  # the function or job it starts
    expression: str
    timezone: str = "UTC"
    catch_up: bool = False  # run a fire missed while the daemon was down (jobs)
    starting_deadline_s: float | None = None  # ...if it is no older than this

    @property
    def schedule(self) -> Schedule:
        return parse_schedule(self.expression)


Fire = Callable[[Entry, float, FireKind], None]


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class Ticker:
    """Fires ``entries`` on time; one named task, started and stopped by the daemon."""

    def __init__(
        self, entries: Sequence[Entry], store: Store, fire: Fire, clock: Clock | None = None
    ) -> None:
        self.entries = list(entries)
        self.store = store
        self.fire = fire
        self.clock: Clock = clock or WallClock()
        self.next: dict[str, float | None] = {}
        self._parsed = {e.key: e.schedule for e in self.entries}
        self._anchors: dict[str, datetime] = {}
        self._task: asyncio.Task[None] | None = None

    def _zone(self, entry: Entry) -> ZoneInfo:
        return ZoneInfo(entry.timezone)

    def _next_after(self, entry: Entry, after: float) -> float | None:
        fire = next_fire(
            self._parsed[entry.key], _dt(after), self._zone(entry), self._anchors.get(entry.key)
        )
        return None if fire is None else fire.timestamp()

    def prime(self) -> None:
        """Catch up missed fires and compute every next fire (the first step of :meth:`run`)."""
        now = self.clock.now()
        for entry in self.entries:
            saved = self.store.get_schedule(entry.key)
            if saved is not None and saved.expression != entry.expression:
                saved = None  # a changed schedule starts afresh
            last = saved.last_fire_at if saved is not None else None
            if last is not None:
                self._anchors[entry.key] = _dt(last)
            if entry.catch_up and last is not None:
                missed = missed_fire(
                    self._parsed[entry.key],
                    _dt(last),
                    _dt(now),
                    self._zone(entry),
                    entry.starting_deadline_s,
                    anchor=self._anchors.get(entry.key),
                )
                if missed is not None:
                    self._fire(entry, missed.timestamp(), "missed")
                    last = missed.timestamp()
            upcoming = self._next_after(entry, now)
            self.next[entry.key] = upcoming
            self.store.set_schedule_fired(entry.key, entry.expression, None, upcoming)
            if last is None and entry.catch_up:
                # first start: remember "now" as the baseline, so a later outage is caught up
                self.store.set_schedule_fired(entry.key, entry.expression, now, upcoming)

    def _fire(self, entry: Entry, at: float, kind: FireKind) -> None:
        try:
            self.fire(entry, at, kind)
        except Exception:  # one broken target never stops the other schedules
            log.exception("schedule %s: firing %s failed", entry.key, entry.target)

    async def run(self) -> None:
        self.prime()
        while True:
            pending = [t for t in self.next.values() if t is not None]
            if not pending:
                return
            now = self.clock.now()
            earliest = min(pending)
            if earliest > now:
                await self.clock.sleep(earliest - now)
                continue
            for entry in self.entries:
                due = self.next.get(entry.key)
                if due is None or due > now:
                    continue
                self._fire(entry, due, "schedule")
                upcoming = self._next_after(entry, max(now, due))
                self.next[entry.key] = upcoming
                self.store.set_schedule_fired(entry.key, entry.expression, due, upcoming)

    def start(self) -> None:
        if not self.entries:
            return
        self._task = asyncio.create_task(self.run(), name="scheduler:ticking")
        self._task.add_done_callback(_ended)

    def cancel(self) -> None:
        """Stop firing now, without waiting for the task to finish (``shoal apply``)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _ended(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the scheduler stopped: %r", task.exception())


__all__ = ["Clock", "Entry", "Fire", "FireKind", "Ticker", "WallClock"]
