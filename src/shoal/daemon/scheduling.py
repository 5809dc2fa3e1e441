"""The daemon's scheduler: the manifest's schedules on a ticker, jobs through the launcher.

    job schedule      ─▶ Ticker ─▶ JobLauncher.trigger(job, "schedule" | "missed")
    function schedule ─▶ Ticker ─▶ EventBridge "Scheduled Event" ─▶ Events.invoke_async
    shoal run JOB     ─▶ JobLauncher.trigger(job, "manual")

A job's schedule missed while the daemon was down runs once on start if it is within the job's
``starting_deadline`` (no deadline: the latest missed fire runs); function schedules are not
caught up (EventBridge does not either).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from pathlib import Path

from shoal.api.models import InstanceRow, JobRow, JobRunRow, RunStarted
from shoal.daemon.eventing import Events
from shoal.functions import shapes
from shoal.logs import LogStore
from shoal.manifest import Project
from shoal.runtimes.base import Runtime
from shoal.scheduler.launching import JobLauncher
from shoal.scheduler.ticking import Clock, Entry, FireKind, Ticker
from shoal.store import JobRun, Store

log = logging.getLogger(__name__)


def schedule_entries(project: Project) -> list[Entry]:
    m = project.manifest
    entries = []
    for name, job in sorted(m.jobs.items()):
        if job.schedule:
            entries.append(
                Entry(
                    key=f"job:{name}",
                    target=name,
                    expression=job.schedule,
                    timezone=job.timezone,
                    catch_up=True,
                    starting_deadline_s=job.starting_deadline,
                )
            )
    for name, function in sorted(m.functions.items()):
        for n, trigger in enumerate(function.triggers):
            schedule = trigger.schedule
            if schedule is not None and schedule.enabled:
                entries.append(
                    Entry(
                        key=f"function:{name}:{n}",
                        target=name,
                        expression=schedule.expression,
                        timezone=schedule.timezone,
                    )
                )
    return entries


def _run_row(run: JobRun) -> JobRunRow:
    return JobRunRow(
        id=run.id,
        job=run.job,
        trigger=run.trigger,
        started_at=run.started_at,
        finished_at=run.finished_at,
        exit_code=run.exit_code,
        reason=run.reason,
    )


class Scheduling:
    """The ticker and the job launcher of one daemon."""

    def __init__(
        self,
        project: Project,
        store: Store,
        logs: LogStore,
        runtimes: Callable[[str], Runtime],
        events: Events | None,
        *,
        state: Path,
        clock: Clock | None = None,
    ) -> None:
        self.project = project
        self.events = events
        self.logs = logs
        self.launcher = JobLauncher(project, store, logs, runtimes, state=str(state))
        self.entries = schedule_entries(project)
        self.clock = clock
        self.ticker = Ticker(self.entries, store, self._fire, clock)
        self.store = store
        self._invocations: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        lost = await self.launcher.recover()
        if lost:
            self.logs.append("shoal", f"scheduler: {lost} job runs were lost by a daemon crash")
        self.ticker.start()

    def apply(self, project: Project) -> None:
        """A new manifest (``shoal apply``): jobs run with their new settings from now on (runs
        in progress finish as they started) and changed schedules take effect at once."""
        self.project = project
        self.launcher.project = project
        entries = schedule_entries(project)
        if entries == self.entries:
            return
        self.ticker.cancel()
        self.entries = entries
        self.ticker = Ticker(entries, self.store, self._fire, self.clock)
        self.ticker.start()
        self.logs.append("shoal", f"scheduler: {len(entries)} schedules after apply")

    async def pause(self) -> None:
        """Shutdown step 2: no more fires; runs in progress are stopped later."""
        await self.ticker.stop()

    async def stop(self) -> None:
        await self.ticker.stop()
        await self.launcher.stop()
        for task in list(self._invocations):
            task.cancel()

    def _fire(self, entry: Entry, at: float, kind: FireKind) -> None:
        if entry.key.startswith("job:"):
            _run, why = self.launcher.trigger(entry.target, kind)
            when = "missed while the daemon was down, " if kind == "missed" else ""
            self.logs.append(entry.target, f"schedule {entry.expression}: {when}{why}")
            return
        if self.events is None:
            return
        rule = f"{self.project.manifest.name}-{entry.key.replace(':', '-')}"
        event = shapes.scheduled_event(rule=rule, event_id=str(uuid.uuid4()), now=at)
        trigger = self.project.manifest.functions[entry.target].triggers[
            int(entry.key.rsplit(":", 1)[1])
        ]
        if trigger.schedule is not None and trigger.schedule.input is not None:
            event["detail"] = trigger.schedule.input
        task = asyncio.create_task(self._invoke(entry.target, event), name=f"schedule:{entry.key}")
        self._invocations.add(task)
        task.add_done_callback(self._invocations.discard)

    async def _invoke(self, function: str, event: dict[str, object]) -> None:
        assert self.events is not None
        try:
            await self.events.invoke_async(function, event)
        except Exception:
            log.exception("schedule of %s: queueing the invocation failed", function)

    # ------------------------------------------------------------------ views

    def jobs(self) -> list[JobRow]:
        rows = []
        for name, job in sorted(self.project.manifest.jobs.items()):
            saved = self.store.get_schedule(f"job:{name}")
            runs = self.store.list_job_runs(name, 1)
            rows.append(
                JobRow(
                    name=name,
                    schedule=job.schedule,
                    concurrency_policy=job.concurrency_policy,
                    next_fire_at=saved.next_fire_at if saved and job.schedule else None,
                    running=sorted(r.id for r in self.launcher.running.values() if r.job == name),
                    last=_run_row(runs[0]) if runs else None,
                )
            )
        return rows

    def rows(self, now: float) -> list[InstanceRow]:
        """Job runs in progress, as ``shoal ps`` rows (kind job, instance = the run's id)."""
        rows = []
        for run in sorted(self.launcher.running.values(), key=lambda r: r.id):
            handle = run.handle
            rows.append(
                InstanceRow(
                    kind="job",
                    name=run.job,
                    instance=run.id,
                    runtime=self.project.manifest.jobs[run.job].runtime,
                    state="running" if handle is not None else "starting",
                    ready=False,
                    pid=handle.pid if handle is not None else None,
                    port=None,
                    restarts=0,
                    uptime=(now - handle.started_at) if handle and handle.started_at else None,
                    reason="replaced, stopping" if run.replaced else "job run",
                )
            )
        return rows

    def job_runs(self, name: str, limit: int) -> list[JobRunRow]:
        return [_run_row(r) for r in self.launcher.history(name, limit)]

    def run_job(self, name: str) -> RunStarted:
        run, why = self.launcher.trigger(name, "manual")
        return RunStarted(job=name, run=run, message=why)

    def metrics(self) -> str:
        lines = [
            "# HELP shoal_job_runs_running Job runs in progress.",
            "# TYPE shoal_job_runs_running gauge",
        ]
        for name in sorted(self.project.manifest.jobs):
            count = sum(1 for r in self.launcher.running.values() if r.job == name)
            lines.append(f'shoal_job_runs_running{{job="{name}"}} {count}')
        lines += [
            "# HELP shoal_schedule_next_fire_timestamp_seconds When each schedule fires next.",
            "# TYPE shoal_schedule_next_fire_timestamp_seconds gauge",
        ]
        for key, at in sorted(self.ticker.next.items()):
            if at is not None:
                lines.append(f'shoal_schedule_next_fire_timestamp_seconds{{schedule="{key}"}} {at}')
        return "\n".join(lines) + "\n"


__all__ = ["Scheduling", "schedule_entries"]
