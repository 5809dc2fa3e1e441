"""The manifest: what a ``shoal.yaml`` may say, and how it is read (the bottom layer).

reading        YAML -> data, with the line and column of every key and value
interpolating  ${VAR} from the environment and .env
schema         pydantic models: Manifest, Service, Function, Job, Topic, ...
units          durations (30s, 1m30s) and sizes (128M, 1Gi)
schedules      cron(...), 5-field cron and rate(...) expressions
checking       cross-checks over the whole document
loading        the flow above, ending in a Project or a ManifestError with every problem
reference      the JSON Schema and the generated Markdown reference
"""

from shoal.manifest.loading import (
    MANIFEST_NAMES,
    Project,
    find_manifest,
    load_manifest,
    parse_manifest,
)
from shoal.manifest.reference import json_schema, markdown_reference
from shoal.manifest.schema import (
    Autoscale,
    Backoff,
    EventTrigger,
    Function,
    Gateway,
    Health,
    HttpTrigger,
    Job,
    Manifest,
    Resources,
    Restart,
    Route,
    ScheduleTrigger,
    Service,
    Topic,
    Trigger,
    Update,
)
from shoal.manifest.units import format_duration, format_size, parse_duration, parse_size

__all__ = [
    "MANIFEST_NAMES",
    "Autoscale",
    "Backoff",
    "EventTrigger",
    "Function",
    "Gateway",
    "Health",
    "HttpTrigger",
    "Job",
    "Manifest",
    "Project",
    "Resources",
    "Restart",
    "Route",
    "ScheduleTrigger",
    "Service",
    "Topic",
    "Trigger",
    "Update",
    "find_manifest",
    "format_duration",
    "format_size",
    "json_schema",
    "load_manifest",
    "markdown_reference",
    "parse_duration",
    "parse_manifest",
    "parse_size",
]
