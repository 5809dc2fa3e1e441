"""AWS SAM: functions -> ``AWS::Serverless::Function`` with their events; topics -> SQS queues
with a redrive policy to the dead-letter topic's queue; services -> ECS Fargate, or reported as
not expressible (the user's choice: ``--services fargate|report``). Pure.

Per function: handler, runtime, memory, timeout, reserved concurrency (``max_instances``),
provisioned concurrency (``min_instances``, on the ``live`` alias), environment, and events:
``HttpApi`` (the path and every path below it, per method), ``ScheduleV2`` (EventBridge
Scheduler, with its time zone, input and state) and ``SQS`` (batch size, window, partial batch
failures). ``EventInvokeConfig`` sets the retries of asynchronous invocations (schedules) to 0,
as shoal's scheduler does not retry a failed scheduled invocation. A topic's retries and
dead-letter topic become its queue's ``RedrivePolicy`` (``maxReceiveCount`` = retries + 1).
"""

from __future__ import annotations

import json
import posixpath
from typing import Any, Literal

from shoal.exporters.containers import container_spec, local_addresses
from shoal.exporters.documents import Document, Export, Ledger, finish
from shoal.exporters.naming import DEFAULT_PORT, Tag, logical_id, mebibytes, whole_seconds
from shoal.exporters.scheduling import aws_expression
from shoal.manifest.schema import EventTrigger, Function, Manifest, Service
from shoal.manifest.units import format_duration, format_size

Services = Literal["report", "fargate"]
LAMBDA_ASYNC_RETRIES = 2
"""Retries of an asynchronous invocation (a schedule's), as shoal's event bus and Lambda do."""
PYTHON_RUNTIME = "python3.12"
SQS_MAX_RETENTION = 14 * 86400
_FARGATE_CPU = (256, 512, 1024, 2048, 4096)
_FARGATE_MIN_MEMORY = {256: 512, 512: 1024, 1024: 2048, 2048: 4096, 4096: 8192}
_FARGATE_MAX_MEMORY = {256: 2048, 512: 4096, 1024: 8192, 2048: 16384, 4096: 30720}


def _queue_id(topic: str) -> str:
    return logical_id(topic, "Queue")


def _function(
    name: str, f: Function, queues: dict[str, list[tuple[str, EventTrigger]]], ledger: Ledger
) -> dict[str, Any]:
    path = f"functions.{name}"
    folder, module = posixpath.split(f.handler_file)
    props: dict[str, Any] = {
        "CodeUri": (folder or ".") + "/",
        "Handler": f"{module.removesuffix('.py')}.{f.handler_function}",
        "Runtime": PYTHON_RUNTIME,
        "MemorySize": mebibytes(f.memory),
        "Timeout": whole_seconds(f.timeout),
        "ReservedConcurrentExecutions": f.max_instances,
    }
    ledger.map(path, "handler", "max_instances", "env", "triggers")
    if f.memory % (1 << 20) or f.memory < 128 << 20:
        ledger.gap(
            f"{path}.memory",
            format_size(f.memory),
            "Lambda sizes memory in MB from 128",
            f"{max(128, props['MemorySize'])} MB",
        )
        props["MemorySize"] = max(128, props["MemorySize"])
    else:
        ledger.map(path, "memory")
    if whole_seconds(f.timeout) != f.timeout:
        ledger.gap(
            f"{path}.timeout",
            format_duration(f.timeout),
            "Lambda's timeout is whole seconds",
            f"{props['Timeout']}s",
        )
    else:
        ledger.map(path, "timeout")
    if f.min_instances > 0:
        props["AutoPublishAlias"] = "live"
        props["ProvisionedConcurrencyConfig"] = {"ProvisionedConcurrentExecutions": f.min_instances}
    ledger.map(path, "min_instances")
    if f.concurrency > 1:
        ledger.gap(
            f"{path}.concurrency",
            f.concurrency,
            "a Lambda instance takes one invocation at a time",
            "1",
        )
    else:
        ledger.map(path, "concurrency")
    ledger.gap(
        f"{path}.idle_timeout",
        format_duration(f.idle_timeout),
        "Lambda decides when idle instances go",
        "",
    )
    if f.env:
        props["Environment"] = {"Variables": dict(f.env)}
    events: dict[str, Any] = {}
    for i, t in enumerate(f.triggers):
        at = f"{path}.triggers.{i}"
        if t.http is not None:
            ledger.map(f"{at}.http", "path", "methods")
            methods = ["ANY"] if "ANY" in t.http.methods else t.http.methods
            for method in methods:
                for suffix, sub in (
                    ("", t.http.path),
                    ("Proxy", t.http.path.rstrip("/") + "/{proxy+}"),
                ):
                    key = logical_id("Http", str(i), method.title(), suffix)
                    events[key] = {"Type": "HttpApi", "Properties": {"Path": sub, "Method": method}}
            if t.http.host is not None:
                ledger.gap(
                    f"{at}.http.host",
                    t.http.host,
                    "an HttpApi matches a custom domain, not a Host per route",
                    "every host of the API",
                )
            else:
                ledger.map(f"{at}.http", "host")
        elif t.schedule is not None:
            s = t.schedule
            expression, note = aws_expression(s.expression)
            if note:
                ledger.gap(f"{at}.schedule.expression", s.expression, note, str(expression))
            else:
                ledger.map(f"{at}.schedule", "expression")
            sched: dict[str, Any] = {
                "ScheduleExpression": expression,
                "ScheduleExpressionTimezone": s.timezone,
                "State": "ENABLED" if s.enabled else "DISABLED",
            }
            if s.input is not None:
                sched["Input"] = json.dumps(s.input, sort_keys=True)
            ledger.map(f"{at}.schedule", "timezone", "input", "enabled")
            events[logical_id("Schedule", str(i))] = {"Type": "ScheduleV2", "Properties": sched}
            props["EventInvokeConfig"] = {"MaximumRetryAttempts": LAMBDA_ASYNC_RETRIES}
        elif t.event is not None:
            e = t.event
            queues.setdefault(e.topic, []).append((at, e))
            ledger.map(
                f"{at}.event", "topic", "batch_size", "batch_window", "retries", "dead_letter"
            )
            sqs: dict[str, Any] = {
                "Queue": {"Fn::GetAtt": [_queue_id(e.topic), "Arn"]},
                "BatchSize": e.batch_size,
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
            }
            if e.batch_window > 0:
                sqs["MaximumBatchingWindowInSeconds"] = whole_seconds(e.batch_window)
            events[logical_id("Queue", str(i))] = {"Type": "SQS", "Properties": sqs}
    if events:
        props["Events"] = events
    return {"Type": "AWS::Serverless::Function", "Properties": props}


def _queues(
    m: Manifest,
    subscribers: dict[str, list[tuple[str, EventTrigger]]],
    timeouts: dict[str, float],
    ledger: Ledger,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for topic, t in m.topics.items():
        retention = min(whole_seconds(t.retention, 60), SQS_MAX_RETENTION)
        if retention != t.retention:
            ledger.gap(
                f"topics.{topic}.retention",
                format_duration(t.retention),
                "SQS keeps a message 60 s to 14 days",
                format_duration(retention),
            )
        else:
            ledger.map(f"topics.{topic}", "retention")
        props: dict[str, Any] = {"MessageRetentionPeriod": retention}
        subs = subscribers.get(topic, [])
        if subs:
            # Lambda's guidance: a visibility timeout of six times the function's timeout.
            longest = max(timeouts[at.split(".")[1]] for at, _ in subs)
            props["VisibilityTimeout"] = min(43200, 6 * whole_seconds(longest))
            first_at, first = subs[0]
            if first.dead_letter is not None:
                props["RedrivePolicy"] = {
                    "deadLetterTargetArn": {"Fn::GetAtt": [_queue_id(first.dead_letter), "Arn"]},
                    "maxReceiveCount": first.retries + 1,
                }
            else:
                ledger.gap(
                    f"{first_at}.event.retries",
                    first.retries,
                    "without a dead-letter queue SQS redelivers until retention ends",
                    "retried until the message expires",
                )
            for at, other in subs[1:]:
                ledger.gap(
                    f"{at}.event",
                    other.topic,
                    "an SQS queue hands each message to one consumer (fan-out needs SNS)",
                    f"shares {_queue_id(topic)} with {first_at}",
                )
        out[_queue_id(topic)] = {"Type": "AWS::SQS::Queue", "Properties": props}
    return out


def _fargate_size(cpus: float | None, memory: int | None) -> tuple[int, int]:
    want = 256 if cpus is None else round(cpus * 1024)
    cpu = next((c for c in _FARGATE_CPU if c >= want), _FARGATE_CPU[-1])
    mib = _FARGATE_MIN_MEMORY[cpu] if memory is None else mebibytes(memory)
    mib = min(max(mib, _FARGATE_MIN_MEMORY[cpu]), _FARGATE_MAX_MEMORY[cpu])
    return cpu, -(-mib // 1024) * 1024 if mib > 512 else mib


def _fargate(app: str, name: str, s: Service, tag: Tag, ledger: Ledger) -> dict[str, Any]:
    path = f"services.{name}"
    spec = container_spec(app, path, name, s, tag=tag, ledger=ledger)
    cpu, memory = _fargate_size(s.resources.cpus, s.resources.memory)
    ledger.map(f"{path}.resources", "cpus", "memory")
    container: dict[str, Any] = {"Name": name, "Image": spec.image, "Essential": True}
    if spec.command is not None:
        container["Command"] = list(spec.command)
    if spec.workdir is not None:
        container["WorkingDirectory"] = spec.workdir
    container["Environment"] = [{"Name": k, "Value": v} for k, v in spec.env]
    container["PortMappings"] = [{"ContainerPort": spec.port or DEFAULT_PORT}]
    if s.health is not None:
        h = s.health
        port = spec.port or DEFAULT_PORT
        if h.exec is not None:
            command = ["CMD", *h.exec]
        else:
            target = f"http://127.0.0.1:{port}{h.http}" if h.http else None
            code = (
                f"import urllib.request; urllib.request.urlopen({target!r}, timeout=5)"
                if target
                else f"import socket; socket.create_connection(('127.0.0.1', {port}))"
            )
            command = ["CMD", "python3", "-c", code]
        container["HealthCheck"] = {
            "Command": command,
            "Interval": min(300, max(5, whole_seconds(h.interval))),
            "Timeout": min(60, max(2, whole_seconds(h.timeout))),
            "Retries": min(10, h.failures),
            "StartPeriod": min(300, whole_seconds(h.start_period, 0)),
        }
        ledger.map(f"{path}.health", "http", "tcp", "exec", "failures", "start_period")
        ledger.gap(
            f"{path}.health.interval",
            format_duration(h.interval),
            "ECS health checks run every 5-300 s, time out in 2-60 s",
            f"every {container['HealthCheck']['Interval']}s",
        )
        ledger.map(f"{path}.health", "timeout")
    else:
        ledger.map(path, "health")
    if s.autoscale is not None:
        ledger.gap(
            f"{path}.autoscale",
            f"{s.autoscale.min}-{s.autoscale.max}",
            "ECS scales with Application Auto Scaling policies, not in-flight requests",
            f"DesiredCount {max(1, s.autoscale.min)}",
        )
    else:
        ledger.map(path, "autoscale")
    ledger.map(path, "replicas")
    r = s.restart
    ledger.gap(
        f"{path}.restart",
        r.policy,
        "ECS replaces every stopped task, with its own throttling",
        "always restart",
    )
    u = s.update
    desired = max(1, s.autoscale.min) if s.autoscale else s.replicas
    ledger.map(f"{path}.update", "max_surge", "max_unavailable")
    ledger.gap(
        f"{path}.update.drain",
        format_duration(u.drain),
        "draining is the load balancer's deregistration delay",
        "none (no load balancer exported)",
    )
    for i, route in enumerate(s.routes):
        ledger.gap(
            f"{path}.routes.{i}",
            route.path,
            "path routes need an Application Load Balancer",
            "not exported",
        )
    ledger.map(path, "routes")
    if s.depends_on:
        ledger.gap(f"{path}.depends_on", dict(s.depends_on), "ECS services start independently")
    else:
        ledger.map(path, "depends_on")
    container["StopTimeout"] = min(120, whole_seconds(s.stop_grace_period))
    ledger.map(path, "stop_grace_period")
    percent = 100 if desired == 0 else None
    task = logical_id(name, "Task")
    return {
        task: {
            "Type": "AWS::ECS::TaskDefinition",
            "Properties": {
                "RequiresCompatibilities": ["FARGATE"],
                "NetworkMode": "awsvpc",
                "Cpu": str(cpu),
                "Memory": str(memory),
                "ContainerDefinitions": [container],
            },
        },
        logical_id(name, "Service"): {
            "Type": "AWS::ECS::Service",
            "Properties": {
                "Cluster": {"Ref": "Cluster"},
                "LaunchType": "FARGATE",
                "DesiredCount": desired,
                "TaskDefinition": {"Ref": task},
                "DeploymentConfiguration": {
                    "MaximumPercent": percent or 100 + (100 * u.max_surge) // max(desired, 1),
                    "MinimumHealthyPercent": percent
                    or max(0, 100 - (100 * u.max_unavailable) // max(desired, 1)),
                },
                "NetworkConfiguration": {
                    "AwsvpcConfiguration": {
                        "Subnets": {"Ref": "Subnets"},
                        "AssignPublicIp": "DISABLED",
                    }
                },
            },
        },
    }


def _report_service(name: str, s: Service, ledger: Ledger) -> None:
    runs = " ".join(s.command) if s.command else (s.image or f"build {s.build}")
    ledger.gap(
        f"services.{name}",
        runs,
        "SAM describes functions; long-running services need a container platform",
        "not exported (use --services fargate)",
    )


def export_sam(manifest: Manifest, *, services: Services = "report", tag: Tag = "latest") -> Export:
    """The SAM template (``template.yaml``), and what AWS Lambda cannot express."""
    ledger = Ledger()
    ledger.map("name")
    local_addresses(manifest, ledger)
    resources: dict[str, Any] = {}
    subscribers: dict[str, list[tuple[str, EventTrigger]]] = {}
    for name, f in manifest.functions.items():
        resources[logical_id(name)] = _function(name, f, subscribers, ledger)
    timeouts = {name: f.timeout for name, f in manifest.functions.items()}
    resources.update(_queues(manifest, subscribers, timeouts, ledger))
    template: dict[str, Any] = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Description": f"{manifest.name}: exported by shoal",
    }
    if services == "fargate" and manifest.services:
        template["Parameters"] = {
            "Subnets": {
                "Type": "List<AWS::EC2::Subnet::Id>",
                "Description": "Subnets the Fargate services run in",
            }
        }
        resources["Cluster"] = {"Type": "AWS::ECS::Cluster"}
        for name, s in manifest.services.items():
            resources.update(_fargate(manifest.name, name, s, tag, ledger))
    else:
        for name, s in manifest.services.items():
            _report_service(name, s, ledger)
    for name, j in manifest.jobs.items():
        ledger.gap(
            f"jobs.{name}",
            j.schedule or "run by hand",
            "a job is a command, not a handler",
            "not exported (make it a function with a schedule trigger)",
        )
    g = manifest.gateway
    ledger.gap(
        "gateway",
        f"{g.host}:{g.port}",
        "API Gateway gives the HttpApi its own endpoint",
        "https://API_ID.execute-api.REGION.amazonaws.com",
    )
    ledger.gap(
        "gateway.timeout",
        format_duration(g.timeout),
        "an HttpApi integration times out at 30 s at most",
        "the API's default (30 s)",
    )
    ledger.gap(
        "gateway.max_body", format_size(g.max_body), "API Gateway caps payloads at 10 MB", "10 MB"
    )
    ledger.gap("gateway.max_header", format_size(g.max_header), "API Gateway's own header limits")
    template["Resources"] = resources
    return finish("sam", [Document("template.yaml", template)], ledger)


__all__ = ["Services", "export_sam"]
