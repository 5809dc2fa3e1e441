"""From an instance spec to the engine's container settings, and from its state to an Exit (pure).

The container runtime asks these functions what to send and how to read what comes back; they
do no I/O, so every rule here is tested without an engine:

- ports are published on 127.0.0.1 only (``spec.host_port`` -> ``spec.port`` inside);
- ``resources.cpus`` becomes ``nano_cpus``, ``resources.memory`` the memory limit (swap
  included, so the limit is the limit);
- labels tie the container to its app, service, instance, revision and project folder;
- a tiny init (``docker-init``) is PID 1, so SIGTERM reaches the app as it would a process;
- the engine's exit code 128+N means "killed by signal N", as a shell would say.
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Mapping
from typing import Any

from shoal.runtimes.base import Exit, InstanceSpec
from shoal.runtimes.container.engine import (
    LABEL_APP,
    LABEL_INSTANCE,
    LABEL_KIND,
    LABEL_REVISION,
    LABEL_SERVICE,
    LABEL_STATE,
)
from shoal.runtimes.watching import describe_exit

LOG_MAX_SIZE = "10m"
"""The engine's own copy of a container's output (json-file) is capped; shoal keeps the log."""
NAME_PREFIX = "shoal"


def labels_of(spec: InstanceSpec) -> dict[str, str]:
    """The labels that let a later daemon (or a clean-up) recognise this instance's container."""
    labels = {
        LABEL_APP: spec.app,
        LABEL_SERVICE: spec.name,
        LABEL_INSTANCE: str(spec.ordinal),
        LABEL_REVISION: spec.revision,
        LABEL_KIND: spec.kind,
    }
    state = spec.env.get("SHOAL_STATE")
    if state:
        labels[LABEL_STATE] = state
    return labels


def container_name(spec: InstanceSpec, suffix: str | None = None) -> str:
    """``shoal-shop-catalog-0-1a2b3c``: readable in ``docker ps``, unique across restarts."""
    raw = f"{NAME_PREFIX}-{spec.app}-{spec.name}-{spec.ordinal}-{suffix or secrets.token_hex(3)}"
    return re.sub(r"[^a-zA-Z0-9_.-]+", "-", raw)


def create_options(spec: InstanceSpec, image: str) -> dict[str, Any]:
    """Keyword arguments for ``client.api.create_container`` (``host_config`` given as a dict
    for ``create_host_config``)."""
    host: dict[str, Any] = {
        "init": True,
        "log_config": {"type": "json-file", "config": {"max-size": LOG_MAX_SIZE, "max-file": "1"}},
    }
    if spec.port is not None and spec.host_port is not None:
        host["port_bindings"] = {spec.port: ("127.0.0.1", spec.host_port)}
    if spec.limits.cpus is not None:
        host["nano_cpus"] = nano_cpus(spec.limits.cpus)
    if spec.limits.memory_bytes is not None:
        host["mem_limit"] = spec.limits.memory_bytes
        host["memswap_limit"] = spec.limits.memory_bytes
    options: dict[str, Any] = {
        "image": image,
        "command": list(spec.command) if spec.command else None,
        "environment": dict(spec.env),
        "labels": labels_of(spec),
        "ports": [spec.port] if spec.port is not None and spec.host_port is not None else None,
        "stop_timeout": stop_seconds(spec.stop_grace),
        "host_config": host,
    }
    if spec.workdir is not None:
        options["working_dir"] = spec.workdir.as_posix()
    return options


def nano_cpus(cpus: float) -> int:
    """``0.5`` CPUs -> 500_000_000 (the engine's unit: 1e-9 CPUs)."""
    return round(cpus * 1_000_000_000)


def stop_seconds(grace: float) -> int:
    """The engine counts the stop grace in whole seconds: round up, so a grace is never cut."""
    return max(0, math.ceil(grace))


def exit_of(state: Mapping[str, Any], limit: str = "") -> Exit:
    """An :class:`Exit` from an exited container's ``State`` (as ``inspect`` returns it)."""
    code = state.get("ExitCode")
    oom = bool(state.get("OOMKilled"))
    if not isinstance(code, int):
        returncode = None
    elif code > 128 and code - 128 < 65:  # 137: killed by SIGKILL (128 + 9)
        returncode = -(code - 128)
    else:
        returncode = code
    exit_ = describe_exit(returncode, oom=oom, limit=limit)
    error = str(state.get("Error") or "").strip()
    if error:
        return Exit(
            code=exit_.code,
            signal=exit_.signal,
            oom_killed=exit_.oom_killed,
            reason=f"{exit_.reason}: {error}",
        )
    return exit_


def memory_limit_text(spec: InstanceSpec) -> str:
    """``memory limit 64M`` for an OOM reason, or empty when there is no limit."""
    limit = spec.limits.memory_bytes
    if limit is None:
        return ""
    return f"memory limit {limit // (1 << 20)}M" if limit >= 1 << 20 else f"memory limit {limit}B"


def matches(labels: Mapping[str, str] | None, spec: InstanceSpec) -> bool:
    """True when a container's labels say it is the instance ``spec`` describes (the app is
    checked only when the spec names one)."""
    labels = labels or {}
    if labels.get(LABEL_SERVICE) != spec.name or labels.get(LABEL_INSTANCE) != str(spec.ordinal):
        return False
    return not spec.app or labels.get(LABEL_APP) == spec.app


def sweep_filters(match: Mapping[str, str]) -> dict[str, str] | None:
    """Label filters for the containers an instance identity (``SHOAL_STATE``,
    ``SHOAL_SERVICE``, ``SHOAL_INSTANCE``) names; None without a project folder to scope it."""
    state = match.get("SHOAL_STATE")
    if not state:
        return None
    filters = {LABEL_STATE: state}
    if match.get("SHOAL_SERVICE"):
        filters[LABEL_SERVICE] = match["SHOAL_SERVICE"]
    if match.get("SHOAL_INSTANCE"):
        filters[LABEL_INSTANCE] = match["SHOAL_INSTANCE"]
    return filters


__all__ = [
    "container_name",
    "create_options",
    "exit_of",
    "labels_of",
    "matches",
    "memory_limit_text",
    "nano_cpus",
    "stop_seconds",
    "sweep_filters",
]
