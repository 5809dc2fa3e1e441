"""A pool's templates: forked, ready or failed, idle, retired, gone; and their cgroup folders.

The second layer of :class:`~shoal.functions.pool.FunctionPool` (see
``shoal.functions.lifecycle``). A **template** is forked from the forkserver
(:meth:`Templating._new_template`) and reports on its control socket:

- ``ready`` (its module imported; ``init_ms`` is how long that took), or ``failed`` with
  Lambda's error shape: every invocation waiting on it fails with
  :class:`~shoal.errors.FunctionInitError`, and so does every new one until ``RETRY_AFTER``
  seconds have passed (then a new template is tried, and the handler file may be fixed by then);
- ``spawned`` (an instance's pid and cgroup) and ``exit`` (an instance's exit code), handled
  by ``shoal.functions.tending``.

Its end-of-stream means it is gone: whatever instances it left are killed. A template with no
instance for ``template_idle_timeout`` seconds is retired (its socket is shut, it exits); so
is an old one after a reload, once its instances are gone.

Memory cgroups (where the sandbox has a memory controller) are made by the template itself
(see ``shoal.functions.hopping``), named ``<function>-<generation>-<random>-<n>`` below
``<daemon's cgroup>/shoal/<app>/``; the pool removes them, by that prefix, once empty.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
from collections import deque
from functools import partial
from pathlib import Path
from typing import Any

from shoal.errors import FunctionError, FunctionUnavailable
from shoal.functions.context import lambda_environment
from shoal.functions.handles import Call, InstanceHandle, TemplateHandle, close_fd, pidfd_for
from shoal.functions.lifecycle import Lifecycle
from shoal.functions.protocol import Channel, Header
from shoal.functions.results import init_error
from shoal.functions.scaling import template_due
from shoal.runtimes import cgroupfs
from shoal.runtimes.cgroup import InstanceCgroup
from shoal.runtimes.sandbox import Sandbox
from shoal.runtimes.spawning import build_env

RETRY_AFTER = 1.0
"""Seconds a failed template's error is returned before a new template is tried."""
LEFTOVER = re.compile(r".+-\d+-[0-9a-f]{6}-\d+")
"""Function cgroup folder names (``<function>-<generation>-<random>-<n>``); process instances'
have one part fewer (``<service>-<ordinal>-<random>``)."""


def remove_leftover_cgroups(sandbox: Sandbox, app: str) -> list[str]:
    """Remove the empty function cgroup folders a previous daemon left (it was killed before
    it could): call once at start, before any pool runs. Populated ones are kept (the kernel
    refuses). Returns the names removed."""
    if sandbox.memory is None:
        return []
    folder = sandbox.memory.parent / cgroupfs.safe_name(app)
    try:
        names = [n for n in os.listdir(folder) if LEFTOVER.fullmatch(n)]
    except OSError:
        return []
    removed = []
    for name in names:
        try:
            (folder / name).rmdir()
        except OSError:
            continue
        removed.append(name)
    return removed


class Templating(Lifecycle):
    """Templates and their cgroups (see the module docstring)."""

    def _template_usable(self, call: Call | None) -> bool:
        """False (and ``call`` failed with the init error) while a failed template's error
        stands; once ``RETRY_AFTER`` has passed, the failed template is dropped."""
        template = self._template
        if template is None or template.state != "fatal":
            return True
        if self._get_loop().time() - template.stopped_at >= RETRY_AFTER:
            self._template = None
            return True
        if call is not None:
            error = init_error(self.spec.name, call.request_id, template.error or {})
            self._deliver(call, self._failure(call, error))
        return False

    def _new_template(self) -> TemplateHandle:
        loop = self._get_loop()
        self._generation += 1
        path = self.spec.handler_file
        try:
            data = path.read_bytes()
            stat = path.stat()
            code_hash = hashlib.blake2b(data, digest_size=16).hexdigest()
            signature: tuple[int, ...] = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        except OSError:
            code_hash, signature = "", ()
        template = TemplateHandle(self._generation, code_hash, signature)
        template.created_at = loop.time()
        template.settled = loop.create_future()
        self._templates.append(template)
        self._cgroup_templates.append(template)
        self._template = template
        self._counters.template_starts += 1
        parent, child = socket.socketpair()
        template.channel = Channel(
            loop,
            parent,
            partial(self._on_template_frame, template),
            partial(self._on_template_closed, template),
        )
        config = self._template_config(template)
        assert self._forkserver is not None
        forked = partial(self._on_template_forked, template)
        self._forkserver.fork_template(config, child.detach(), forked)
        template.init_timer = loop.call_later(self.init_timeout, self._init_timed_out, template)
        self._arm_watch()
        return template

    def _template_config(self, template: TemplateHandle) -> dict[str, Any]:
        """What the forkserver's child needs to become this function's template."""
        spec = self.spec
        lambda_env = lambda_environment(
            name=spec.name,
            handler=spec.handler,
            memory_mb=spec.memory_mb,
            task_root=str(spec.task_root),
        )
        config: dict[str, Any] = {
            "name": spec.name,
            "file": str(spec.handler_file),
            "function": spec.handler_function,
            "workdir": str(spec.task_root),
            "env": build_env(os.environ, {**lambda_env, **spec.env}),
            "memory_mb": spec.memory_mb,
            "concurrency": spec.concurrency,
            "log": None if self.log_path is None else str(self.log_path),
        }
        if self._memory is not None:
            parent, version = self._memory
            name = cgroupfs.safe_name(self.spec.name)
            template.cgroup_prefix = f"{name}-{template.generation}-{secrets.token_hex(3)}-"
            config["cgroup"] = {
                "parent": str(parent),
                "version": version,
                "limit": self.spec.memory_bytes,
                "prefix": template.cgroup_prefix,
            }
        return config

    def _instance_cgroup(self, instance: InstanceHandle, folder: object) -> None:
        """Note the cgroup the template forked ``instance`` in (for its OOM count, removal)."""
        if not isinstance(folder, str) or self._memory is None:
            return
        instance.cgroup = InstanceCgroup(
            label=f"{self.spec.name}#{instance.ordinal}",
            version=self._memory[1],
            memory_dir=Path(folder),
            memory_limit=self.spec.memory_bytes,
        )
        self._cgroups.add(instance.cgroup)

    def _template_cgroups(self, template: TemplateHandle) -> list[InstanceCgroup]:
        """Every cgroup folder left by ``template`` (its own, its instances')."""
        if self._memory is None or not template.cgroup_prefix:
            return []
        parent, version = self._memory
        try:
            names = [n for n in os.listdir(parent) if n.startswith(template.cgroup_prefix)]
        except OSError:
            return []
        return [
            InstanceCgroup(label=self.spec.name, version=version, memory_dir=parent / n)
            for n in names
        ]

    def _discard_cgroup(self, cgroup: InstanceCgroup | None) -> None:
        if cgroup is None:
            return
        cgroup.discard_if_empty()
        if not any(folder.exists() for folder in cgroup.dirs):
            self._cgroups.discard(cgroup)

    def _on_template_forked(self, template: TemplateHandle, pid: int | None, reason: str) -> None:
        if pid is None:
            self._template_failed(
                template, {"errorType": "Runtime.Unknown", "errorMessage": reason}
            )
            if template.channel is not None:
                template.channel.close()
            self._template_closed(template, None)
            return
        template.pid = pid
        template.pidfd = pidfd_for(pid)
        if self._closed or template.state == "exited":
            template.kill()

    def _on_template_frame(self, template: TemplateHandle, header: Header, body: bytes) -> None:
        op = header.get("op")
        if op == "spawned":
            self._on_spawned(template, header)
        elif op == "exit":
            self._on_exit_report(template, header)
        elif op == "ready":
            if template.init_timer is not None:
                template.init_timer.cancel()
            template.init_ms = float(header.get("init_ms", 0.0))
            if template.state == "starting":
                template.state = "running"
            self._settle(template)
            self._log(
                f"template ready (generation {template.generation}, pid {header.get('pid')}, "
                f"init {template.init_ms:.1f} ms)"
            )
            if header.get("cgroup_error"):
                self._warn("cgroup", f"memory limit not enforced: {header['cgroup_error']}")
            self._arm_template_idle()
            if template is self._template:
                self._arm_standby(0.0)
        elif op == "failed":
            template.init_ms = float(header.get("init_ms", 0.0))
            self._template_failed(template, header.get("error") or {})
        elif op == "spawn_failed":
            instance = template.spawning.pop(header.get("seq", -1), None)
            if instance is not None:
                reason = f"cannot start an instance: {header.get('reason')}"
                self._abort_instance(instance, lambda call: self._unavailable(call, reason))
                self._after_change()

    def _settle(self, template: TemplateHandle) -> None:
        if template.settled is not None and not template.settled.done():
            template.settled.set_result(None)

    def _unavailable(self, call: Call, reason: str) -> FunctionError:
        return FunctionUnavailable(reason, function=self.spec.name, request_id=call.request_id)

    def _template_failed(self, template: TemplateHandle, error: dict[str, Any]) -> None:
        """The template cannot serve: fail everything waiting on it with its init error."""
        if template.init_timer is not None:
            template.init_timer.cancel()
        template.state = "fatal"
        template.error = error
        template.stopped_at = self._get_loop().time()
        self._settle(template)
        self._log(f"template failed: {error.get('errorType')}: {error.get('errorMessage')}")
        name = self.spec.name

        def failure(call: Call) -> FunctionError:
            return init_error(name, call.request_id, error)

        for instance in list(template.instances):
            self._abort_instance(instance, failure)
        if template is self._template:
            queued, self._queue = list(self._queue), deque()
            for call in queued:
                self._deliver(call, self._failure(call, failure(call)))

    def _init_timed_out(self, template: TemplateHandle) -> None:
        template.init_timer = None
        if template.state != "starting":
            return
        message = f"the handler's init did not finish within {self.init_timeout:g}s"
        self._template_failed(template, {"errorType": "Sandbox.Timedout", "errorMessage": message})
        if template.pid is not None:
            template.kill()
        elif template.channel is not None:
            template.channel.shutdown()

    def _on_template_closed(self, template: TemplateHandle, exc: Exception | None) -> None:
        if template.state == "starting":
            message = "the template exited during init (see the function's log)"
            self._template_failed(
                template, {"errorType": "Runtime.ExitError", "errorMessage": message}
            )
        self._template_closed(template, exc)
        self._after_change()

    def _template_closed(self, template: TemplateHandle, exc: Exception | None) -> None:
        """The template's process is gone (or given up on): forget it, kill what it left."""
        for timer in (template.init_timer, template.idle_timer):
            if timer is not None:
                timer.cancel()
        if template.state != "fatal":
            template.state = "exited"
            if template is self._template:
                self._template = None
        self._drop_standby(template, "template")
        if template.channel is not None:
            template.channel.close()
        if template in self._templates:
            self._templates.remove(template)
        self._settle(template)
        for instance in list(template.instances):
            if instance.state != "exited":
                instance.kill("template")
        close_fd(template.pidfd)
        template.pidfd = None
        self._get_loop().call_later(0.5, self._discard_template_cgroups, template)

    def _discard_template_cgroups(self, template: TemplateHandle) -> None:
        """Remove the template's empty cgroup folders (once its processes are reaped)."""
        left = self._template_cgroups(template)
        for cgroup in left:
            self._discard_cgroup(cgroup)
        if not self._template_cgroups(template) and template in self._cgroup_templates:
            self._cgroup_templates.remove(template)

    def _arm_template_idle(self) -> None:
        template = self._template
        if template is None or template.idle_timer is not None or template.state != "running":
            return
        timeout = self.template_idle_timeout
        if timeout is not None and template_due(
            live=self._live,
            queued=len(self._queue),
            min_instances=self.spec.min_instances,
            timeout=timeout,
        ):
            template.idle_timer = self._get_loop().call_later(
                timeout, self._template_idle, template
            )

    def _template_idle(self, template: TemplateHandle) -> None:
        template.idle_timer = None
        if template is self._template and not self._live and not self._queue and not self._closed:
            self._template = None
            self._retire(template)
            self._log(f"template stopped (idle {self.template_idle_timeout:g}s)")

    def _retire(self, template: TemplateHandle) -> None:
        """Let a template exit once it has no instance (it reads end-of-stream)."""
        self._drop_standby(template, "retired")
        if template.state in ("starting", "running"):
            template.state = "stopping"
        if template.channel is not None:
            template.channel.shutdown()


__all__ = ["LEFTOVER", "RETRY_AFTER", "Templating", "remove_leftover_cgroups"]
