"""Kubernetes: services -> Deployment + Service (+ HorizontalPodAutoscaler), routes -> Ingress
or Gateway API HTTPRoute, jobs -> CronJob; functions, schedules and topics go to Knative
(:mod:`shoal.exporters.knative`). Pure: ``export_kubernetes(manifest) -> Export``.

Files: ``service-NAME.yaml`` (a YAML stream per service), ``routes.yaml``, ``job-NAME.yaml``,
then Knative's ``function-NAME.yaml`` and ``topics.yaml``. Every object carries the labels
``app.kubernetes.io/name``, ``part-of`` (the app) and ``managed-by: shoal``, so ``shoal deploy``
can find what it applied. Settings Kubernetes cannot express are reported as gaps: a restart
backoff (the kubelet's crash-loop backoff is fixed), scale to zero with an HPA, start order.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from shoal.exporters.containers import ContainerSpec, container_spec, local_addresses
from shoal.exporters.documents import Document, Export, Ledger, finish
from shoal.exporters.knative import knative_documents
from shoal.exporters.naming import Tag, is_whole, labels, metadata, whole_seconds
from shoal.exporters.scheduling import five_field
from shoal.manifest.schema import Gateway, Health, Job, Manifest, Route, Service
from shoal.manifest.units import format_duration, format_size

Routing = Literal["ingress", "httproute"]
INFLIGHT_METRIC = "shoal_inflight_requests"
"""The per-pod metric the HPA scales on (requests in flight), served by a custom-metrics adapter."""


def container(name: str, spec: ContainerSpec) -> dict[str, Any]:
    """A pod's container from a :class:`ContainerSpec`."""
    out: dict[str, Any] = {"name": name, "image": spec.image}
    if spec.command is not None:
        out["command"] = list(spec.command)
    if spec.workdir is not None:
        out["workingDir"] = spec.workdir
    if spec.env:
        out["env"] = [{"name": key, "value": value} for key, value in spec.env]
    if spec.port is not None:
        out["ports"] = [{"name": "http", "containerPort": spec.port}]
    return out


def quantity_cpu(cpus: float) -> str:
    milli = round(cpus * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def quantity_memory(size: int) -> str:
    mib, rest = divmod(size, 1 << 20)
    return f"{mib}Mi" if rest == 0 else str(size)


def resources(path: str, cpus: float | None, memory: int | None, ledger: Ledger) -> dict[str, Any]:
    limits: dict[str, str] = {}
    if cpus is not None:
        limits["cpu"] = quantity_cpu(cpus)
    if memory is not None:
        limits["memory"] = quantity_memory(memory)
    ledger.map(f"{path}.resources", "cpus", "memory")
    return {"limits": limits, "requests": dict(limits)} if limits else {}


def _seconds(path: str, value: float, ledger: Ledger, what: str, minimum: int = 1) -> int:
    """Whole seconds, reporting a rounding as a gap."""
    if is_whole(value, minimum):
        ledger.map(path)
    else:
        ledger.gap(
            path,
            format_duration(value),
            f"{what} is counted in whole seconds (at least {minimum})",
            f"{whole_seconds(value, minimum)}s",
        )
    return whole_seconds(value, minimum)


def _probe(path: str, health: Health, port: int, ledger: Ledger) -> dict[str, Any]:
    probe: dict[str, Any]
    if health.http is not None:
        probe = {"httpGet": {"path": health.http, "port": port}}
    elif health.tcp:
        probe = {"tcpSocket": {"port": port}}
    else:
        probe = {"exec": {"command": list(health.exec or ())}}
    ledger.map(path, "http", "tcp", "exec", "failures")
    probe["periodSeconds"] = _seconds(f"{path}.interval", health.interval, ledger, "periodSeconds")
    probe["timeoutSeconds"] = _seconds(f"{path}.timeout", health.timeout, ledger, "timeoutSeconds")
    probe["failureThreshold"] = health.failures
    return probe


def _pod_spec(app: str, name: str, s: Service, tag: Tag, ledger: Ledger) -> dict[str, Any]:
    path = f"services.{name}"
    spec = container_spec(app, path, name, s, tag=tag, ledger=ledger)
    c = container(name, spec)
    port = spec.port or 0
    if s.health is not None:
        ready = _probe(f"{path}.health", s.health, port, ledger)
        c["readinessProbe"] = ready
        # shoal ignores failures in the start period; a startupProbe allows as many.
        period = ready["periodSeconds"]
        startup = dict(ready)
        startup["failureThreshold"] = math.ceil(s.health.start_period / period) + s.health.failures
        c["startupProbe"] = startup
        ledger.map(f"{path}.health", "start_period")
    else:
        ledger.map(path, "health")
    limits = resources(path, s.resources.cpus, s.resources.memory, ledger)
    if limits:
        c["resources"] = limits
    drain = s.update.drain
    if drain > 0:
        # Endpoints are removed while the pod sleeps: in-flight requests finish, none arrive.
        c["lifecycle"] = {"preStop": {"sleep": {"seconds": whole_seconds(drain)}}}
    ledger.map(f"{path}.update", "drain")
    grace = whole_seconds(s.stop_grace_period, 0) + (whole_seconds(drain) if drain > 0 else 0)
    ledger.map(path, "stop_grace_period")
    return {"containers": [c], "terminationGracePeriodSeconds": grace}


def _restart(path: str, s: Service, ledger: Ledger) -> None:
    r = s.restart
    if r.policy == "always":
        ledger.map(f"{path}.restart", "policy")
    else:
        ledger.gap(
            f"{path}.restart.policy",
            r.policy,
            "a Deployment's pods always restart",
            "restartPolicy: Always",
        )
    b = r.backoff
    ledger.gap(
        f"{path}.restart.backoff",
        f"{b.initial:g}s x{b.factor:g} up to {b.max:g}s, reset after {b.reset_after:g}s",
        "the kubelet's crash-loop backoff is fixed",
        "10s doubling up to 5 min, reset after 10 min running",
    )
    if r.max_retries is None:
        ledger.map(f"{path}.restart", "max_retries")
    else:
        ledger.gap(
            f"{path}.restart.max_retries",
            r.max_retries,
            "a Deployment never gives up restarting",
            "restarts forever",
        )


def _hpa(app: str, name: str, s: Service, ledger: Ledger) -> dict[str, Any] | None:
    path = f"services.{name}.autoscale"
    a = s.autoscale
    if a is None:
        ledger.map(path)
        return None
    low = a.min
    if a.min == 0:
        low = 1
        ledger.gap(
            f"{path}.min",
            0,
            "a HorizontalPodAutoscaler cannot scale to zero",
            "minReplicas: 1 (use a function for scale to zero on Knative)",
        )
        ledger.gap(
            f"{path}.scale_to_zero_after",
            format_duration(a.scale_to_zero_after),
            "no scale to zero with an HPA",
            "never scales below 1",
        )
    else:
        ledger.map(path, "min", "scale_to_zero_after")
    ledger.map(path, "max", "window")
    ledger.gap(
        f"{path}.target_concurrency",
        f"{a.target_concurrency:g}",
        "an HPA reads requests in flight only from a custom-metrics adapter (not built in)",
        f"Pods metric {INFLIGHT_METRIC}, average {a.target_concurrency:g}: serve it with an "
        "adapter (e.g. from the pods' /metrics)",
    )
    ledger.gap(
        f"{path}.panic_window",
        f"{a.panic_window:g}s (threshold {a.panic_threshold:g}x)",
        "the HPA has no panic mode",
        "scale-up is not stabilised (reacts at once)",
    )
    ledger.map(path, "panic_threshold")
    target = f"{a.target_concurrency:g}"
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(app, name),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": low,
            "maxReplicas": a.max,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": INFLIGHT_METRIC},
                        "target": {"type": "AverageValue", "averageValue": target},
                    },
                }
            ],
            "behavior": {
                "scaleUp": {"stabilizationWindowSeconds": 0},
                "scaleDown": {"stabilizationWindowSeconds": whole_seconds(a.window)},
            },
        },
    }


def service_objects(app: str, name: str, s: Service, tag: Tag, ledger: Ledger) -> list[Any]:
    path = f"services.{name}"
    pod = _pod_spec(app, name, s, tag, ledger)
    _restart(path, s, ledger)
    if s.depends_on:
        ledger.gap(
            f"{path}.depends_on",
            dict(s.depends_on),
            "Kubernetes starts every pod at once",
            "readiness probes keep traffic away until each is ready",
        )
    else:
        ledger.map(path, "depends_on")
    ledger.map(f"{path}.update", "max_surge", "max_unavailable")
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(app, name),
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {
                    "maxSurge": s.update.max_surge,
                    "maxUnavailable": s.update.max_unavailable,
                },
            },
            "template": {"metadata": {"labels": labels(app, name)}, "spec": pod},
        },
    }
    if s.autoscale is None:
        deployment["spec"] = {"replicas": s.replicas, **deployment["spec"]}
    ledger.map(path, "replicas")
    port = s.port or pod["containers"][0]["ports"][0]["containerPort"]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(app, name),
        "spec": {
            "selector": {"app.kubernetes.io/name": name},
            "ports": [{"name": "http", "port": port, "targetPort": "http"}],
        },
    }
    out: list[Any] = [deployment, service]
    hpa = _hpa(app, name, s, ledger)
    if hpa is not None:
        out.append(hpa)
    return out


def _gateway(g: Gateway, routing: Routing, ledger: Ledger) -> None:
    ledger.gap("gateway.host", g.host, "the cluster's ingress controller decides where it listens")
    ledger.gap("gateway.port", g.port, "the cluster's ingress controller decides where it listens")
    if routing == "httproute":
        ledger.map("gateway", "timeout")
    else:
        ledger.gap(
            "gateway.timeout",
            format_duration(g.timeout),
            "Ingress has no portable timeout (each controller has an annotation)",
            "the controller's default",
        )
    ledger.gap(
        "gateway.max_body",
        format_size(g.max_body),
        "no portable body limit (controller annotation)",
    )
    ledger.gap(
        "gateway.max_header",
        format_size(g.max_header),
        "no portable header limit (controller setting)",
    )


def _routes(app: str, m: Manifest, routing: Routing, ledger: Ledger) -> dict[str, Any] | None:
    entries: list[tuple[str, Route, int]] = []
    for name, s in m.services.items():
        for i, route in enumerate(s.routes):
            entries.append((name, route, s.port or 8080))
            ledger.map(f"services.{name}.routes.{i}", "path", "host")
            if route.strip_prefix and routing == "ingress":
                ledger.gap(
                    f"services.{name}.routes.{i}.strip_prefix",
                    True,
                    "Ingress cannot rewrite paths portably",
                    "use --httproute (URLRewrite) or the controller's rewrite annotation",
                )
            else:
                ledger.map(f"services.{name}.routes.{i}", "strip_prefix")
        ledger.map(f"services.{name}", "routes")
    if not entries:
        return None
    if routing == "ingress":
        rules: dict[str | None, list[dict[str, Any]]] = {}
        for name, route, port in entries:
            backend = {"service": {"name": name, "port": {"number": port}}}
            rules.setdefault(route.host, []).append(
                {"path": route.path, "pathType": "Prefix", "backend": backend}
            )
        spec_rules = []
        for host, paths in rules.items():
            rule: dict[str, Any] = {"http": {"paths": paths}}
            if host is not None:
                rule = {"host": host, **rule}
            spec_rules.append(rule)
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": metadata(app, app),
            "spec": {"rules": spec_rules},
        }
    http_rules = []
    hosts = sorted({r.host for _, r, _ in entries if r.host is not None})
    for name, route, port in entries:
        rule = {
            "matches": [{"path": {"type": "PathPrefix", "value": route.path}}],
            "backendRefs": [{"name": name, "port": port}],
            "timeouts": {"request": f"{whole_seconds(m.gateway.timeout)}s"},
        }
        if route.strip_prefix:
            rule["filters"] = [
                {
                    "type": "URLRewrite",
                    "urlRewrite": {
                        "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}
                    },
                }
            ]
        http_rules.append(rule)
    spec: dict[str, Any] = {"parentRefs": [{"name": app}]}
    if hosts:
        spec["hostnames"] = hosts
        if any(r.host is None for _, r, _ in entries) or len(hosts) > 1:
            for name, route, _ in entries:
                at = f"services.{name}.routes.{m.services[name].routes.index(route)}.host"
                ledger.gap(
                    at,
                    route.host,
                    "one HTTPRoute's hostnames apply to all its rules",
                    f"answers on {', '.join(hosts)}",
                )
    spec["rules"] = http_rules
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": metadata(app, app),
        "spec": spec,
    }


def job_objects(app: str, name: str, j: Job, tag: Tag, ledger: Ledger) -> dict[str, Any]:
    path = f"jobs.{name}"
    spec = container_spec(app, path, name, j, tag=tag, ledger=ledger)
    c = container(name, spec)
    limits = resources(path, j.resources.cpus, j.resources.memory, ledger)
    if limits:
        c["resources"] = limits
    job_spec: dict[str, Any] = {"backoffLimit": j.retries}
    ledger.map(path, "retries")
    if j.timeout is not None:
        job_spec["activeDeadlineSeconds"] = _seconds(
            f"{path}.timeout", j.timeout, ledger, "activeDeadlineSeconds"
        )
    else:
        ledger.map(path, "timeout")
    job_spec["template"] = {
        "metadata": {"labels": labels(app, name)},
        "spec": {"restartPolicy": "Never", "containers": [c]},
    }
    cron: dict[str, Any] = {}
    if j.schedule is None:
        cron["schedule"] = "@yearly"
        cron["suspend"] = True
        ledger.gap(
            f"{path}.schedule",
            "none (run by hand)",
            "a CronJob needs a schedule",
            f"suspended CronJob: run it with kubectl create job --from=cronjob/{name} NAME",
        )
    else:
        expression, note = five_field(j.schedule)
        if expression is None:
            cron["schedule"] = "@yearly"
            cron["suspend"] = True
            ledger.gap(f"{path}.schedule", j.schedule, note, "suspended CronJob")
        else:
            cron["schedule"] = expression
            if note:
                ledger.gap(f"{path}.schedule", j.schedule, note, expression)
            else:
                ledger.map(path, "schedule")
    cron["timeZone"] = j.timezone
    cron["concurrencyPolicy"] = j.concurrency_policy.title()
    if j.starting_deadline is not None:
        cron["startingDeadlineSeconds"] = _seconds(
            f"{path}.starting_deadline", j.starting_deadline, ledger, "startingDeadlineSeconds"
        )
    else:
        ledger.map(path, "starting_deadline")
    cron["successfulJobsHistoryLimit"] = j.history
    cron["failedJobsHistoryLimit"] = j.history
    cron["jobTemplate"] = {"spec": job_spec}
    ledger.map(path, "timezone", "concurrency_policy", "history")
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata(app, name),
        "spec": cron,
    }


def export_kubernetes(
    manifest: Manifest, *, routing: Routing = "ingress", tag: Tag = "latest"
) -> Export:
    """Every document of ``manifest`` for Kubernetes (+ Knative), and what it cannot express."""
    ledger = Ledger()
    app = manifest.name
    ledger.map("name")
    local_addresses(manifest, ledger)
    docs: list[Document] = []
    for name, s in manifest.services.items():
        docs.append(Document(f"service-{name}.yaml", service_objects(app, name, s, tag, ledger)))
    _gateway(manifest.gateway, routing, ledger)
    routes = _routes(app, manifest, routing, ledger)
    if routes is not None:
        docs.append(Document("routes.yaml", routes))
    for name, j in manifest.jobs.items():
        docs.append(Document(f"job-{name}.yaml", job_objects(app, name, j, tag, ledger)))
    docs.extend(knative_documents(manifest, tag, ledger))
    return finish("k8s", docs, ledger)


__all__ = ["Routing", "container", "export_kubernetes", "labels", "metadata"]
