"""Runtimes by name: the string registry the supervisor picks drivers from (STYLE.md habit 4).

The supervisor reads ``runtime: process`` from a service and calls :func:`load_runtime`; only
then is the driver's module imported, so the core install never imports Docker's SDK or probes
for qemu. A name that is unknown, a driver that is not shipped yet, or a driver whose optional
dependency is missing all end in one :class:`~shoal.errors.RuntimeNotAvailable` that says what to
install, never in an ``ImportError`` traceback.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from shoal.errors import RuntimeNotAvailable
from shoal.runtimes.base import Runtime

RUNTIMES: dict[str, str] = {
    "process": "shoal.runtimes.process:ProcessRuntime",
    "container": "shoal.runtimes.container:ContainerRuntime",
    "vm": "shoal.runtimes.vm:VmRuntime",
}
"""Runtime name -> ``module:attribute`` of the class implementing :class:`Runtime`."""

EXTRAS: dict[str, str] = {"container": "docker"}
"""Runtime name -> the optional dependency group (``pip install 'shoal[<extra>]'``) it needs."""


def load_runtime(name: str, **options: Any) -> Runtime:
    """An instance of runtime ``name``, constructed with ``options``.

    Raises :class:`RuntimeNotAvailable` for an unknown name (with a "did you mean"), for a
    driver not shipped in this version, and for a missing optional dependency (naming the extra).
    """
    target = RUNTIMES.get(name)
    if target is None:
        known = ", ".join(sorted(RUNTIMES))
        close = difflib.get_close_matches(name, RUNTIMES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise RuntimeNotAvailable(name, f"unknown runtime (known: {known}){hint}")
    module_name, _, attribute = target.partition(":")
    extra = EXTRAS.get(name)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and _is_within(exc.name, module_name):
            raise RuntimeNotAvailable(
                name, "not available yet in this version of shoal (its driver is not shipped)"
            ) from exc
        missing = exc.name or "a module"
        raise RuntimeNotAvailable(
            name, f"its dependency {missing!r} is not installed", extra=extra
        ) from exc
    except ImportError as exc:
        raise RuntimeNotAvailable(name, f"its driver failed to import: {exc}", extra=extra) from exc
    factory = getattr(module, attribute, None)
    if factory is None:
        raise RuntimeNotAvailable(
            name, f"{module_name} has no {attribute}: not available yet in this version of shoal"
        )
    runtime = factory(**options)
    if not isinstance(runtime, Runtime):
        raise TypeError(f"{target} does not implement the Runtime protocol")
    return runtime


def _is_within(missing: str, module_name: str) -> bool:
    """True when the missing module is the driver itself (or a parent package of it)."""
    return module_name == missing or module_name.startswith(missing + ".")


__all__ = ["EXTRAS", "RUNTIMES", "load_runtime"]
