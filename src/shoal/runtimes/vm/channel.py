"""The host end of a VM's control line: text lines to and from the guest init.

qemu exposes the guest's second serial port (``/dev/ttyS1``) as a unix socket in the instance's
run folder; :class:`Channel` connects to it (again, after a daemon restart) and keeps one named
reader task. The guest says ``ready`` (its service port accepts connections), ``synced`` (after
a restore: clock and entropy done, the command thawed), ``primed`` (a standby's clock and
entropy done, the command still frozen), ``warmed`` (the snapshot maker's one request answered),
``frozen`` (the command stopped for the snapshot), ``exit <code>`` or ``signal <n>`` (how the
command ended); the host says ``warm <path>``, ``freeze``, ``prime <unix-ns> <hex>``,
``sync <unix-ns> <hex>``, ``stop <grace>`` and ``kill <signum>``. The protocol's other end is
``guest_init.c`` (in this folder).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path

logger = logging.getLogger(__name__)

ENTROPY_BYTES = 32
CONNECT_POLL = 0.002
"""Seconds between tries while qemu has not made the control socket yet (a restore waits)."""


class Channel:
    """One VM's control line; ``ready``/``synced`` are events, ``ended`` how the command ended."""

    def __init__(self, label: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.label = label
        self.ready = asyncio.Event()
        self.synced = asyncio.Event()
        self.primed = asyncio.Event()
        self.warmed = asyncio.Event()
        self.frozen = asyncio.Event()
        self.ended: tuple[str, int] | None = None  # ("exit", code) or ("signal", number)
        self._writer = writer
        self._task = asyncio.create_task(
            self._read(reader), name=f"shoal.runtimes.vm.channel[{label}]"
        )
        self._task.add_done_callback(self._finished)

    @classmethod
    async def connect(cls, label: str, path: Path, timeout: float = 10.0) -> Channel:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(str(path))
                return cls(label, reader, writer)
            except (FileNotFoundError, ConnectionRefusedError):
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(CONNECT_POLL)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await reader.readline()
            except (OSError, ValueError):  # reset (qemu gone) or an overlong line
                return
            if not line:
                return
            self._heard(line.decode(errors="replace").strip())

    def _heard(self, line: str) -> None:
        verb, _, rest = line.partition(" ")
        if verb == "ready":
            self.ready.set()
        elif verb == "synced":
            self.synced.set()
        elif verb == "primed":
            self.primed.set()
        elif verb == "warmed":
            self.warmed.set()
        elif verb == "frozen":
            self.frozen.set()
        elif verb in ("exit", "signal"):
            with contextlib.suppress(ValueError):
                self.ended = (verb, int(rest))
        elif line:
            logger.debug("[%s] control: %r", self.label, line)

    def _finished(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.debug("[%s] control line failed: %r", self.label, task.exception())

    def say(self, line: str) -> None:
        if not self._writer.is_closing():
            self._writer.write(line.encode() + b"\n")

    async def sync(self, timeout: float) -> bool:
        """Give a restored guest the wall clock and fresh entropy and thaw its command; True
        once it confirmed."""
        fresh = f"{time.time_ns()} {os.urandom(ENTROPY_BYTES).hex()}"
        return await self._ask(f"sync {fresh}", self.synced, timeout)

    async def prime(self, timeout: float) -> bool:
        """What :meth:`sync` does but the thaw: a standby's (its command stays frozen)."""
        fresh = f"{time.time_ns()} {os.urandom(ENTROPY_BYTES).hex()}"
        return await self._ask(f"prime {fresh}", self.primed, timeout)

    async def freeze(self, timeout: float) -> bool:
        """SIGSTOP the command's process group (the snapshot maker's last step)."""
        return await self._ask("freeze", self.frozen, timeout)

    async def _ask(self, line: str, answer: asyncio.Event, timeout: float) -> bool:
        answer.clear()
        self.say(line)
        try:
            await asyncio.wait_for(answer.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


__all__ = ["CONNECT_POLL", "ENTROPY_BYTES", "Channel"]
