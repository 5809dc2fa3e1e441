"""Tending a pool's instances: their start, their end, their failures; reaping, topping up, reload.

The third layer of :class:`~shoal.functions.pool.FunctionPool` (see
``shoal.functions.lifecycle``: below it the state and the templates, above it the dispatch).
Callbacks on the event loop, each one short:

- ``hello``: the instance is up; timers start for the invocations already written to it;
  ``error`` in it (``after_fork`` raised) fails them with the init error. An instance that
  does not say hello within ``init_timeout`` of its spawn (twice that while its template is
  still importing the handler) fails them too, and is killed: a hung ``before_fork()``,
  ``after_fork()`` or template never leaves an invocation waiting without a deadline.
- end-of-stream on its socket: the instance exited. Invocations still on it fail with what
  killed it: our timeout kill, the memory limit (the cgroup's OOM count), or a crash (the exit
  code from the template's ``exit`` report, waited for at most ``EXIT_REPORT_WAIT`` seconds).
- a timed-out invocation: its instance is SIGKILLed and the invocation returns at once.
- reaping: ``plan_reap`` (pure) picks idle instances past ``idle_timeout``; a stopped instance
  gets end-of-stream on its socket, finishes nothing (it is idle) and exits 0.
- ``min_instances``: topped up after every change, with a doubling delay while instances fail
  to start, so a broken ``after_fork`` does not fork in a loop.
- standbys: forked ahead of demand (``_park``), taken by ``_spawn``, dropped with their
  template, replaced a second after one dies (see ``shoal.functions.pool``).
- reload: a new handler file retires the template (see :meth:`Tending.reload`).
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import os
import signal
import socket
import time
from collections.abc import Callable
from functools import partial

from shoal.errors import FunctionCrashed, FunctionError, FunctionInitError, FunctionUnavailable
from shoal.functions.context import log_stream_name
from shoal.functions.handles import (
    Call,
    InstanceHandle,
    TemplateHandle,
    close_fd,
    kill,
    pidfd_for,
)
from shoal.functions.lifecycle import EXIT_REPORT_WAIT, MAX_TOP_UP_DELAY
from shoal.functions.protocol import Channel, Header
from shoal.functions.results import exit_error, init_error, timeout_error
from shoal.functions.scaling import Idle, plan_reap
from shoal.functions.templating import Templating

STANDBY_DELAY = 0.01
"""Seconds after a standby is taken before the next one is forked (and between tries while
instances are starting): the taken one runs its first invocation meanwhile."""


class Tending(Templating):
    """Instance events, scaling down and up, standbys, reload (see the module docstring)."""

    # ------------------------------------------------------------ an instance starts

    def _on_spawned(self, template: TemplateHandle, header: Header) -> None:
        instance = template.spawning.pop(header.get("seq", -1), None)
        if instance is None:
            return
        known = instance.pid is not None  # its hello may have come first (spawned is deferred)
        self._know_pid(instance, int(header["pid"]))
        self._instance_cgroup(instance, header.get("cgroup"))
        if not known and instance.kill_reason is not None and instance.state != "exited":
            kill(instance.pid, instance.pidfd)  # it was to die before its pid was known

    def _know_pid(self, instance: InstanceHandle, pid: int) -> None:
        if instance.pid is None:
            instance.pid = pid
            instance.pidfd = pidfd_for(pid)
            instance.template.by_pid[pid] = instance

    def _on_hello(self, instance: InstanceHandle, header: Header) -> None:
        if instance.state != "starting":
            return
        if instance.start_timer is not None:
            instance.start_timer.cancel()
            instance.start_timer = None
        if isinstance(header.get("pid"), int):
            self._know_pid(instance, header["pid"])
        self._start_over(instance)
        error = header.get("error")
        if isinstance(error, dict):
            self._start_failures += 1
            self._log(f"instance #{instance.ordinal} could not start: {error.get('errorMessage')}")
            self._fail_calls(
                instance, lambda call: init_error(self.spec.name, call.request_id, error)
            )
            instance.kill_reason = "start"
            self._stop_instance(instance, "start")
            return
        self._start_failures = 0
        loop = self._get_loop()
        now = loop.time()
        instance.state = "running"
        instance.ready_at = instance.last_done = now
        instance.start_ms = (time.perf_counter() - instance.spawned_at) * 1000
        for call in instance.calls.values():
            call.init_ms = instance.start_ms
            call.timer = loop.call_later(call.timeout, self._timed_out, call)
        if not instance.calls:
            if instance.template is not self._template:
                self._stop_instance(instance, "reload")
            elif instance.in_flight < self.spec.concurrency:
                self._free[instance] = None
        self._drain_queue()  # a start slot came free, and maybe capacity
        if not instance.in_flight and instance.state == "running":
            self._arm_reaper(now + self.spec.idle_timeout)

    def _start_over(self, instance: InstanceHandle) -> None:
        """``instance`` no longer holds one of the ``max_starting`` start slots."""
        if instance.holds_start_slot:
            instance.holds_start_slot = False
            self._starting -= 1

    def _start_timed_out(self, instance: InstanceHandle) -> None:
        instance.start_timer = None
        if instance.state != "starting":
            return
        self._start_over(instance)
        self._start_failures += 1
        message = f"the instance did not start within {self.init_timeout:g}s"
        self._fail_calls(
            instance,
            lambda call: FunctionInitError(
                message, function=self.spec.name, request_id=call.request_id
            ),
        )
        instance.kill("start")

    # ------------------------------------------------------------ an invocation times out

    def _timed_out(self, call: Call) -> None:
        instance = call.instance
        call.timer = None
        if instance is None or instance.calls.pop(call.request_id, None) is None:
            return
        instance.in_flight -= 1
        self._free.pop(instance, None)
        instance.kill("timeout")
        self._log(
            f"instance #{instance.ordinal} killed: {call.request_id} ran past {call.timeout:g}s"
        )
        error = timeout_error(self.spec.name, call.request_id, call.timeout)
        self._deliver(call, self._failure(call, error, duration_ms=call.timeout * 1000))

    # ------------------------------------------------------------ an instance ends

    def _on_instance_closed(self, instance: InstanceHandle, exc: Exception | None) -> None:
        """End-of-stream on the instance's socket: its process exited (or is exiting)."""
        if instance.state == "exited":
            return
        if instance.state == "standby":
            self._standby_closed(instance)
            return
        instance.state = "exited"
        self._free.pop(instance, None)
        waiting = instance.calls and instance.kill_reason is None and not instance.exited
        if waiting and instance.pid is not None and instance.template.state != "exited":
            instance.gone_timer = self._get_loop().call_later(
                EXIT_REPORT_WAIT, self._finish_instance, instance
            )
            return
        self._finish_instance(instance)

    def _on_exit_report(self, template: TemplateHandle, header: Header) -> None:
        instance = template.by_pid.pop(header.get("pid", -1), None)
        if instance is None:
            return
        code = header.get("code")
        instance.exit_code = code if isinstance(code, int) else None
        instance.exited = True
        if instance.gone_timer is not None:
            self._finish_instance(instance)
        elif instance not in template.instances:  # already finished: only its cgroup is left
            self._discard_cgroup(instance.cgroup)

    def _finish_instance(self, instance: InstanceHandle) -> None:
        if instance.gone_timer is not None:
            instance.gone_timer.cancel()
            instance.gone_timer = None
        if instance.calls:
            now = time.perf_counter()
            for call in list(instance.calls.values()):
                error = self._exit_failure(instance, call)
                elapsed = (now - call.queued_at) * 1000
                self._deliver(call, self._failure(call, error, duration_ms=elapsed))
            instance.calls.clear()
        if self._forget_instance(instance):
            self._after_change()

    def _exit_failure(self, instance: InstanceHandle, call: Call) -> FunctionError:
        """Why an invocation failed when its instance ended under it."""
        name, request_id = self.spec.name, call.request_id
        reason = instance.kill_reason
        if reason == "timeout":
            message = (
                f"RequestId: {request_id} Error: its instance was killed "
                "because another invocation on it timed out"
            )
            return FunctionCrashed(message, function=name, request_id=request_id)
        if reason in ("stop", "start"):
            text = "the function stopped" if reason == "stop" else "the instance could not start"
            return FunctionUnavailable(text, function=name, request_id=request_id)
        if reason == "template":
            message = f"RequestId: {request_id} Error: the function's template exited"
            return FunctionCrashed(message, function=name, request_id=request_id)
        code = instance.exit_code if instance.exited else None
        oom = instance.cgroup is not None and instance.cgroup.oom_killed(
            killed_by_sigkill=code == -signal.SIGKILL
        )
        return exit_error(name, request_id, code, oom=oom, memory_mb=self.spec.memory_mb)

    def _fail_calls(
        self, instance: InstanceHandle, failure: Callable[[Call], FunctionError]
    ) -> None:
        for call in list(instance.calls.values()):
            self._deliver(call, self._failure(call, failure(call)))
        instance.calls.clear()
        instance.in_flight = 0

    def _abort_instance(
        self, instance: InstanceHandle, failure: Callable[[Call], FunctionError]
    ) -> None:
        """An instance that will never serve: fail its invocations, forget it."""
        self._fail_calls(instance, failure)
        instance.kill_reason = instance.kill_reason or "start"
        instance.state = "exited"
        self._forget_instance(instance)

    def _forget_instance(self, instance: InstanceHandle) -> bool:
        """Drop an ended instance from the books; False if it already was."""
        template = instance.template
        if instance not in template.instances:
            return False
        template.instances.discard(instance)
        self._instances.discard(instance)
        template.spawning.pop(instance.seq, None)
        self._start_over(instance)
        self._free.pop(instance, None)
        if instance.start_timer is not None:
            instance.start_timer.cancel()
        self._let_go(instance)
        self._live -= 1
        heapq.heappush(self._ordinals, instance.ordinal)
        if instance.kill_reason not in ("idle", "reload", "stop"):
            code = "?" if instance.exit_code is None else instance.exit_code
            self._log(
                f"instance #{instance.ordinal} ended ({instance.kill_reason or 'exit'} {code})"
            )
        return True

    def _let_go(self, instance: InstanceHandle) -> None:
        """An ended instance's socket and pidfd closed; its cgroup removed once it has exited
        (its exit report came, or its template is gone)."""
        if instance.channel is not None:
            instance.channel.close()
        close_fd(instance.pidfd)
        instance.pidfd = None
        if instance.exited or instance.template.state == "exited":
            self._discard_cgroup(instance.cgroup)

    # ------------------------------------------------------------ scaling down and up

    def _stop_instance(self, instance: InstanceHandle, reason: str) -> None:
        """Ask an instance to finish and exit: it reads end-of-stream; its exit comes later."""
        self._free.pop(instance, None)
        instance.state = "stopping"
        if instance.kill_reason is None:
            instance.kill_reason = reason
        if instance.channel is not None:
            instance.channel.shutdown()

    def _arm_reaper(self, when: float) -> None:
        # The time is kept here: uvloop returns a plain Handle (no when()) for a due time.
        if self._reap_timer is not None:
            if self._reap_at <= when:
                return
            self._reap_timer.cancel()
        self._reap_at = when
        self._reap_timer = self._get_loop().call_at(when, self._reap)

    def _reap(self) -> None:
        self._reap_timer = None
        template = self._template
        if self._closed or template is None:
            return
        live = [i for i in template.instances if i.state in ("starting", "running")]
        candidates = {i.seq: i for i in live if i.state == "running" and not i.in_flight}
        plan = plan_reap(
            [Idle(seq, i.last_done) for seq, i in candidates.items()],
            live=len(live),
            min_instances=self.spec.min_instances,
            idle_timeout=self.spec.idle_timeout,
            now=self._get_loop().time(),
        )
        for seq in plan.stop:
            self._stop_instance(candidates[seq], "idle")
        if plan.wake_at is not None:
            self._arm_reaper(plan.wake_at)

    def _after_change(self) -> None:
        """Capacity or templates changed: serve the queue, top up, retire, or note the end."""
        if self._closed:
            if not self._live and not self._templates and self._gone is not None:
                self._gone.set()
            return
        self._drain_queue()
        self._top_up()
        for template in list(self._templates):
            if template is not self._template and not template.instances:
                self._retire(template)
        self._arm_template_idle()

    def _top_up(self) -> None:
        if self._closed or not self.spec.min_instances or self._top_up_timer is not None:
            return
        if self._start_failures:
            delay = min(MAX_TOP_UP_DELAY, 0.1 * 2 ** min(self._start_failures - 1, 16))
            self._top_up_timer = self._get_loop().call_later(delay, self._top_up_now)
            return
        self._top_up_now()

    def _top_up_now(self) -> None:
        self._top_up_timer = None
        template = self._template
        if self._closed or (template is not None and template.state == "fatal"):
            return
        current = (
            0
            if template is None
            else len([i for i in template.instances if i.state in ("starting", "running")])
        )
        while current < self.spec.min_instances and self._live < self.spec.max_instances:
            self._spawn()
            current += 1

    # ------------------------------------------------------------ forking, standbys

    def _fork_instance(
        self, template: TemplateHandle, *, standby: bool
    ) -> tuple[InstanceHandle, bool]:
        """Ask ``template`` to fork an instance; its record (no ordinal yet), and whether the
        command went out."""
        self._seq += 1
        seq = self._seq
        parent, child = socket.socketpair()
        header: Header = {"op": "spawn", "seq": seq, "fds": 1, "stream": self._stream_name()}
        if standby:
            header["standby"] = True
        sent = template.channel is not None and template.channel.send(header, fds=[child.detach()])
        instance = InstanceHandle(seq, -1, template, time.perf_counter())
        instance.channel = Channel(
            self._get_loop(),
            parent,
            partial(self._on_instance_frame, instance),
            partial(self._on_instance_closed, instance),
        )
        template.spawning[seq] = instance
        return instance, sent

    def _arm_standby(self, delay: float) -> None:
        """Fork the current template's standby in ``delay`` seconds, if still wanted then."""
        if not self.standby or self._closed or self._standby_timer is not None:
            return
        self._standby_timer = self._get_loop().call_later(delay, self._park)

    def _park(self) -> None:
        self._standby_timer = None
        template = self._template
        if (
            self._closed
            or template is None
            or template.state != "running"
            or template.standby is not None
        ):
            return
        if self._starting:  # instances are being forked: not now, they need the CPU
            self._arm_standby(STANDBY_DELAY)
            return
        instance, sent = self._fork_instance(template, standby=True)
        instance.state = "standby"
        instance.holds_start_slot = False
        if sent:
            template.standby = instance
        else:
            instance.kill_reason = "start"
            self._standby_closed(instance)

    def _drop_standby(self, template: TemplateHandle, reason: str) -> None:
        """Let ``template``'s standby go: it reads end-of-stream and exits, having run nothing
        of the function."""
        standby = template.standby
        if standby is None:
            return
        template.standby = None
        standby.kill_reason = reason
        if standby.channel is not None:
            standby.channel.shutdown()

    def _standby_closed(self, instance: InstanceHandle) -> None:
        """A standby's socket closed before it was taken: it exited (dropped, or killed)."""
        template = instance.template
        instance.state = "exited"
        template.spawning.pop(instance.seq, None)
        self._let_go(instance)
        if template.standby is instance:  # nobody let it go: it died
            template.standby = None
            self._log("the standby instance exited unexpectedly; another is forked in 1s")
            self._arm_standby(1.0)

    def _stream_name(self) -> str:
        """A new instance's log stream: ``2026/01/31/[$LATEST]<32 hex digits>``."""
        now = self.wall_clock()
        if now >= self._stream_day_ends:
            self._stream_day = log_stream_name(now, "")
            self._stream_day_ends = (now // 86400 + 1) * 86400
        return self._stream_day + os.urandom(16).hex()

    # ------------------------------------------------------------ reload

    def reload(self) -> bool:
        """Retire the current template: idle instances stop now, busy ones when they finish;
        new invocations go to a new template (started now with ``prewarm`` or
        ``min_instances``, else on demand). False if there was no template."""
        old = self._template
        if old is None:
            return False
        self._template = None
        self._drop_standby(old, "reload")
        if old.idle_timer is not None:
            old.idle_timer.cancel()
            old.idle_timer = None
        for instance in list(old.instances):
            self._free.pop(instance, None)
            if instance.state == "running" and not instance.in_flight:
                self._stop_instance(instance, "reload")
        if old.state in ("starting", "running"):
            old.state = "stopping"
        if not self._closed and (self.prewarm or self.spec.min_instances):
            self._new_template()
        self._after_change()
        return True

    def reload_if_changed(self) -> bool:
        """Reload if the handler file's content changed since the template read it."""
        template = self._template
        if template is None:
            return False
        try:
            stat = self.spec.handler_file.stat()
            signature = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
            if signature == template.signature:
                return False
            data = self.spec.handler_file.read_bytes()
        except OSError:
            return False
        template.signature = signature
        if hashlib.blake2b(data, digest_size=16).hexdigest() == template.code_hash:
            return False
        self._log("the handler file changed: starting a new template")
        return self.reload()

    def _arm_watch(self) -> None:
        if self.watch_interval is None or self._watch_timer is not None or self._closed:
            return
        self._watch_timer = self._get_loop().call_later(self.watch_interval, self._watch)

    def _watch(self) -> None:
        self._watch_timer = None
        if self._closed or self._template is None:
            return
        with contextlib.suppress(OSError):
            self.reload_if_changed()
        self._arm_watch()


__all__ = ["Tending"]
