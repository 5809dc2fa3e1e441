"""One function's warm pool, in the daemon: dispatch, scale, limit, reload, record.

    invoke(event) ──▶ admit ─┬─ run    on an instance with a free slot (the most recently used)
                             ├─ spawn  a new instance (<= max_instances, <= max_starting
                             │         starting at once): the invocation is written to its
                             │         socket at once and runs when it says hello
                             ├─ queue  (bounded): the first instance to free up or start takes it
                             └─ throttle  FunctionThrottled (429)

Everything is driven by callbacks on the event loop (frames from sockets, timers on the loop
clock): no task per invocation or per instance. Templates and instances are described in
``shoal.functions.template``; the records the pool keeps in ``shoal.functions.handles``; its
decisions in ``shoal.functions.scaling`` (pure).

- **Cold start**: no instance is free, so the template's **standby** is taken, or else a
  ``spawn`` command goes to the template (started on first demand if the pool holds none: it is
  forked from the forkserver and imports the handler); the invocation is pipelined behind it.
  Its result says ``cold`` and carries ``init_duration_ms``: spawn sent (or standby taken) to
  ``hello`` received, i.e. what the invocation waited.
- **Standby** (``standby=True``, the default): a running template keeps one instance forked
  ahead of demand, outside the books (not an instance, not counted, never reaped), waiting on
  its socket with nothing of the function run in it (see ``shoal.functions.instance``). A
  scale-up takes it (its first frame, ``go`` or the invocation, wakes it) and another is forked
  ``STANDBY_DELAY`` later, once no instance is starting: the fork, the largest part of a cold
  start on a small VM (1.5 ms of 5 here), is off the request's path. It is dropped unused
  (end-of-stream) with its template: reload, idle retirement, stop.
- **Limits**: each invocation has a timer (the function's ``timeout``, started when its instance
  is up); when it fires the instance is SIGKILLed (through its pidfd) and the invocation returns
  :class:`~shoal.errors.FunctionTimeout`. Each instance is born in a cgroup of its own with the
  memory limit (where :class:`~shoal.runtimes.sandbox.Sandbox` finds a writable memory
  controller; see ``shoal.functions.hopping``); one that dies is classified from the
  template's exit report and the cgroup's OOM count: :class:`~shoal.errors.FunctionOutOfMemory`
  or :class:`~shoal.errors.FunctionCrashed`. A dead instance is forgotten; the next demand
  starts another. Nothing waits without a deadline.
- **Scaling**: idle instances stop ``idle_timeout`` after their last invocation (never while
  busy, never below ``min_instances``). A template with no instance stops after
  ``template_idle_timeout`` (then the pool holds no process; the next invocation forks a new
  template first: a "deep" cold start that includes the handler's import).
- **Reload**: the handler file is checked every ``watch_interval`` seconds (stat, then a hash
  when the stat changed); a new content retires the template: its idle instances stop, busy
  ones finish what they run and then stop, and new invocations go to a new template.
- **Records**: every invocation (throttles too) ends in one
  :class:`~shoal.functions.results.InvocationResult`, passed to ``on_invocation`` (the daemon
  stores it and writes its REPORT line) and counted in :meth:`FunctionPool.metrics`.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from shoal.errors import FunctionThrottled, FunctionUnavailable, InstanceStartError
from shoal.functions.handles import Call, InstanceHandle, PoolSnapshot
from shoal.functions.metrics import PoolMetrics
from shoal.functions.protocol import Header
from shoal.functions.results import InvocationResult, handler_error
from shoal.functions.scaling import Admission, admit, should_spawn
from shoal.functions.tending import STANDBY_DELAY, Tending

OnInvocation = Callable[[InvocationResult], None]
OnLog = Callable[[str], None]
Event = bytes | dict[str, Any] | list[Any] | str | int | float | bool | None


class FunctionPool(Tending):
    """The warm pool of one function (see the module docstring).

    ``FunctionPool(spec, *, forkserver=None, sandbox=None, app="shoal", log_path=None,
    queue_size=100, max_starting=None, template_idle_timeout=600.0, prewarm=True,
    standby=True, watch_interval=1.0, init_timeout=10.0, on_invocation=None, on_log=None,
    wall_clock=time.time)``:

    ``forkserver``: shared by the daemon's pools; None starts a private one. ``sandbox``: where
    memory cgroups go (None: no memory limits); ``app`` names their folder. ``log_path``: the
    function's output file (handlers' stdout and stderr, appended by the processes themselves).
    ``queue_size``: invocations that may wait for a busy instance before throttling (those
    waiting for an instance still to be started come on top). ``max_starting``: instances
    starting at once (default: the CPU count; see ``shoal.functions.scaling``).
    ``template_idle_timeout``: seconds a template with no instance is kept (None: forever).
    ``prewarm``: start the template in :meth:`start` (init errors show at once, and the first
    invocation only forks); False leaves the pool holding no process until its first call.
    ``standby``: keep a standby instance per running template (see above).
    ``watch_interval``: seconds between checks of the handler file (None: never; see
    :meth:`reload_if_changed`). ``init_timeout``: seconds a template's import, or an
    instance's start, may take. ``on_invocation``: called with every result (throttles too).
    ``on_log``: called with lifecycle lines for the function's log (instance killed...).
    ``wall_clock``: epoch seconds for ``started_at``.
    """

    # ------------------------------------------------------------ public API

    async def invoke(
        self, event: Event, *, request_id: str | None = None, timeout: float | None = None
    ) -> InvocationResult:
        """Run the handler on ``event`` (a JSON value, or bytes that already are JSON) and
        return its result. Never raises for what happens to the invocation: the result's
        ``error`` says (handler error, timeout, out of memory, crash, throttle...).
        ``timeout`` overrides the function's for this invocation."""
        if not self._started:
            await self.start()
        forkserver = self._forkserver
        if forkserver is not None and not forkserver.running and not self._closed:
            try:
                await forkserver.start()
            except InstanceStartError as exc:
                self._warn("forkserver", f"cannot start the forkserver: {exc}")
        call = self._submit(event, request_id, timeout)
        try:
            result: InvocationResult = await call.future
        except asyncio.CancelledError:
            if call.instance is None and call in self._queue:
                self._queue.remove(call)
            raise
        return result

    def snapshot(self) -> PoolSnapshot:
        """Templates (the current one first) and instances as they are now (``shoal ps``)."""
        current = [self._template] if self._template is not None else []
        templates = [*current, *(t for t in self._templates if t is not self._template)]
        instances = sorted(self._instances, key=lambda i: i.ordinal)
        return PoolSnapshot(
            function=self.spec.name,
            templates=tuple(t.view() for t in templates),
            instances=tuple(i.view() for i in instances),
            queued=len(self._queue),
            in_flight=sum(i.in_flight for i in instances),
        )

    def metrics(self) -> PoolMetrics:
        """Counters since the pool started and gauges now, as plain numbers."""
        live = [i for i in self._instances if i.state != "exited"]
        return self._counters.snapshot(
            self.spec.name,
            in_flight=sum(i.in_flight for i in live),
            queued=len(self._queue),
            instances=self._live,
            busy=sum(1 for i in live if i.in_flight),
            idle=sum(1 for i in live if i.state == "running" and not i.in_flight),
        )

    # ------------------------------------------------------------ dispatch: the hot path

    def _submit(self, event: Event, request_id: str | None, timeout: float | None) -> Call:
        queued_at = time.perf_counter()
        decision: Admission | None = None
        if not self._closed and self._template_usable(None):
            decision = admit(
                has_free=bool(self._free),
                live=self._live,
                starting=self._starting,
                max_instances=self.spec.max_instances,
                max_starting=self.max_starting,
                queued=len(self._queue),
                queue_size=self.queue_size,
            )
        # A cold start tells the template first: it forks while the rest is done here.
        instance = self._spawn(invoking=True) if decision == "spawn" else None
        call = Call(
            request_id or str(uuid.uuid4()),
            event if isinstance(event, bytes) else json.dumps(event).encode(),
            timeout if timeout is not None else self.spec.timeout,
            self._get_loop().create_future(),
            queued_at,
            self.wall_clock(),
        )
        if decision is None:
            if self._closed:
                self._fail(call, FunctionUnavailable, "the function is stopping")
            else:
                self._template_usable(call)  # fails it with the template's init error
        elif decision == "run":
            self._assign(call, next(reversed(self._free)))
        elif instance is not None:
            self._assign(call, instance)
        elif decision == "queue":
            self._queue.append(call)
        else:
            message = (
                f"Rate Exceeded: {self.spec.max_instances} instances busy "
                f"and {len(self._queue)} invocations queued"
            )
            self._fail(call, FunctionThrottled, message)
        return call

    def _assign(self, call: Call, instance: InstanceHandle) -> None:
        call.instance = instance
        instance.calls[call.request_id] = call
        instance.in_flight += 1
        if instance.in_flight >= self.spec.concurrency:
            self._free.pop(instance, None)
        channel = instance.channel
        if channel is not None:
            channel.send(
                {"op": "invoke", "id": call.request_id, "t": int(call.timeout * 1000)}, call.body
            )
        if instance.state == "running":
            call.timer = self._get_loop().call_later(call.timeout, self._timed_out, call)
        else:
            call.cold = True

    def _spawn(self, *, invoking: bool = False) -> InstanceHandle:
        """A new instance: the template's standby if it has one, else a fork asked for now.
        ``invoking``: an invocation is written to it next (which wakes a standby up)."""
        template = self._template if self._template is not None else self._new_template()
        standby = template.standby
        if standby is not None and template.state == "running":
            template.standby = None
            instance = standby
            if not invoking and instance.channel is not None:
                instance.channel.send({"op": "go"})
            self._arm_standby(STANDBY_DELAY)
        else:
            instance, sent = self._fork_instance(template, standby=False)
            if not sent:
                instance.kill_reason = "start"
        # The instance is forking, or waking up, from here on; the bookkeeping follows.
        if template.idle_timer is not None:
            template.idle_timer.cancel()
            template.idle_timer = None
        if self._ordinals:
            instance.ordinal = heapq.heappop(self._ordinals)
        else:
            instance.ordinal = self._next_ordinal
            self._next_ordinal += 1
        instance.state = "starting"
        instance.holds_start_slot = True
        instance.spawned_at = time.perf_counter()
        delay = self.init_timeout * (1 if template.state == "running" else 2)
        instance.start_timer = self._get_loop().call_later(delay, self._start_timed_out, instance)
        template.instances.add(instance)
        self._instances.add(instance)
        self._live += 1
        self._starting += 1
        self._counters.instance_starts += 1
        self._free[instance] = None
        return instance

    def _on_instance_frame(self, instance: InstanceHandle, header: Header, body: bytes) -> None:
        if header.get("op") == "result":
            self._on_result(instance, header, body)
        elif header.get("op") == "hello":
            self._on_hello(instance, header)

    def _on_result(self, instance: InstanceHandle, header: Header, body: bytes) -> None:
        call = instance.calls.pop(header["id"], None)
        if call is None:
            return
        now = time.perf_counter()
        instance.in_flight -= 1
        instance.invocations += 1
        instance.last_done = self._get_loop().time()
        name = self.spec.name
        rss = header.get("rss")
        self._deliver(
            call,
            InvocationResult(
                function=name,
                request_id=call.request_id,
                payload=body,
                error=None if header.get("ok") else handler_error(name, call.request_id, body),
                started_at=call.started_at,
                duration_ms=float(header.get("ms", 0.0)),
                memory_mb=self.spec.memory_mb,
                max_memory_bytes=rss if isinstance(rss, int) else None,
                cold=call.cold,
                init_duration_ms=call.init_ms if call.cold else None,
                ordinal=instance.ordinal,
                latency_ms=(now - call.queued_at) * 1000,
            ),
        )
        self._released(instance)

    def _released(self, instance: InstanceHandle) -> None:
        """A slot of ``instance`` came free: the next queued call takes it, or it waits."""
        if instance.state != "running":
            return
        if instance.template is not self._template:
            if not instance.in_flight:
                self._stop_instance(instance, "reload")
            return
        if self._queue:
            self._assign(self._queue.popleft(), instance)
            return
        self._free.pop(instance, None)
        self._free[instance] = None  # the most recently used goes first: the others age out
        if not instance.in_flight:
            self._arm_reaper(instance.last_done + self.spec.idle_timeout)

    def _drain_queue(self) -> None:
        while self._queue and not self._closed:
            if self._free:
                self._assign(self._queue.popleft(), next(reversed(self._free)))
            elif should_spawn(
                live=self._live,
                starting=self._starting,
                max_instances=self.spec.max_instances,
                max_starting=self.max_starting,
            ) and self._template_usable(None):
                self._assign(self._queue.popleft(), self._spawn(invoking=True))
            else:
                return


__all__ = ["Event", "FunctionPool", "OnInvocation", "OnLog"]
