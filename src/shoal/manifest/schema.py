"""The manifest's schema: what a ``shoal.yaml`` may say, as pydantic models (DESIGN.md §2).

This module is the contract between users, examples, runtimes and exporters. It only *describes*
and checks single values; problems that need the whole document (unknown ``depends_on`` targets,
cycles, route clashes, handler files) are found by :mod:`shoal.manifest.checking`, and turning
pydantic's errors into located, readable problems is :mod:`shoal.manifest.loading`'s job.

Key names follow Compose where the concept is the same, AWS Lambda for functions.
"""

from __future__ import annotations

import re
import shlex
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from shoal.manifest.schedules import parse_schedule
from shoal.manifest.units import Duration, Size

# ---------------------------------------------------------------- value types


def _in_range(low: int, high: int | None) -> AfterValidator:
    def check(value: int) -> int:
        if value < low or (high is not None and value > high):
            bound = f"{low}-{high}" if high is not None else f"{low} or more"
            raise ValueError(f"{value} is out of range {bound}")
        return value

    return AfterValidator(check)


Port = Annotated[
    int, _in_range(1, 65535), Field(json_schema_extra={"minimum": 1, "maximum": 65535})
]
Count = Annotated[int, _in_range(0, None), Field(ge=0)]
Positive = Annotated[int, _in_range(1, None), Field(ge=1)]

_NAME = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")
_TOPIC = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HANDLER = re.compile(r"(?P<file>[^:]+\.py):(?P<func>[A-Za-z_][A-Za-z0-9_]*)")
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def check_name(name: str) -> str:
    """Service, function and job names are DNS labels, so every export target accepts them."""
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a valid name; use lowercase letters, digits and '-', "
            "starting with a letter, at most 63 characters (e.g. 'order-api')"
        )
    return name


def check_topic(name: str) -> str:
    if not _TOPIC.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a valid topic name; use letters, digits, '.', '_' and '-' "
            "(e.g. 'orders.created')"
        )
    return name


def _split_command(value: Any) -> Any:
    """A command is a list of words; a string is split like a shell would, never run by one."""
    if isinstance(value, str):
        try:
            words = shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} cannot be split into words: {exc}") from None
        return words
    return value


def _nonempty_command(words: list[str]) -> list[str]:
    if not words or not words[0]:
        raise ValueError("the command is empty; give the program and its arguments")
    return words


Command = Annotated[
    list[str],
    BeforeValidator(_split_command, json_schema_input_type=str | list[str]),
    AfterValidator(_nonempty_command),
]


def _env_values(value: Any) -> Any:
    """Env values may be written as numbers or booleans; processes only ever see strings."""
    if not isinstance(value, dict):
        return value
    out: dict[Any, Any] = {}
    for key, item in value.items():
        if isinstance(item, bool):
            out[key] = "true" if item else "false"
        elif isinstance(item, int | float):
            out[key] = str(item)
        elif item is None:
            out[key] = ""
        else:
            out[key] = item
    return out


def _env_keys(env: dict[str, str]) -> dict[str, str]:
    for key in env:
        if not _ENV_KEY.fullmatch(key):
            raise ValueError(
                f"{key!r} is not a valid environment variable name; "
                "use letters, digits and '_', not starting with a digit"
            )
    return env


Env = Annotated[
    dict[str, str],
    BeforeValidator(_env_values, json_schema_input_type=dict[str, str | int | float | bool]),
    AfterValidator(_env_keys),
]


def _check_path(path: str) -> str:
    if not path.startswith("/"):
        raise ValueError(f"{path!r} must start with '/' (e.g. '/{path.lstrip('/')}')")
    if any(part in (".", "..") for part in path.split("/")) or "//" in path:
        raise ValueError(f"{path!r} is not a normalised path; remove '.', '..' and '//'")
    if any(ch in path for ch in "?#%\\ "):
        raise ValueError(f"{path!r} may not contain '?', '#', '%', '\\' or spaces")
    return path


UrlPath = Annotated[str, AfterValidator(_check_path)]


class Strict(BaseModel):
    """Base of every manifest model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# ---------------------------------------------------------------- gateway


class Gateway(Strict):
    """The HTTP gateway in front of every service and function."""

    host: str = Field("127.0.0.1", description="Address to listen on. Loopback unless you ask.")
    port: Port = Field(8000, description="Port to listen on.")
    timeout: Duration = Field(30.0, description="Upstream response timeout (504 past it).")
    max_body: Size = Field(6 << 20, description="Largest request body accepted (413 past it).")
    max_header: Size = Field(32 << 10, description="Largest request head accepted (431 past it).")


# ---------------------------------------------------------------- services


class Health(Strict):
    """How shoal decides an instance is ready. Exactly one of http, tcp, exec."""

    http: UrlPath | None = Field(None, description="GET this path on the instance; 2xx/3xx = ok.")
    tcp: bool | None = Field(None, description="true: a TCP connect to the instance's port = ok.")
    exec: Command | None = Field(None, description="Run this command; exit 0 = ok.")
    interval: Duration = Field(1.0, description="Time between probes.")
    timeout: Duration = Field(0.5, description="A probe slower than this fails.")
    failures: Positive = Field(3, description="Consecutive failures that make it unhealthy.")
    start_period: Duration = Field(10.0, description="Failures in this first window don't count.")

    @model_validator(mode="after")
    def _one_kind(self) -> Health:
        kinds = [k for k in ("http", "tcp", "exec") if getattr(self, k) not in (None, False)]
        if len(kinds) != 1:
            found = ", ".join(kinds) if kinds else "none"
            raise ValueError(f"give exactly one of http, tcp or exec (found: {found})")
        return self


class Backoff(Strict):
    """Restart n in a row waits min(initial * factor**(n-2), max); the first one is immediate."""

    initial: Duration = Field(0.1, description="Delay before the second restart in a row.")
    factor: float = Field(2.0, ge=1.0, description="Growth of the delay per restart.")
    max: Duration = Field(30.0, description="Cap on the delay.")
    reset_after: Duration = Field(10.0, description="Running this long resets the count.")


RestartPolicy = Literal["always", "on-failure", "never"]


def _restart_shorthand(value: Any) -> Any:
    return {"policy": value} if isinstance(value, str) else value


class Restart(Strict):
    """When a stopped instance is started again, and how fast."""

    policy: RestartPolicy = Field("always", description="always | on-failure | never.")
    backoff: Backoff = Field(default_factory=Backoff, description="Delays between restarts.")
    max_retries: Count | None = Field(
        None, description="Restarts in a row before giving up (state fatal); none = forever."
    )


class Resources(Strict):
    """Limits applied with cgroups (process), the engine (container) or the VM size (vm)."""

    cpus: float | None = Field(None, gt=0, description="CPU cores, fractional allowed.")
    memory: Size | None = Field(None, description="Memory limit.")


class Update(Strict):
    """Rolling update: new instances healthy before old ones drain."""

    max_surge: Count = Field(1, description="Extra instances allowed during an update.")
    max_unavailable: Count = Field(0, description="Instances allowed below the desired count.")
    drain: Duration = Field(10.0, description="In-flight requests get this long to finish.")

    @model_validator(mode="after")
    def _can_progress(self) -> Update:
        if self.max_surge == 0 and self.max_unavailable == 0:
            raise ValueError(
                "max_surge and max_unavailable cannot both be 0: no update could start"
            )
        return self


class Autoscale(Strict):
    """Replicas follow in-flight requests measured at the gateway (Knative KPA style)."""

    min: Count = Field(0, description="Fewest replicas; 0 allows scale to zero.")
    max: Positive = Field(10, description="Most replicas.")
    target_concurrency: float = Field(10.0, gt=0, description="In-flight requests per replica.")
    window: Duration = Field(60.0, description="Stable window averaged for decisions.")
    panic_window: Duration = Field(6.0, description="Short window that reacts to bursts.")
    panic_threshold: float = Field(2.0, gt=1.0, description="Burst ratio that triggers panic mode.")
    scale_to_zero_after: Duration = Field(
        30.0, description="Idle time before the last replica goes."
    )

    @model_validator(mode="after")
    def _ordered(self) -> Autoscale:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.panic_window > self.window:
            raise ValueError("panic_window must not be longer than window")
        return self


def _route_shorthand(value: Any) -> Any:
    return {"path": value} if isinstance(value, str) else value


class Route(Strict):
    """A gateway path prefix (and optionally a Host) that leads to this service."""

    path: UrlPath = Field(description="Path prefix, e.g. /catalog.")
    host: str | None = Field(None, description="Match only this Host header.")
    strip_prefix: bool = Field(False, description="Remove the prefix before forwarding.")


RouteSpec = Annotated[Route, BeforeValidator(_route_shorthand, json_schema_input_type=str | Route)]

DependsCondition = Literal["started", "healthy", "completed"]


def _depends_shorthand(value: Any) -> Any:
    """``depends_on: [db]`` (Compose's short form) means ``{db: started}``."""
    if isinstance(value, list) and all(isinstance(name, str) for name in value):
        return dict.fromkeys(value, "started")
    return value


Runtime = Literal["process", "container", "vm"]

ProfileName = Annotated[
    str,
    Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$", description="A profile, as in Compose."),
]


class Service(Strict):
    """A long-running service: replicas behind the gateway, supervised."""

    runtime: Runtime = Field("process", description="process | container | vm.")
    command: Command | None = Field(None, description="Program and arguments; never a shell.")
    image: str | None = Field(None, description="container: an image to run.")
    build: str | None = Field(None, description="container: Dockerfile folder; vm: files to bake.")
    workdir: str | None = Field(None, description="Working directory, relative to the manifest.")
    env: Env = Field(default_factory=dict, description="Environment variables for the command.")
    port: Port | None = Field(None, description="Port the app listens on (it also gets $PORT).")
    replicas: Count = Field(1, description="Instances to run (ignored with autoscale).")
    autoscale: Autoscale | None = Field(None, description="Scale on in-flight requests.")
    health: Health | None = Field(None, description="Readiness probe; none = ready when started.")
    restart: Annotated[
        Restart, BeforeValidator(_restart_shorthand, json_schema_input_type=str | Restart)
    ] = Field(default_factory=Restart, description="Restart policy and backoff.")
    resources: Resources = Field(default_factory=Resources, description="CPU and memory limits.")
    routes: list[RouteSpec] = Field(default_factory=list, description="Gateway path prefixes.")
    depends_on: Annotated[
        dict[str, DependsCondition],
        BeforeValidator(
            _depends_shorthand,
            json_schema_input_type=list[str] | dict[str, DependsCondition],
        ),
    ] = Field(default_factory=dict, description="Start after these: started, healthy or completed.")
    update: Update = Field(default_factory=Update, description="How changes roll out.")
    stop_grace_period: Duration = Field(10.0, description="SIGTERM, then SIGKILL after this.")
    profiles: list[ProfileName] = Field(
        default_factory=list,
        description="Run only while one of these is active (--profile); none: always.",
    )

    @model_validator(mode="after")
    def _runtime_needs(self) -> Service:
        if self.runtime == "process" and self.image is not None:
            raise ValueError(
                "image applies to runtime: container; did you mean runtime: container?"
            )
        if self.runtime == "process" and self.command is None:
            raise ValueError("a process service needs a command (e.g. command: [python3, app.py])")
        if self.runtime == "container" and self.image is None and self.build is None:
            raise ValueError("a container service needs an image or a build folder")
        if self.runtime == "vm" and self.command is None:
            raise ValueError("a vm service needs a command to start inside the VM")
        if self.autoscale is not None and "replicas" in self.model_fields_set:
            raise ValueError("give replicas or autoscale, not both")
        return self


# ---------------------------------------------------------------- functions


def _upper_methods(value: Any) -> Any:
    if isinstance(value, list):
        return [m.upper() if isinstance(m, str) else m for m in value]
    return value


HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "ANY"]


class HttpTrigger(Strict):
    """Requests to this path (prefix) on the gateway invoke the function (API GW v2 event)."""

    path: UrlPath = Field(description="Path prefix on the gateway.")
    methods: Annotated[list[HttpMethod], BeforeValidator(_upper_methods)] = Field(
        default_factory=lambda: list[HttpMethod](["ANY"]),
        description="Methods routed here; ANY = all.",
    )
    host: str | None = Field(None, description="Match only this Host header.")

    def method_set(self) -> frozenset[str]:
        return frozenset(_METHODS) if "ANY" in self.methods else frozenset(self.methods)


def _schedule_expression(text: str) -> str:
    parse_schedule(text)
    return text


ScheduleExpression = Annotated[str, AfterValidator(_schedule_expression)]


def _schedule_shorthand(value: Any) -> Any:
    return {"expression": value} if isinstance(value, str) else value


class ScheduleTrigger(Strict):
    """Invoke on a schedule with an EventBridge "Scheduled Event"."""

    expression: ScheduleExpression = Field(description="cron(…) (AWS), 5-field cron, or rate(…).")
    timezone: str = Field("UTC", description="IANA zone the cron is read in.")
    input: dict[str, Any] | None = Field(None, description="Replaces the event's detail.")
    enabled: bool = Field(True, description="false pauses the schedule.")


class EventTrigger(Strict):
    """Deliver messages of a topic in SQS batches, at least once."""

    topic: Annotated[str, AfterValidator(check_topic)] = Field(description="A declared topic.")
    batch_size: Annotated[int, _in_range(1, 10000), Field(ge=1, le=10000)] = Field(
        10, description="Most messages per invocation."
    )
    batch_window: Duration = Field(0.0, description="Wait this long to fill a batch.")
    retries: Annotated[int, _in_range(0, 185), Field(ge=0, le=185)] = Field(
        2, description="Deliveries retried (with backoff) before dead-lettering."
    )
    dead_letter: Annotated[str, AfterValidator(check_topic)] | None = Field(
        None, description="Topic that receives messages that failed every retry."
    )


class Trigger(Strict):
    """One of http, schedule, event."""

    http: HttpTrigger | None = Field(None, description="Invoke on gateway requests.")
    schedule: (
        Annotated[
            ScheduleTrigger,
            BeforeValidator(_schedule_shorthand, json_schema_input_type=str | ScheduleTrigger),
        ]
        | None
    ) = Field(None, description="Invoke on a schedule (string shorthand: the expression).")
    event: EventTrigger | None = Field(None, description="Invoke with batches of a topic.")

    @model_validator(mode="after")
    def _one_kind(self) -> Trigger:
        kinds = [k for k in ("http", "schedule", "event") if getattr(self, k) is not None]
        if len(kinds) != 1:
            found = ", ".join(kinds) if kinds else "none"
            raise ValueError(
                f"a trigger has exactly one of http, schedule or event (found: {found})"
            )
        return self


def _check_handler(value: str) -> str:
    if not _HANDLER.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a handler; write FILE.py:FUNCTION (e.g. functions/resize.py:handler)"
        )
    return value


class Function(Strict):
    """A Lambda-compatible handler run in a pre-forked warm pool that scales to zero."""

    handler: Annotated[str, AfterValidator(_check_handler)] = Field(
        description="FILE.py:FUNCTION, relative to the manifest."
    )
    memory: Size = Field(128 << 20, description="Memory limit per instance.")
    timeout: Duration = Field(3.0, description="An invocation is killed past this (Lambda: 3s).")
    concurrency: Positive = Field(1, description="Invocations one instance takes at once.")
    min_instances: Count = Field(0, description="Instances kept warm.")
    max_instances: Positive = Field(100, description="Most instances; beyond: throttle (429).")
    idle_timeout: Duration = Field(60.0, description="Idle instances stop after this.")
    env: Env = Field(default_factory=dict, description="Environment variables for the handler.")
    triggers: list[Trigger] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ordered(self) -> Function:
        if self.min_instances > self.max_instances:
            raise ValueError(
                f"min_instances ({self.min_instances}) is greater than "
                f"max_instances ({self.max_instances})"
            )
        if self.memory < 16 << 20:
            raise ValueError("memory below 16M cannot run a Python instance")
        return self

    @property
    def handler_file(self) -> str:
        return self.handler.rsplit(":", 1)[0]

    @property
    def handler_function(self) -> str:
        return self.handler.rsplit(":", 1)[1]


# ---------------------------------------------------------------- jobs and topics


class Job(Strict):
    """A command run to completion, on a schedule or by hand (``shoal run``)."""

    runtime: Runtime = Field("process", description="process | container | vm.")
    command: Command | None = Field(None, description="Program and arguments; never a shell.")
    image: str | None = Field(None, description="container: an image to run.")
    build: str | None = Field(None, description="container: Dockerfile folder; vm: files to bake.")
    workdir: str | None = Field(None, description="Working directory, relative to the manifest.")
    env: Env = Field(default_factory=dict, description="Environment variables for the command.")
    resources: Resources = Field(default_factory=Resources, description="CPU and memory limits.")
    schedule: ScheduleExpression | None = Field(None, description="cron(…), 5-field cron, rate(…).")
    timezone: str = Field("UTC", description="IANA zone the cron is read in.")
    concurrency_policy: Literal["allow", "forbid", "replace"] = Field(
        "allow", description="A run due while one is running: start it, skip it, or replace."
    )
    timeout: Duration | None = Field(None, description="A run is killed past this; none = never.")
    retries: Count = Field(0, description="Runs retried after a failure.")
    starting_deadline: Duration | None = Field(None, description="Late runs within this still run.")
    history: Positive = Field(10, description="Finished runs kept.")

    @model_validator(mode="after")
    def _runtime_needs(self) -> Job:
        if self.runtime in ("process", "vm") and self.command is None:
            raise ValueError(f"a {self.runtime} job needs a command")
        if self.runtime == "container" and self.image is None and self.build is None:
            raise ValueError("a container job needs an image or a build folder")
        return self


def _topic_default(value: Any) -> Any:
    return {} if value is None else value


class Topic(Strict):
    """A durable topic of the event bus."""

    retention: Duration = Field(4 * 86400.0, description="Messages older than this are purged.")


TopicSpec = Annotated[Topic, BeforeValidator(_topic_default)]


# ---------------------------------------------------------------- the document


def _named(kind_check: Any) -> Any:
    def check(value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            kind_check(key)
        return value

    return AfterValidator(check)


class Manifest(Strict):
    """A whole application: ``shoal.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="shoal manifest")

    name: Annotated[str, AfterValidator(check_name)] = Field(
        description="The application's name (a DNS label)."
    )
    gateway: Gateway = Field(default_factory=Gateway, description="The HTTP front door.")
    services: Annotated[dict[str, Service], _named(check_name)] = Field(
        default_factory=dict, description="Long-running services, by name."
    )
    functions: Annotated[dict[str, Function], _named(check_name)] = Field(
        default_factory=dict, description="Functions (Lambda-style handlers), by name."
    )
    jobs: Annotated[dict[str, Job], _named(check_name)] = Field(
        default_factory=dict, description="Commands run to completion, by name."
    )
    topics: Annotated[dict[str, TopicSpec], _named(check_topic)] = Field(
        default_factory=dict, description="Durable event topics, by name."
    )


__all__ = [
    "Autoscale",
    "Backoff",
    "EventTrigger",
    "Function",
    "Gateway",
    "Health",
    "HttpTrigger",
    "Job",
    "Manifest",
    "Resources",
    "Restart",
    "Route",
    "ScheduleTrigger",
    "Service",
    "Topic",
    "Trigger",
    "Update",
]
