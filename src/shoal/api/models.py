"""The control API's request and response bodies (pydantic), shared by server, client and docs.

The OpenAPI document at ``/v1/openapi.json`` is generated from these models and the route table
in :mod:`shoal.api.routes`, so it cannot drift from what the server does.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(Body):
    """Every error answer: a short machine word and a sentence for people."""

    error: str = Field(description="e.g. not_found, invalid_request, invalid_manifest")
    message: str
    problems: list[str] = Field(default_factory=list, description="Manifest problems, one each.")


class InstanceRow(Body):
    """One row of ``shoal ps``: the keys are a stable contract for ``shoal ps --json``."""

    kind: Literal["service", "job", "function", "template", "standby"] = Field(
        description="standby: a function instance forked ahead of demand, not yet taken"
    )
    name: str
    instance: int
    runtime: str
    state: str = Field(description="starting, running, backoff, stopping, exited, fatal")
    ready: bool
    pid: int | None
    port: int | None = Field(description="Where the instance is reached on 127.0.0.1.")
    restarts: int
    uptime: float | None = Field(description="Seconds since the current run started.")
    reason: str | None = Field(None, description="Why it stopped, or what it waits for.")


class ServiceStatus(Body):
    name: str
    desired: int
    ready: int
    revision: str
    waiting: str | None = None


class Status(Body):
    app: str
    manifest: str
    version: str
    pid: int
    started_at: float
    services: list[ServiceStatus]


class ScaleRequest(Body):
    replicas: int = Field(ge=0, le=1000, description="Instances wanted.")


class ScaleResult(Body):
    name: str
    replicas: int
    note: str | None = Field(
        default=None, description="what the scale means for the service's autoscaling, if any"
    )


class ApplyResult(Body):
    changes: dict[str, str] = Field(description="service -> added, removed, rolling update, ...")


class Accepted(Body):
    accepted: bool = True
    message: str = ""


class InvokeResult(Body):
    """A function's answer to ``shoal invoke``: its result (or Lambda's error shape) and REPORT."""

    function: str
    request_id: str
    ok: bool
    status: str = Field(description="ok, error, timeout, oom, crash, throttled")
    payload: Any = Field(description="What the handler returned, or the error shape.")
    report: str = Field(description="Lambda's REPORT line for this invocation.")


class Published(Body):
    """A publish is answered (202) once the event is durable; its id per queue of the topic."""

    ids: list[int]


class TopicRow(Body):
    """One row of ``shoal topics``: a topic (or a function's asynchronous queue)."""

    name: str
    retention: float = Field(description="Seconds messages are kept.")
    subscribers: list[str] = Field(description="Functions fed by the topic.")
    depth: int = Field(description="Messages not acked yet (waiting or being delivered).")
    leased: int = Field(description="Of those, being delivered now.")
    lag: float = Field(description="Age in seconds of the oldest message not acked yet.")
    dead_letters: int = Field(description="Dead letters that came from this topic.")


class DeadLetter(Body):
    """A message that failed every retry, with the last error."""

    id: int
    topic: str
    queue: str = Field(description="The dead-letter topic holding it.")
    payload: Any
    error: str
    created_at: float


class Redriven(Body):
    topic: str
    count: int = Field(description="Dead letters sent back to the topic.")


class JobRunRow(Body):
    """One run of a job (``shoal jobs NAME``)."""

    id: int
    job: str
    trigger: str = Field(description="schedule, manual or missed")
    started_at: float
    finished_at: float | None
    exit_code: int | None
    reason: str | None


class JobRow(Body):
    """One row of ``shoal jobs``."""

    name: str
    schedule: str | None
    concurrency_policy: str
    next_fire_at: float | None
    running: list[int] = Field(description="Ids of the runs in progress.")
    last: JobRunRow | None = Field(description="The most recent run.")


class RunStarted(Body):
    """``shoal run JOB``: the run started, or why not (forbid with a run in progress)."""

    job: str
    run: int | None
    message: str


class LogLine(Body):
    """One log record; ``/v1/logs`` streams these as newline-delimited JSON."""

    source: str
    time: float
    text: str


__all__ = [
    "Accepted",
    "ApplyResult",
    "DeadLetter",
    "ErrorBody",
    "InstanceRow",
    "InvokeResult",
    "JobRow",
    "JobRunRow",
    "LogLine",
    "Published",
    "Redriven",
    "RunStarted",
    "ScaleRequest",
    "ScaleResult",
    "ServiceStatus",
    "Status",
    "TopicRow",
]
