"""The daemon's handle on the forkserver: the one process every function template is forked from.

One :class:`Forkserver` per daemon (every :class:`~shoal.functions.pool.FunctionPool` shares
it; a pool given none starts a private one). :meth:`Forkserver.start` runs
``python -m shoal.functions.template --root`` in its own session, with one end of a socketpair
as its control socket, and waits for its ``ready``. :meth:`Forkserver.fork_template` sends a
``template`` command carrying the new template's control socket (SCM_RIGHTS) and calls back
with the template's pid once forked. Nothing here waits on the hot path: commands are queued
on the socket and answers arrive as callbacks on the event loop.

Why a forkserver rather than a ``python3`` per template: starting an interpreter costs tens of
milliseconds and megabytes of private memory each; forking one that is already initialised
costs well under a millisecond and shares its pages. That is what lets a pool hold no process
at all while its function is idle (DESIGN.md §6: 1,000 functions at zero) and still start a
template in a few milliseconds plus the handler's own init.

Stopping closes the control socket: the forkserver kills every template's process group, reaps
and exits; if the daemon dies instead, the same end-of-stream does the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import shoal
from shoal.errors import InstanceStartError
from shoal.functions.protocol import Channel, Header
from shoal.runtimes.spawning import build_env, open_log

logger = logging.getLogger(__name__)

Forked = Callable[[int | None, str], None]
"""Called once per ``fork_template``: (pid, "") or (None, why the fork failed)."""


class Forkserver:
    """The root zygote process and its control channel (see the module docstring)."""

    def __init__(
        self,
        *,
        python: str = sys.executable,
        log_path: Path | None = None,
        preload: tuple[str, ...] = (),
        start_timeout: float = 10.0,
        tag: str | None = None,
    ) -> None:
        self.python = python
        self.log_path = log_path
        self.preload = preload
        self.start_timeout = start_timeout
        self.tag = tag or f"shoal-fn-{uuid.uuid4().hex[:12]}"
        self.pid: int | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._channel: Channel | None = None
        self._ready: asyncio.Future[int] | None = None
        self._pending: dict[int, Forked] = {}
        self._seq = 0
        self._starting: asyncio.Lock | None = None

    @property
    def running(self) -> bool:
        return self._channel is not None and not self._channel.closed and self.pid is not None

    def argv(self, fd: int) -> list[str]:
        argv = [self.python, "-m", "shoal.functions.template", "--root", "--fd", str(fd)]
        argv += ["--tag", self.tag]
        return [*argv, "--preload", ",".join(self.preload)] if self.preload else argv

    async def start(self) -> None:
        """Start the forkserver (once; again if it died) and wait until it is ready."""
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self.running:
                return
            await self._start()

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        parent, child = socket.socketpair()
        package_root = str(Path(shoal.__file__).resolve().parents[1])
        env = build_env(os.environ, {"PYTHONPATH": package_root})
        log_fd = open_log(self.log_path) if self.log_path is not None else None
        argv = self.argv(child.fileno())
        try:
            self._process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_fd if log_fd is not None else asyncio.subprocess.DEVNULL,
                stderr=log_fd if log_fd is not None else asyncio.subprocess.DEVNULL,
                pass_fds=(child.fileno(),),
                start_new_session=True,
                env=env,
                cwd="/",
            )
        except OSError as exc:
            parent.close()
            raise InstanceStartError(
                label="functions", argv=tuple(argv), reason=str(exc), errno=exc.errno
            ) from exc
        finally:
            child.close()
            if log_fd is not None:
                os.close(log_fd)
        self._ready = loop.create_future()
        self._channel = Channel(loop, parent, self._on_frame, self._on_close)
        try:
            self.pid = await asyncio.wait_for(asyncio.shield(self._ready), self.start_timeout)
        except (TimeoutError, ConnectionError) as exc:
            await self.stop()
            raise InstanceStartError(
                label="functions", argv=tuple(argv), reason=f"forkserver did not start: {exc}"
            ) from exc
        logger.debug("forkserver ready (pid %s)", self.pid)

    def fork_template(self, config: dict[str, Any], fd: int, forked: Forked) -> None:
        """Ask for a template with ``config``; ``fd`` (its control socket) now belongs here."""
        channel = self._channel
        if channel is None or channel.closed:
            os.close(fd)
            asyncio.get_running_loop().call_soon(forked, None, "the forkserver is not running")
            return
        self._seq += 1
        self._pending[self._seq] = forked
        channel.send({"op": "template", "seq": self._seq, "fds": 1, "config": config}, fds=[fd])

    def _on_frame(self, header: Header, body: bytes) -> None:
        op = header.get("op")
        if op == "forked":
            callback = self._pending.pop(header["seq"], None)
            if callback is not None:
                callback(int(header["pid"]), "")
        elif op == "fork_failed":
            callback = self._pending.pop(header["seq"], None)
            if callback is not None:
                callback(None, str(header.get("reason", "fork failed")))
        elif op == "ready" and self._ready is not None and not self._ready.done():
            self._ready.set_result(int(header["pid"]))

    def _on_close(self, exc: Exception | None) -> None:
        logger.warning("the function forkserver exited%s", f" ({exc})" if exc else "")
        self.pid = None
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(ConnectionError("the forkserver closed its socket"))
        pending, self._pending = self._pending, {}
        for callback in pending.values():
            callback(None, "the forkserver exited")

    async def stop(self, timeout: float = 5.0) -> None:
        """Close the control socket (the forkserver kills its templates and exits); wait."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        self.pid = None
        process, self._process = self._process, None
        if process is None:
            return
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        if self._ready is not None and not self._ready.done():
            self._ready.cancel()


__all__ = ["Forked", "Forkserver"]
