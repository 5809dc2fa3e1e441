"""Docker Swarm: the manifest as a stack file (Compose file format with ``deploy:``). Pure.

Services keep replicas, resources, the restart policy (the closest mapping of shoal's backoff:
Swarm's ``delay`` is fixed, not growing), ``update_config`` (start-first when no instance may be
missing) and health checks. Each function runs the image ``shoal build`` made for it (shoal's
function runtime serving HTTP on ``$PORT``) with ``min_instances`` replicas, at least one:
Swarm cannot scale to zero. Ports are published in *host* mode with no fixed host port, so each
task gets a port of its own on the node (the ingress routing mesh needs IPVS, which not every
kernel has); ``shoal deploy`` finds them from the tasks. Jobs, topics and path routes have no
Swarm equivalent and are reported.
"""

from __future__ import annotations

from typing import Any

from shoal.exporters.containers import container_spec, local_addresses
from shoal.exporters.documents import Document, Export, Ledger, finish
from shoal.exporters.naming import DEFAULT_PORT, Tag, function_image
from shoal.manifest.schema import Function, Health, Manifest, Service
from shoal.manifest.units import format_duration, format_size

COMPOSE_VERSION = "3.9"
PROBE_START = 2.0
"""Seconds added to an HTTP/TCP health check's timeout for starting its python3 probe."""
_RESTART = {"always": "any", "on-failure": "on-failure", "never": "none"}


def _duration(seconds: float) -> str:
    """Compose durations: ``100ms``, ``1m30s``."""
    ms = round(seconds * 1000)
    if ms % 1000:
        return f"{ms}ms"
    s = ms // 1000
    minutes, rest = divmod(s, 60)
    return f"{minutes}m{rest}s" if minutes and rest else f"{minutes}m" if minutes else f"{s}s"


def _memory(size: int) -> str:
    mib, rest = divmod(size, 1 << 20)
    return f"{mib}M" if rest == 0 else f"{size}b"


def _probe_command(health: Health, port: int) -> list[str]:
    if health.exec is not None:
        return ["CMD", *health.exec]
    if health.http is not None:
        code = (
            "import sys, urllib.request; "
            f"urllib.request.urlopen('http://127.0.0.1:{port}{health.http}', "
            f"timeout={health.timeout:g}); sys.exit(0)"
        )
    else:
        code = f"import socket; socket.create_connection(('127.0.0.1', {port}), {health.timeout:g})"
    return ["CMD", "python3", "-c", code]


def _healthcheck(path: str, s: Service, port: int, ledger: Ledger) -> dict[str, Any] | None:
    h = s.health
    if h is None:
        ledger.map(path, "health")
        return None
    ledger.map(
        f"{path}.health", "http", "tcp", "exec", "interval", "timeout", "failures", "start_period"
    )
    if h.exec is None and s.image is not None:
        ledger.gap(
            f"{path}.health",
            h.http or "tcp",
            "a Swarm health check runs a command inside the container",
            "python3 -c (probes the port); the image must have python3",
        )
    timeout = h.timeout
    if h.exec is None:
        # The probe is a process started in the container: its start-up counts against the
        # timeout, which shoal's in-process probe does not pay.
        timeout = h.timeout + PROBE_START
        ledger.gap(
            f"{path}.health.timeout",
            format_duration(h.timeout),
            "a Swarm health check starts python3 in the container, within the timeout",
            f"{format_duration(timeout)} (+{format_duration(PROBE_START)} for the start)",
        )
    return {
        "test": _probe_command(h, port),
        "interval": _duration(h.interval),
        "timeout": _duration(timeout),
        "retries": h.failures,
        "start_period": _duration(h.start_period),
    }


def _service(app: str, name: str, s: Service, tag: Tag, ledger: Ledger) -> dict[str, Any]:
    path = f"services.{name}"
    spec = container_spec(app, path, name, s, tag=tag, ledger=ledger)
    port = spec.port or DEFAULT_PORT
    out: dict[str, Any] = {"image": spec.image}
    if spec.command is not None:
        out["command"] = list(spec.command)
    if spec.workdir is not None:
        out["working_dir"] = spec.workdir
    out["environment"] = dict(spec.env)
    out["ports"] = [{"target": port, "protocol": "tcp", "mode": "host"}]
    health = _healthcheck(path, s, port, ledger)
    if health is not None:
        out["healthcheck"] = health
    out["stop_grace_period"] = _duration(s.stop_grace_period)
    ledger.map(path, "stop_grace_period")
    deploy: dict[str, Any] = {}
    if s.autoscale is None:
        deploy["replicas"] = s.replicas
        ledger.map(path, "replicas", "autoscale")
    else:
        a = s.autoscale
        deploy["replicas"] = max(a.min, 1)
        ledger.map(path, "replicas")
        ledger.gap(
            f"{path}.autoscale",
            f"{a.min}-{a.max} at {a.target_concurrency:g} in flight",
            "Swarm does not autoscale",
            f"{deploy['replicas']} fixed replica(s); `docker service scale` by hand",
        )
    limits: dict[str, str] = {}
    if s.resources.cpus is not None:
        limits["cpus"] = f"{s.resources.cpus:g}"
    if s.resources.memory is not None:
        limits["memory"] = _memory(s.resources.memory)
    ledger.map(f"{path}.resources", "cpus", "memory")
    if limits:
        deploy["resources"] = {"limits": limits}
    r = s.restart
    policy: dict[str, Any] = {
        "condition": _RESTART[r.policy],
        "delay": _duration(r.backoff.initial),
        "window": _duration(r.backoff.reset_after),
    }
    if r.max_retries is not None:
        policy["max_attempts"] = r.max_retries
    ledger.map(f"{path}.restart", "policy", "max_retries")
    ledger.map(f"{path}.restart.backoff", "initial", "reset_after")
    ledger.gap(
        f"{path}.restart.backoff.factor",
        f"x{r.backoff.factor:g} up to {format_duration(r.backoff.max)}",
        "Swarm waits the same delay before every restart",
        f"a fixed delay of {format_duration(r.backoff.initial)}",
    )
    ledger.map(f"{path}.restart.backoff", "max")
    deploy["restart_policy"] = policy
    u = s.update
    deploy["update_config"] = {
        "parallelism": max(u.max_surge, u.max_unavailable, 1),
        "order": "start-first" if u.max_unavailable == 0 else "stop-first",
        "failure_action": "rollback",
    }
    ledger.map(f"{path}.update", "max_surge", "max_unavailable")
    ledger.gap(
        f"{path}.update.drain",
        format_duration(u.drain),
        "Swarm does not drain a task before stopping it (no gateway in front)",
        f"SIGTERM, then stop_grace_period ({format_duration(s.stop_grace_period)})",
    )
    if s.depends_on:
        ledger.gap(
            f"{path}.depends_on",
            dict(s.depends_on),
            "docker stack ignores depends_on",
            "health checks; services start in any order",
        )
    else:
        ledger.map(path, "depends_on")
    for i, route in enumerate(s.routes):
        ledger.gap(
            f"{path}.routes.{i}",
            route.path,
            "Swarm has no path router",
            "each task is published on a host port of its own",
        )
    ledger.map(path, "routes")
    out["deploy"] = deploy
    return out


def _function(app: str, name: str, f: Function, tag: Tag, ledger: Ledger) -> dict[str, Any]:
    path = f"functions.{name}"
    # The image runs shoal's own function runtime: it enforces these as shoal does locally.
    ledger.map(
        path,
        "handler",
        "memory",
        "timeout",
        "concurrency",
        "max_instances",
        "idle_timeout",
        "env",
        "triggers",
    )
    replicas = max(f.min_instances, 1)
    if f.min_instances == 0:
        ledger.gap(
            f"{path}.min_instances", 0, "Swarm cannot scale to zero", "1 replica always running"
        )
    else:
        ledger.map(path, "min_instances")
    env = {**f.env, "PORT": str(DEFAULT_PORT)}
    for i, t in enumerate(f.triggers):
        at = f"{path}.triggers.{i}"
        if t.event is not None:
            ledger.gap(
                f"{at}.event",
                t.event.topic,
                "Swarm has no event bus shared by services",
                "none: each replica's runtime only sees events published to it",
            )
        elif t.schedule is not None and replicas > 1:
            ledger.gap(
                f"{at}.schedule",
                t.schedule.expression,
                "every replica runs its own schedule",
                f"fires {replicas} times",
            )
        elif t.http is not None and t.http.host is not None:
            ledger.gap(
                f"{at}.http.host",
                t.http.host,
                "Swarm has no host router",
                "the task's published port answers any Host",
            )
    return {
        "image": function_image(app, name, tag),
        "environment": env,
        "ports": [{"target": DEFAULT_PORT, "protocol": "tcp", "mode": "host"}],
        "deploy": {
            "replicas": replicas,
            "restart_policy": {"condition": "any"},
            "update_config": {
                "parallelism": 1,
                "order": "start-first",
                "failure_action": "rollback",
            },
        },
    }


def export_swarm(manifest: Manifest, *, tag: Tag = "latest") -> Export:
    """The stack file for ``docker stack deploy``, and what Swarm cannot express."""
    ledger = Ledger()
    app = manifest.name
    ledger.map("name")
    local_addresses(manifest, ledger)
    services: dict[str, Any] = {}
    for name, s in manifest.services.items():
        services[name] = _service(app, name, s, tag, ledger)
    for name, f in manifest.functions.items():
        key = name if name not in services else f"fn-{name}"
        services[key] = _function(app, name, f, tag, ledger)
    for name, j in manifest.jobs.items():
        what = j.schedule or "run by hand"
        ledger.gap(f"jobs.{name}", what, "Swarm has no scheduled jobs", "not exported")
    for topic, t in manifest.topics.items():
        ledger.gap(
            f"topics.{topic}",
            f"retention {format_duration(t.retention)}",
            "Swarm has no event bus",
            "not exported",
        )
    g = manifest.gateway
    ledger.gap(
        "gateway",
        f"{g.host}:{g.port}",
        "Swarm has no HTTP gateway (path routes, "
        f"timeout {format_duration(g.timeout)}, body {format_size(g.max_body)})",
        "each service and function is published on host ports of its own",
    )
    stack = {"version": COMPOSE_VERSION, "services": services}
    return finish("swarm", [Document("stack.yaml", stack)], ledger)


__all__ = ["export_swarm"]
