"""A function pool's state, its start and stop, and how an invocation's result is delivered.

:class:`~shoal.functions.pool.FunctionPool` is built in layers, each in its own module:

    lifecycle    Lifecycle: the state (templates, instances, queue, counters), start() and
                 stop(), delivering results (to the caller, the counters, on_invocation)
    templating   Templating: templates forked, ready or failed, idle, gone; cgroup folders
    tending      Tending: instances starting and ending, timeouts, reaping, top-up, reload
    pool         FunctionPool: the public API and the dispatch (the hot path)

Every method runs on the event loop, called back by a frame, an end-of-stream or a timer; the
few places where a lower layer needs a higher one are the hooks declared below.

:meth:`Lifecycle.stop` kills each running template's process group (the template and all its
instances), fails what is queued or running with :class:`~shoal.errors.FunctionUnavailable`,
waits until the processes are gone (``STOP_TIMEOUT`` at most, then whatever is left is
reported) and removes the cgroup folders.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from shoal.errors import FunctionError, FunctionUnavailable
from shoal.functions.forkserver import Forkserver
from shoal.functions.handles import Call, InstanceHandle, TemplateHandle
from shoal.functions.metrics import Counters
from shoal.functions.protocol import Header
from shoal.functions.results import InvocationResult
from shoal.functions.spec import FunctionSpec
from shoal.runtimes import cgroupfs
from shoal.runtimes.cgroup import InstanceCgroup
from shoal.runtimes.sandbox import Sandbox
from shoal.runtimes.watching import wait_group_gone

if TYPE_CHECKING:
    from shoal.functions.pool import OnInvocation, OnLog

logger = logging.getLogger("shoal.functions.pool")

EXIT_REPORT_WAIT = 1.0
"""Seconds to wait, after an instance's socket closed, for its exit code from the template."""
STOP_TIMEOUT = 5.0
"""Seconds :meth:`Lifecycle.stop` waits for killed processes to be gone."""
MAX_TOP_UP_DELAY = 30.0


class Lifecycle:
    """State and lifecycle of a function pool; the dispatch is in the subclass."""

    def __init__(
        self,
        spec: FunctionSpec,
        *,
        forkserver: Forkserver | None = None,
        sandbox: Sandbox | None = None,
        app: str = "shoal",
        log_path: Path | None = None,
        queue_size: int = 100,
        max_starting: int | None = None,
        template_idle_timeout: float | None = 600.0,
        prewarm: bool = True,
        standby: bool = True,
        watch_interval: float | None = 1.0,
        init_timeout: float = 10.0,
        on_invocation: OnInvocation | None = None,
        on_log: OnLog | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.spec = spec
        self.log_path = log_path
        self.queue_size = queue_size
        self.max_starting = max_starting or max(2, os.cpu_count() or 2)
        self.template_idle_timeout = template_idle_timeout
        self.prewarm = prewarm
        self.standby = standby
        self.watch_interval = watch_interval
        self.init_timeout = init_timeout
        self.on_invocation = on_invocation
        self.on_log = on_log
        self.wall_clock = wall_clock
        self._forkserver = forkserver
        self._owns_forkserver = forkserver is None
        memory = sandbox.memory if sandbox is not None else None
        self._memory = (
            None if memory is None else (memory.parent / cgroupfs.safe_name(app), memory.version)
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._template: TemplateHandle | None = None  # the current generation
        self._templates: list[TemplateHandle] = []  # every template whose process may live
        self._cgroup_templates: list[TemplateHandle] = []  # their cgroup folders may be left
        self._instances: set[InstanceHandle] = set()  # every instance not yet forgotten
        self._free: dict[InstanceHandle, None] = {}  # instances with a free slot; last = newest
        self._queue: deque[Call] = deque()
        self._counters = Counters()
        self._cgroups: set[InstanceCgroup] = set()
        self._live = 0
        self._starting = 0  # instances spawned that have not said hello yet
        self._ordinals: list[int] = []
        self._next_ordinal = 0
        self._seq = 0
        self._generation = 0
        self._start_failures = 0
        self._started = False
        self._start_lock: asyncio.Lock | None = None
        self._closed = False
        self._gone: asyncio.Event | None = None
        self._reap_timer: asyncio.Handle | None = None
        self._reap_at = 0.0
        self._watch_timer: asyncio.TimerHandle | None = None
        self._top_up_timer: asyncio.TimerHandle | None = None
        self._standby_timer: asyncio.TimerHandle | None = None
        self._warned: set[str] = set()
        self._stream_day = ""  # the date part of log stream names, and when it changes
        self._stream_day_ends = 0.0

    # ------------------------------------------------------------ hooks of the subclasses

    def _spawn(self) -> InstanceHandle:  # pool: start an instance
        raise NotImplementedError

    def _drain_queue(self) -> None:  # pool: hand queued invocations to free capacity
        raise NotImplementedError

    def _after_change(self) -> None:  # tending: capacity or templates changed
        raise NotImplementedError

    def _arm_watch(self) -> None:  # tending: check the handler file for changes
        raise NotImplementedError

    def _top_up(self) -> None:  # tending: start instances up to min_instances
        raise NotImplementedError

    def _on_spawned(self, template: TemplateHandle, header: Header) -> None:  # tending
        raise NotImplementedError

    def _on_exit_report(self, template: TemplateHandle, header: Header) -> None:  # tending
        raise NotImplementedError

    def _abort_instance(
        self, instance: InstanceHandle, failure: Callable[[Call], FunctionError]
    ) -> None:  # tending: fail an instance's invocations and forget it
        raise NotImplementedError

    def _finish_instance(self, instance: InstanceHandle) -> None:  # tending: it exited
        raise NotImplementedError

    def _on_instance_frame(self, instance: InstanceHandle, header: Header, body: bytes) -> None:
        raise NotImplementedError  # pool: a result or a hello

    def _drop_standby(self, template: TemplateHandle, reason: str) -> None:  # tending
        raise NotImplementedError

    def _arm_standby(self, delay: float) -> None:  # tending: fork a standby soon
        raise NotImplementedError

    def _new_template(self) -> TemplateHandle:  # templating: fork one
        raise NotImplementedError

    def _template_closed(self, template: TemplateHandle, exc: Exception | None) -> None:
        raise NotImplementedError  # templating: its process is gone

    def _template_cgroups(self, template: TemplateHandle) -> list[InstanceCgroup]:
        raise NotImplementedError  # templating: the cgroup folders it left

    # ------------------------------------------------------------ start and stop

    @property
    def forkserver(self) -> Forkserver | None:
        """The forkserver this pool's templates are forked from (None until started)."""
        return self._forkserver

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    async def start(self) -> None:
        """Start the forkserver if the pool owns it and, with ``prewarm`` or ``min_instances``,
        the template (waiting for its init, at most ``init_timeout``) and the warm instances."""
        if self._started or self._closed:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if not self._started and not self._closed:
                await self._start()

    async def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._gone = asyncio.Event()
        if self._forkserver is None:
            self._forkserver = Forkserver(log_path=self.log_path)
        await self._forkserver.start()
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self._memory is not None:
            try:
                self._memory[0].mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                self._warn("cgroup", f"memory limits not enforced: {exc}")
                self._memory = None
        self._started = True
        if self.prewarm or self.spec.min_instances:
            template = self._new_template()
            self._top_up()
            if template.settled is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(template.settled), self.init_timeout)

    async def stop(self) -> None:
        """Kill every process of the pool (templates' process groups) and wait until they are
        gone; invocations in flight or queued fail with FunctionUnavailable."""
        if self._closed:
            return
        self._closed = True
        for timer in (self._reap_timer, self._watch_timer, self._top_up_timer, self._standby_timer):
            if timer is not None:
                timer.cancel()
        queued, self._queue = list(self._queue), deque()
        for call in queued:
            self._fail(call, FunctionUnavailable, "the function stopped")
        running = list(self._templates)  # only these: an older template's pid may be reused
        for template in running:
            self._drop_standby(template, "stop")
            for instance in template.instances:
                instance.kill_reason = instance.kill_reason or "stop"
            if template.pid is not None:
                template.kill()
            elif template.channel is not None:
                template.channel.shutdown()
        if self._gone is not None and (self._live or self._templates):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._gone.wait(), STOP_TIMEOUT)
        for instance in list(self._instances):  # whatever did not report its end in time
            self._finish_instance(instance)
        for template in list(self._templates):
            self._template_closed(template, None)
        for template in running:  # each template leads its instances' process group
            if template.pid is not None:
                left = await wait_group_gone(template.pid, timeout=STOP_TIMEOUT)
                if left:
                    logger.warning("[%s] processes survived SIGKILL: %s", self.spec.name, left)
        for template in self._cgroup_templates:
            self._cgroups.update(self._template_cgroups(template))
        for cgroup in list(self._cgroups):
            if await cgroup.remove():
                self._cgroups.discard(cgroup)
        if self._owns_forkserver and self._forkserver is not None:
            await self._forkserver.stop()

    # ------------------------------------------------------------ results

    def _failure(
        self, call: Call, error: FunctionError, *, duration_ms: float | None = None
    ) -> InvocationResult:
        now = time.perf_counter()
        instance = call.instance
        return InvocationResult(
            function=self.spec.name,
            request_id=call.request_id,
            payload=error.payload,
            error=error,
            started_at=call.started_at,
            duration_ms=duration_ms if duration_ms is not None else 0.0,
            memory_mb=self.spec.memory_mb,
            cold=call.cold,
            init_duration_ms=call.init_ms if call.cold else None,
            ordinal=None if instance is None else instance.ordinal,
            latency_ms=(now - call.queued_at) * 1000,
        )

    def _fail(self, call: Call, kind: type[FunctionError], message: str) -> None:
        error = kind(message, function=self.spec.name, request_id=call.request_id)
        self._deliver(call, self._failure(call, error))

    def _deliver(self, call: Call, result: InvocationResult) -> None:
        if call.timer is not None:
            call.timer.cancel()
            call.timer = None
        if not call.future.done():
            call.future.set_result(result)
        self._counters.count(result.status, result.duration_ms, cold=result.cold)
        if self.on_invocation is not None:
            try:
                self.on_invocation(result)
            except Exception:
                logger.exception("[%s] on_invocation failed", self.spec.name)

    def _log(self, text: str) -> None:
        logger.info("[%s] %s", self.spec.name, text)
        if self.on_log is not None:
            try:
                self.on_log(text)
            except Exception:
                logger.exception("[%s] on_log failed", self.spec.name)

    def _warn(self, key: str, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning("[%s] %s", self.spec.name, text)
            self._log(text)
