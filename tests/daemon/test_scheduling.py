"""The daemon's scheduler wiring, without a daemon: which schedules the manifest yields, and what
a fire does (a function gets EventBridge's Scheduled Event through the async queue; a job run
is triggered); the ticker itself is tested in virtual time in tests/scheduler."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.daemon.scheduling import Scheduling, schedule_entries
from shoal.logs import LogStore
from shoal.manifest import Project, load_manifest
from shoal.runtimes.base import Runtime
from shoal.store import Store

MANIFEST = """
name: demo
functions:
  beat:
    handler: fn.py:handler
    triggers:
      - schedule: rate(5 minutes)
      - schedule: {expression: "cron(0 12 * * ? *)", timezone: Europe/Paris, input: {k: 1}}
      - schedule: {expression: "0 1 * * *", enabled: false}
jobs:
  report: {command: [python3, r.py], schedule: "0 2 * * *", starting_deadline: 1h}
  manual: {command: [python3, r.py]}
"""


@pytest.fixture
def project(tmp_path: Path) -> Project:
    (tmp_path / "fn.py").write_text("def handler(event, context):\n    return event\n")
    (tmp_path / "shoal.yaml").write_text(MANIFEST)
    return load_manifest(tmp_path / "shoal.yaml")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / ".shoal" / "state.db") as opened:
        yield opened


def test_entries_from_the_manifest(project: Project) -> None:
    entries = {e.key: e for e in schedule_entries(project)}
    assert set(entries) == {"job:report", "function:beat:0", "function:beat:1"}  # disabled: out
    assert entries["job:report"].catch_up and entries["job:report"].starting_deadline_s == 3600
    assert not entries["function:beat:0"].catch_up
    assert entries["function:beat:1"].timezone == "Europe/Paris"


class Recorder:
    def __init__(self) -> None:
        self.invoked: list[tuple[str, Any]] = []

    async def invoke_async(self, function: str, event: Any) -> int:
        self.invoked.append((function, event))
        return 1


def no_runtime(name: str) -> Runtime:
    raise AssertionError("no job should start here")


@pytest.mark.asyncio
async def test_a_function_fire_queues_a_scheduled_event(
    project: Project, store: Store, tmp_path: Path
) -> None:
    recorder = Recorder()
    scheduling = Scheduling(
        project,
        store,
        LogStore(tmp_path / "logs"),
        no_runtime,
        recorder,  # type: ignore[arg-type]  # stands in for Events: only invoke_async is used
        state=tmp_path / ".shoal",
    )
    entries = {e.key: e for e in scheduling.entries}
    scheduling._fire(entries["function:beat:0"], 1_700_000_000.0, "schedule")
    scheduling._fire(entries["function:beat:1"], 1_700_000_000.0, "schedule")
    for _ in range(5):
        await asyncio.sleep(0)
    [(fn, plain), (_, with_input)] = recorder.invoked
    assert fn == "beat"
    assert plain["detail-type"] == "Scheduled Event" and plain["source"] == "aws.events"
    assert plain["time"] == "2023-11-14T22:13:20Z"
    assert plain["resources"][0].endswith(":rule/demo-function-beat-0")
    assert plain["detail"] == {} and with_input["detail"] == {"k": 1}
