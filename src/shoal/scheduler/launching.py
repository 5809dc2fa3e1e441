"""Job runs: start a job's command as a one-off instance, watch it, keep its history.

    trigger(job, kind) ─▶ jobs.on_due(policy, running) ─▶ (stop replaced runs) ─▶ start_job_run
       ─▶ runtime.start(spec) ─▶ wait, at most ``timeout`` (then stop) ─▶ finish_job_run
       ─▶ retry a failure up to ``retries`` ─▶ trim the history to ``history`` runs

Any runtime runs a job (``runtime:`` of the job, through the daemon's runtime registry). A run's
output goes to the log store as ``JOB#RUN`` (``shoal logs JOB`` shows every run). Each run is
a named task kept in :attr:`JobLauncher.running`; :meth:`stop` stops them all (shutdown).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from shoal.errors import ShoalError, UnknownName
from shoal.logs import LogStore
from shoal.manifest import Job, Project
from shoal.runtimes.base import Handle, InstanceSpec, Limits, Runtime
from shoal.scheduler.jobs import on_due, run_outcome, should_retry
from shoal.store import JobRun, JobTrigger, Store

log = logging.getLogger(__name__)


@dataclass
class Run:
    """A run in progress."""

    id: int
    job: str
    task: asyncio.Task[None] | None = None
    handle: Handle | None = None
    replaced: bool = False


class JobLauncher:
    """Starts and watches the runs of the manifest's jobs."""

    def __init__(
        self,
        project: Project,
        store: Store,
        logs: LogStore,
        runtimes: Callable[[str], Runtime],
        *,
        state: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.project = project
        self.store = store
        self.logs = logs
        self.runtimes = runtimes
        self.state = state
        self.clock = clock
        self.running: dict[int, Run] = {}
        self.skipped = 0

    def job(self, name: str) -> Job:
        job = self.project.manifest.jobs.get(name)
        if job is None:
            known = ", ".join(sorted(self.project.manifest.jobs)) or "none"
            raise UnknownName(f"no job named {name!r} (jobs: {known})")
        return job

    async def recover(self) -> int:
        """Runs a previous daemon started and never finished (it was killed): stop what is left
        of them (their processes carry SHOAL_STATE, SHOAL_JOB, SHOAL_RUN) and record them as
        lost. The count."""
        lost = self.store.unfinished_job_runs()
        for run in lost:
            reason = "lost: the daemon stopped while it ran"
            job = self.project.manifest.jobs.get(run.job)
            sweep = getattr(self.runtimes(job.runtime), "sweep", None) if job else None
            if sweep is not None and self.state is not None:
                match = {"SHOAL_STATE": self.state, "SHOAL_JOB": run.job, "SHOAL_RUN": str(run.id)}
                killed = await sweep(match)
                if killed:
                    reason += f"; its process {', '.join(map(str, killed))} was killed"
            self.logs.append(run.job, f"run {run.id}: {reason}")
            self.store.finish_job_run(run.id, None, reason, self.clock())
        return len(lost)

    def trigger(self, name: str, kind: JobTrigger) -> tuple[int | None, str]:
        """A run of ``name`` is due: start it if the policy lets it; (run id or None, why)."""
        job = self.job(name)
        running = sorted(r.id for r in self.running.values() if r.job == name and not r.replaced)
        due = on_due(job.concurrency_policy, running)
        if not due.start:
            self.skipped += 1
            self.logs.append(name, due.reason)
            return None, due.reason
        for run_id in due.stop:
            self.running[run_id].replaced = True
            task = self.running[run_id].task
            if task is not None:
                task.cancel()
        run_id = self.store.start_job_run(name, kind, self.clock())
        run = Run(run_id, name)
        self.running[run_id] = run
        run.task = asyncio.create_task(self._running(run, job, 1), name=f"job:{name}#{run_id}")
        run.task.add_done_callback(lambda task: self._ended(run, task))
        return run_id, "started"

    def _spec(self, run: Run, job: Job) -> InstanceSpec:
        env = {**job.env, "SHOAL_APP": self.project.manifest.name, "SHOAL_JOB": run.job}
        env["SHOAL_RUN"] = str(run.id)
        if self.state is not None:
            env["SHOAL_STATE"] = self.state
        label = f"{run.job}#{run.id}"
        return InstanceSpec(
            app=self.project.manifest.name,
            kind="job",
            name=run.job,
            ordinal=run.id,
            revision=f"run-{run.id}",
            command=tuple(job.command) if job.command else None,
            env=env,
            workdir=self.project.resolve(job.workdir) if job.workdir else self.project.root,
            limits=Limits(cpus=job.resources.cpus, memory_bytes=job.resources.memory),
            log_path=self.logs.raw_path(label),
            image=job.image,
            build=self.project.resolve(job.build) if job.build else None,
        )

    async def _running(self, run: Run, job: Job, attempt: int) -> None:
        label = f"{run.job}#{run.id}"
        runtime = self.runtimes(job.runtime)
        spec = self._spec(run, job)
        self.logs.register(label, spec.log_path)
        timed_out = False
        try:
            try:
                run.handle = await runtime.start(spec)
            except ShoalError as exc:
                self.logs.append(label, f"could not start: {exc}")
                self._finish(run, None, f"could not start: {exc}")
                return
            self.logs.append(label, f"run {run.id} started (pid {run.handle.pid})")
            try:
                exit_ = await asyncio.wait_for(runtime.wait(run.handle), job.timeout)
            except TimeoutError:
                timed_out = True
                exit_ = await runtime.stop(run.handle, 5.0)
            except asyncio.CancelledError:  # replaced, or the daemon is stopping
                await asyncio.shield(runtime.stop(run.handle, 5.0))
                reason = "replaced by a newer run (replace)" if run.replaced else "stopped"
                self._finish(run, None, reason)
                raise
        finally:
            self.logs.unregister(label)
        outcome = run_outcome(exit_.code, exit_.reason, timed_out=timed_out, timeout_s=job.timeout)
        self.logs.append(label, outcome.reason)
        self._finish(run, outcome.exit_code, outcome.reason)
        if should_retry(outcome, attempt, job.retries):
            retry_id = self.store.start_job_run(run.job, "manual", self.clock())
            self.logs.append(run.job, f"retrying as run {retry_id} ({attempt}/{job.retries})")
            again = Run(retry_id, run.job)
            self.running[retry_id] = again
            again.task = asyncio.create_task(
                self._running(again, job, attempt + 1), name=f"job:{run.job}#{retry_id}"
            )
            again.task.add_done_callback(lambda task: self._ended(again, task))

    def _finish(self, run: Run, exit_code: int | None, reason: str) -> None:
        try:
            self.store.finish_job_run(run.id, exit_code, reason, self.clock())
            self.store.trim_job_runs(run.job, self.job(run.job).history)
        except ShoalError as exc:
            log.warning("job run %s#%d: %s", run.job, run.id, exc)

    def _ended(self, run: Run, task: asyncio.Task[None]) -> None:
        self.running.pop(run.id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("job run %s#%d failed: %r", run.job, run.id, task.exception())

    def history(self, name: str, limit: int = 20) -> list[JobRun]:
        self.job(name)
        return self.store.list_job_runs(name, limit)

    async def stop(self) -> None:
        """Stop every run (shutdown): each is recorded as stopped."""
        tasks = [r.task for r in self.running.values() if r.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("stopping a job run")


__all__ = ["JobLauncher", "Run"]
