"""A virtual clock for the ticker: ``now`` only moves when a test advances it."""

from __future__ import annotations

import asyncio


class VirtualClock:
    """``sleep`` parks the caller until :meth:`advance` moves time past its deadline."""

    def __init__(self, start: float) -> None:
        self.time = start
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self.time

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.time + max(seconds, 0.0), future))
        await future

    async def settle(self) -> None:
        """Let every runnable task run until it sleeps again."""
        for _ in range(20):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking each sleeper at its own deadline, in order."""
        target = self.time + seconds
        await self.settle()
        while True:
            due = [s for s in self._sleepers if s[0] <= target]
            if not due:
                break
            deadline, future = min(due, key=lambda s: s[0])
            self._sleepers.remove((deadline, future))
            self.time = max(self.time, deadline)
            future.set_result(None)
            await self.settle()
        self.time = target
        await self.settle()
