"""Functions as a service: Lambda-compatible handlers in a pre-forked warm pool (DESIGN.md §3).

The daemon keeps one :class:`FunctionPool` per function and one :class:`Forkserver` for all
of them. Processes, each forked from the one above (SOCK-style zygotes)::

    daemon (asyncio) ── FunctionPool ──socketpair──▶ instance   serves invocations
        │                   │
        └── Forkserver ─────┼──▶ forkserver        python -m shoal.functions.template --root
                            └──▶   template        one per function: imports the handler once
                                     └─ instance   forked per scale-up

Modules, daemon side first:

    pool        FunctionPool: invoke(), snapshot(), metrics(), start(), stop(), reload()
    tending     instances starting and ending, timeouts, reaping, min_instances, reload
    templating  templates forked, ready, failed, idle, gone; their cgroup folders
    lifecycle   the pool's state, start/stop, delivering results
    scaling     the dispatch and reap decisions (pure)
    handles     the records of templates, instances, invocations; views for ``shoal ps``
    results     InvocationResult and the failures it carries (pure)
    metrics     counters and the duration histogram (pure)
    spec        FunctionSpec: a manifest function, resolved (pure)
    forkserver  the daemon's handle on the forkserver process
    protocol    frames on Unix sockets: sync side (processes) and asyncio side (dispatcher)
    template    the forkserver and the templates (``python -m shoal.functions.template``)
    loading     importing the handler in its template (Lambda's init errors)
    hopping     memory cgroups made by the template, one per instance, off the hot path
    instance    an instance's life after the fork
    context     the handler's ``context`` and Lambda's environment variables
    shapes      AWS event and response shapes: API Gateway v2, errors, EventBridge, SQS, REPORT

The forkserver, templates and instances import only ``template``, ``instance``, ``loading``,
``hopping``, ``protocol`` and ``context``: every module they import is in every fork, so this
package exports the daemon side lazily.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing is not imported at run time: the forked processes import this
if TYPE_CHECKING:
    from typing import Any

    from shoal.functions.forkserver import Forkserver
    from shoal.functions.handles import InstanceView, PoolSnapshot, TemplateView
    from shoal.functions.metrics import HistogramSnapshot, PoolMetrics
    from shoal.functions.pool import FunctionPool
    from shoal.functions.results import InvocationResult
    from shoal.functions.shapes import HttpResponse
    from shoal.functions.spec import FunctionSpec
    from shoal.functions.templating import remove_leftover_cgroups

_EXPORTS = {
    "Forkserver": "shoal.functions.forkserver",
    "FunctionPool": "shoal.functions.pool",
    "FunctionSpec": "shoal.functions.spec",
    "HistogramSnapshot": "shoal.functions.metrics",
    "HttpResponse": "shoal.functions.shapes",
    "InstanceView": "shoal.functions.handles",
    "InvocationResult": "shoal.functions.results",
    "PoolMetrics": "shoal.functions.metrics",
    "PoolSnapshot": "shoal.functions.handles",
    "TemplateView": "shoal.functions.handles",
    "remove_leftover_cgroups": "shoal.functions.templating",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'shoal.functions' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "Forkserver",
    "FunctionPool",
    "FunctionSpec",
    "HistogramSnapshot",
    "HttpResponse",
    "InstanceView",
    "InvocationResult",
    "PoolMetrics",
    "PoolSnapshot",
    "TemplateView",
    "remove_leftover_cgroups",
]
