"""Knative for the Kubernetes export: functions -> Knative Services, schedule triggers ->
PingSources, topics -> Brokers, event triggers -> Triggers with retry, backoff and a dead-letter
sink. Pure; :func:`knative_documents` is called by :mod:`shoal.exporters.kubernetes`.

A function runs the image ``shoal build`` makes for it (shoal's function runtime with the
handler, serving HTTP on ``$PORT``), so timeouts, memory and the Lambda event shapes behave as
they do locally. Each topic is a Broker of its own: a trigger subscribes to its topic's Broker,
and a dead-letter topic is simply another Broker used as the ``deadLetterSink``.
"""

from __future__ import annotations

import json
from typing import Any

from shoal.exporters.documents import Document, Ledger
from shoal.exporters.naming import (
    DEFAULT_PORT,
    Tag,
    dns_label,
    function_image,
    is_whole,
    iso_duration,
    metadata,
    whole_seconds,
)
from shoal.exporters.scheduling import five_field
from shoal.manifest.schema import Function, Manifest
from shoal.manifest.units import format_duration

SERVING = "serving.knative.dev/v1"
EVENTING = "eventing.knative.dev/v1"
SOURCES = "sources.knative.dev/v1"
RETRY_BACKOFF = 1.0
"""First retry delay (seconds, doubling) for event deliveries: shoal's bus retries with an
exponential backoff; Knative needs the first delay written out."""


def _memory(size: int) -> str:
    mib, rest = divmod(size, 1 << 20)
    return f"{mib}Mi" if rest == 0 else str(size)


def _sink(name: str) -> dict[str, Any]:
    return {"ref": {"apiVersion": SERVING, "kind": "Service", "name": name}}


def _broker_ref(topic: str) -> dict[str, Any]:
    return {"ref": {"apiVersion": EVENTING, "kind": "Broker", "name": dns_label(topic)}}


def _service(app: str, name: str, f: Function, tag: Tag, ledger: Ledger) -> dict[str, Any]:
    path = f"functions.{name}"
    env = [{"name": k, "value": v} for k, v in f.env.items()]
    ledger.map(path, "handler", "env", "memory", "concurrency", "min_instances", "max_instances")
    ledger.gap(
        f"{path}.max_instances",
        f.max_instances,
        "past max-scale Knative queues requests in its activator instead of answering 429",
        f"autoscaling.knative.dev/max-scale: {f.max_instances}",
    )
    timeout = whole_seconds(f.timeout)
    if is_whole(f.timeout):
        ledger.map(path, "timeout")
    else:
        ledger.gap(
            f"{path}.timeout",
            format_duration(f.timeout),
            "timeoutSeconds is whole seconds",
            f"{timeout}s",
        )
    ledger.map(path, "idle_timeout")
    c: dict[str, Any] = {
        "image": function_image(app, name, tag),
        "ports": [{"containerPort": DEFAULT_PORT}],
        "resources": {"limits": {"memory": _memory(f.memory)}},
    }
    if env:
        c["env"] = env
    return {
        "apiVersion": SERVING,
        "kind": "Service",
        "metadata": metadata(app, name),
        "spec": {
            "template": {
                "metadata": {
                    "annotations": {
                        "autoscaling.knative.dev/min-scale": str(f.min_instances),
                        "autoscaling.knative.dev/max-scale": str(f.max_instances),
                        "autoscaling.knative.dev/target": str(f.concurrency),
                        "autoscaling.knative.dev/scale-to-zero-pod-retention-period": (
                            f"{whole_seconds(f.idle_timeout)}s"
                        ),
                    }
                },
                "spec": {
                    "containerConcurrency": f.concurrency,
                    "timeoutSeconds": timeout,
                    "containers": [c],
                },
            }
        },
    }


def _triggers(app: str, name: str, f: Function, ledger: Ledger) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    path = f"functions.{name}.triggers"
    ledger.map(path)
    for i, t in enumerate(f.triggers):
        at = f"{path}.{i}"
        if t.http is not None:
            ledger.gap(
                f"{at}.http.path",
                t.http.path,
                "Knative serves each function on a host of its own, not under a gateway path",
                f"http://{name}.NAMESPACE.DOMAIN{t.http.path} (add a route in your ingress)",
            )
            if t.http.methods != ["ANY"]:
                ledger.gap(
                    f"{at}.http.methods",
                    t.http.methods,
                    "a Knative Service answers every method",
                    "the function's runtime answers 405 to other methods",
                )
            else:
                ledger.map(f"{at}.http", "methods")
            if t.http.host is not None:
                ledger.gap(f"{at}.http.host", t.http.host, "hosts are a DomainMapping in Knative")
            else:
                ledger.map(f"{at}.http", "host")
            ledger.map(f"{at}", "schedule", "event")
        elif t.schedule is not None:
            sched = t.schedule
            ledger.map(f"{at}", "http", "event")
            expression, note = five_field(sched.expression)
            source_name = dns_label(f"{name}-schedule-{i}")
            if expression is None or not sched.enabled:
                why = note if expression is None else "a PingSource cannot be paused"
                ledger.gap(f"{at}.schedule", sched.expression, why, "no PingSource")
                continue
            if note:
                ledger.gap(f"{at}.schedule.expression", sched.expression, note, expression)
            else:
                ledger.map(f"{at}.schedule", "expression")
            ledger.map(f"{at}.schedule", "timezone", "input", "enabled")
            ledger.gap(
                f"{at}.schedule",
                sched.expression,
                "a PingSource posts a CloudEvent to the function's root, once (shoal retries "
                "twice, as Lambda); shoal's function image does not turn it into an "
                "EventBridge event yet",
                "one attempt per fire; the handler needs an adapter",
            )
            spec: dict[str, Any] = {"schedule": expression, "timezone": sched.timezone}
            if sched.input is not None:
                spec["contentType"] = "application/json"
                spec["data"] = json.dumps(sched.input, sort_keys=True)
            spec["sink"] = _sink(name)
            out.append(
                {
                    "apiVersion": SOURCES,
                    "kind": "PingSource",
                    "metadata": metadata(app, source_name),
                    "spec": spec,
                }
            )
        elif t.event is not None:
            e = t.event
            ledger.map(f"{at}", "http", "schedule")
            ledger.map(f"{at}.event", "retries", "dead_letter")
            ledger.gap(
                f"{at}.event.topic",
                e.topic,
                "Knative delivers CloudEvents by HTTP POST to the function's root; shoal's "
                "function image does not turn them into SQS batches yet",
                f"Trigger on Broker {dns_label(e.topic)}: the handler needs an adapter",
            )
            ledger.gap(
                f"{at}.event.batch_size",
                e.batch_size,
                "Knative delivers one event per request",
                "batches of one (an SQS-shaped event with one record)",
            )
            if e.batch_window > 0:
                ledger.gap(
                    f"{at}.event.batch_window",
                    format_duration(e.batch_window),
                    "Knative delivers at once",
                    "no batching window",
                )
            else:
                ledger.map(f"{at}.event", "batch_window")
            delivery: dict[str, Any] = {
                "retry": e.retries,
                "backoffPolicy": "exponential",
                "backoffDelay": iso_duration(RETRY_BACKOFF),
            }
            if e.dead_letter is not None:
                delivery["deadLetterSink"] = _broker_ref(e.dead_letter)
            out.append(
                {
                    "apiVersion": EVENTING,
                    "kind": "Trigger",
                    "metadata": metadata(app, dns_label(f"{name}-{e.topic}")),
                    "spec": {
                        "broker": dns_label(e.topic),
                        "subscriber": _sink(name),
                        "delivery": delivery,
                    },
                }
            )
    return out


def knative_documents(manifest: Manifest, tag: Tag, ledger: Ledger) -> list[Document]:
    """``function-NAME.yaml`` per function and ``topics.yaml`` (one Broker per topic)."""
    app = manifest.name
    docs: list[Document] = []
    for name, f in manifest.functions.items():
        objects: list[dict[str, Any]] = [_service(app, name, f, tag, ledger)]
        objects.extend(_triggers(app, name, f, ledger))
        docs.append(Document(f"function-{name}.yaml", objects))
    brokers = []
    for topic, t in manifest.topics.items():
        ledger.gap(
            f"topics.{topic}.retention",
            format_duration(t.retention),
            "a Broker keeps events as long as its channel implementation does",
            "the channel's retention",
        )
        brokers.append(
            {
                "apiVersion": EVENTING,
                "kind": "Broker",
                "metadata": {
                    **metadata(app, dns_label(topic)),
                    "annotations": {"shoal.dev/topic": topic},
                },
            }
        )
    if brokers:
        docs.append(Document("topics.yaml", brokers))
    return docs


__all__ = ["knative_documents"]
