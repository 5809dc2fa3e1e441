"""``shoal validate`` and ``shoal schema``: the manifest commands."""

from __future__ import annotations

import json
from collections.abc import Mapping

import click
from rich.table import Table

from shoal.cli.common import manifest_option, profile_option, settings_of, stdout
from shoal.manifest import Manifest, Project, json_schema, load_manifest, markdown_reference
from shoal.manifest.units import format_duration, format_size


@click.command()
@manifest_option
@profile_option
@click.option("-q", "--quiet", is_flag=True, help="Print nothing when the manifest is valid.")
@click.pass_context
def validate(ctx: click.Context, file: str | None, quiet: bool) -> None:
    """Check the manifest and list what it would run; every problem is reported at once.

    Exit code 2 when the manifest has problems, one line each: FILE:LINE:COL: PATH: MESSAGE.
    """
    project = load_manifest(file)
    if quiet:
        return
    settings = settings_of(ctx)
    if settings.output.log_format == "json":
        click.echo(json.dumps({"valid": True, "file": str(project.file), "digest": project.digest}))
        return
    console = stdout(settings)
    m = project.manifest
    console.print(
        f"[green]valid[/green]: {project.file} — app [bold]{m.name}[/bold]: "
        f"{_count(m.services, 'service')}, {_count(m.functions, 'function')}, "
        f"{_count(m.jobs, 'job')}, {_count(m.topics, 'topic')}; "
        f"gateway on {m.gateway.host}:{m.gateway.port}"
    )
    console.print(_plan_table(project))
    if project.left_out:
        console.print(
            f"left out (their profiles are not active): {', '.join(project.left_out)}; "
            "add --profile NAME to include them"
        )


def _count(items: Mapping[str, object], noun: str) -> str:
    return f"{len(items)} {noun}{'s' if len(items) != 1 else ''}"


def _plan_table(project: Project) -> Table:
    """What `shoal up` will run for this manifest, one row per service, function and job."""
    m: Manifest = project.manifest
    table = Table(title="what shoal up runs", title_justify="left", expand=False)
    for column in ("kind", "name", "runtime", "runs", "scale", "reached by"):
        table.add_column(column)
    for name, s in m.services.items():
        runs = " ".join(s.command) if s.command else (s.image or f"build {s.build}")
        scale = (
            f"autoscale {s.autoscale.min}-{s.autoscale.max}"
            if s.autoscale
            else f"{s.replicas} replica(s)"
        )
        reached = ", ".join(r.path for r in s.routes) or "-"
        table.add_row("service", name, s.runtime, runs, scale, reached)
    for name, f in m.functions.items():
        limits = f"{format_size(f.memory)}, {format_duration(f.timeout)}"
        scale = f"{f.min_instances}-{f.max_instances} × {limits}"
        triggers = []
        for t in f.triggers:
            if t.http:
                triggers.append(f"{'/'.join(t.http.methods)} {t.http.path}")
            elif t.schedule:
                triggers.append(t.schedule.expression)
            elif t.event:
                triggers.append(f"topic {t.event.topic}")
        table.add_row(
            "function", name, "function", f.handler, scale, ", ".join(triggers) or "invoke"
        )
    for name, j in m.jobs.items():
        runs = " ".join(j.command) if j.command else (j.image or f"build {j.build}")
        table.add_row("job", name, j.runtime, runs, j.concurrency_policy, j.schedule or "shoal run")
    return table


@click.command()
@click.option("--markdown", is_flag=True, help="The Markdown reference instead of JSON Schema.")
def schema(markdown: bool) -> None:
    """Print the manifest's JSON Schema (for editors), or its Markdown reference."""
    click.echo(markdown_reference() if markdown else json.dumps(json_schema(), indent=2))


__all__ = ["schema", "validate"]
