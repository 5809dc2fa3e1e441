"""Following one container: its output into the instance's log file, then how it ended.

One :class:`Follower` per watched container runs a named daemon thread (the SDK blocks) that
streams the engine's log of the container into ``spec.log_path`` (appended, so the log store
tails it as it tails a process's output). The stream ends when the container stops; the thread
then inspects the container for its exit code and OOM flag, removes it, and resolves
:attr:`Follower.exit` on the event loop. If the stream breaks while the container still runs
(the engine restarted), it re-attaches from where it was.

:meth:`Follower.detach` closes the stream so the thread ends without touching the container:
that is how a daemon lets go of containers it leaves running for the next one to adopt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from pathlib import Path
from typing import Any

from shoal.runtimes.base import Exit, Handle
from shoal.runtimes.container.engine import Client
from shoal.runtimes.container.shaping import exit_of, memory_limit_text

logger = logging.getLogger(__name__)

RETRY_INTERVAL = 0.5
"""Seconds between attempts to re-attach when the engine dropped the stream or did not answer."""
GONE = Exit(code=None, reason="the container is gone")


class Follower:
    """Streams one container's output to its log file and resolves :attr:`exit` when it ends."""

    def __init__(
        self, client: Client, handle: Handle, *, since: float | None, remove: bool = True
    ) -> None:
        self.handle = handle
        self.exit: asyncio.Future[Exit] = asyncio.get_running_loop().create_future()
        self._client = client
        self._id = str(handle.runtime_ref)
        self._since = since
        self._remove = remove
        self._loop = asyncio.get_running_loop()
        self._detached = threading.Event()
        self._stream: Any = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._follow,
            name=f"shoal.runtimes.container.follow[{handle.spec.label}]",
            daemon=True,
        )

    @property
    def container_id(self) -> str:
        return self._id

    def start(self) -> None:
        self._thread.start()

    async def detach(self, timeout: float = 5.0) -> None:
        """Stop following (the container keeps running); wait for the thread to end."""
        self._detached.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()
        await asyncio.to_thread(self._thread.join, timeout)
        if not self.exit.done():
            self.exit.cancel()

    # ------------------------------------------------------------------ the thread

    def _follow(self) -> None:
        try:
            result = self._run()
        except Exception as exc:  # never die silently: the supervisor waits on this
            logger.exception("[%s] following the container failed", self.handle.spec.label)
            result = Exit(code=None, reason=f"lost track of the container: {exc}")
        if result is not None:
            self._resolve(result)

    def _run(self) -> Exit | None:
        path: Path = self.handle.spec.log_path
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab", buffering=0) as out:
            while not self._detached.is_set():
                self._stream_into(out)
                if self._detached.is_set():
                    return None
                try:
                    state = self._client.api.inspect_container(self._id)["State"]
                except Exception as exc:
                    if getattr(exc, "status_code", None) == 404:
                        return GONE
                    time.sleep(RETRY_INTERVAL)  # the engine is away: look again
                    continue
                if state.get("Running"):
                    time.sleep(RETRY_INTERVAL / 5)  # the stream broke, not the container
                    continue  # re-attach
                result = exit_of(state, memory_limit_text(self.handle.spec))
                if self._remove:
                    self._remove_container()
                return result
        return None

    def _stream_into(self, out: Any) -> None:
        since = self._since
        try:
            kwargs: dict[str, Any] = {"stream": True, "follow": True}
            if since is not None:
                kwargs["since"] = since
            stream = self._client.api.logs(self._id, **kwargs)
        except Exception as exc:
            if getattr(exc, "status_code", None) != 404:
                time.sleep(RETRY_INTERVAL)
            return
        with self._lock:
            self._stream = stream
        if self._detached.is_set():
            with contextlib.suppress(Exception):
                stream.close()
            return
        try:
            for chunk in stream:
                out.write(chunk)
                self._since = time.time()
        except Exception:  # closed by detach, or the engine went away: the caller looks
            return
        finally:
            with self._lock:
                self._stream = None
            with contextlib.suppress(Exception):
                stream.close()

    def _remove_container(self) -> None:
        try:
            self._client.api.remove_container(self._id, force=True)
        except Exception as exc:
            if getattr(exc, "status_code", None) not in (404, 409):  # gone, or being removed
                logger.warning("[%s] could not remove container: %s", self.handle.spec.label, exc)

    def _resolve(self, result: Exit) -> None:
        def settle() -> None:
            if not self.exit.done():
                self.exit.set_result(result)

        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(settle)


__all__ = ["GONE", "Follower"]
