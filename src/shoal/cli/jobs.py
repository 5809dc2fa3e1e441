"""``shoal jobs`` and ``shoal run``: the jobs of a running daemon, their runs, a run by hand."""

from __future__ import annotations

import json
from datetime import datetime

import click
from rich.table import Table

from shoal.api.models import JobRow, JobRunRow
from shoal.cli.client import client_for
from shoal.cli.common import manifest_option, settings_of, stdout


def _when(moment: float | None) -> str:
    return "-" if moment is None else datetime.fromtimestamp(moment).strftime("%Y-%m-%d %H:%M:%S")


def _result(run: JobRunRow | None) -> str:
    if run is None:
        return "-"
    if run.finished_at is None:
        return "running"
    code = "-" if run.exit_code is None else str(run.exit_code)
    return f"exit {code}: {run.reason or ''}".strip()


def jobs_table(rows: list[JobRow]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for key in ("JOB", "SCHEDULE", "POLICY", "NEXT RUN", "RUNNING", "LAST RUN", "RESULT"):
        table.add_column(key, no_wrap=key != "RESULT")
    for r in rows:
        table.add_row(
            r.name,
            r.schedule or "-",
            r.concurrency_policy,
            _when(r.next_fire_at),
            ", ".join(f"#{i}" for i in r.running) or "-",
            _when(r.last.started_at) if r.last else "-",
            _result(r.last),
        )
    return table


def runs_table(rows: list[JobRunRow]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for key in ("RUN", "TRIGGER", "STARTED", "FINISHED", "EXIT", "REASON"):
        table.add_column(key, no_wrap=key != "REASON")
    for r in rows:
        table.add_row(
            f"#{r.id}",
            r.trigger,
            _when(r.started_at),
            _when(r.finished_at),
            "-" if r.exit_code is None else str(r.exit_code),
            r.reason or ("running" if r.finished_at is None else ""),
        )
    return table


@click.command()
@manifest_option
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@click.option("--limit", default=20, show_default=True, help="Runs shown for one job.")
@click.pass_context
def jobs(ctx: click.Context, file: str | None, name: str | None, as_json: bool, limit: int) -> None:
    """Jobs with their schedule, next and last run; with NAME, the kept history of its runs."""
    client = client_for(file)
    console = stdout(settings_of(ctx))
    if name is None:
        rows = client.jobs()
        if as_json:
            click.echo(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
        else:
            console.print(jobs_table(rows))
        return
    runs = client.job_runs(name, limit)
    if as_json:
        click.echo(json.dumps([r.model_dump(mode="json") for r in runs], indent=2))
    elif not runs:
        console.print(f"{name}: no runs yet (start one with shoal run {name})")
    else:
        console.print(runs_table(runs))


@click.command()
@manifest_option
@click.argument("name")
@click.pass_context
def run(ctx: click.Context, file: str | None, name: str) -> None:
    """Start a run of job NAME now (its concurrency_policy applies)."""
    result = client_for(file).run_job(name)
    stdout(settings_of(ctx)).print(
        f"{name}: run #{result.run} started (shoal jobs {name}, shoal logs {name})"
    )


__all__ = ["jobs", "jobs_table", "run", "runs_table"]
