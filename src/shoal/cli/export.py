"""``shoal export``: the manifest as another engine's documents, and what that engine cannot
express (printed as a table, never dropped silently)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.table import Table

from shoal.cli.common import manifest_option, settings_of, stderr, stdout
from shoal.errors import UsageError
from shoal.exporters.documents import Export, Gap, render
from shoal.exporters.targets import TARGETS, export
from shoal.manifest import load_manifest


def gap_table(result: Export) -> Table:
    table = Table(
        title=f"what {result.target} cannot express ({len(result.gaps)})",
        title_justify="left",
    )
    table.add_column("setting", no_wrap=True)
    for column in ("value", "why", "instead"):
        table.add_column(column, overflow="fold")
    for gap in result.gaps:
        table.add_row(gap.path, gap.value, gap.why, gap.instead or "-")
    return table


def _gap_json(gap: Gap) -> dict[str, str]:
    return {"path": gap.path, "value": gap.value, "why": gap.why, "instead": gap.instead}


def write_documents(result: Export, folder: Path) -> list[Path]:
    """Write every document under ``folder`` (made if missing); the paths written."""
    written = []
    for doc in result.documents:
        path = folder / doc.name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render(doc))
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror}") from exc
        written.append(path)
    return written


@click.command("export")
@manifest_option
@click.option(
    "-t",
    "--target",
    type=click.Choice(sorted(TARGETS)),
    required=True,
    help="k8s (Kubernetes + Knative), swarm, sam (AWS), vm (cloud-init, systemd, Packer).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write the files into this folder (default: print them, the gaps to stderr).",
)
@click.option(
    "--ingress/--httproute",
    "ingress",
    default=True,
    help="k8s: routes as an Ingress (default) or a Gateway API HTTPRoute.",
)
@click.option(
    "--services",
    type=click.Choice(["report", "fargate"]),
    default="report",
    help="sam: services as ECS Fargate resources, or only reported (default).",
)
@click.option("--tag", default="latest", show_default=True, help="Tag of the images shoal builds.")
@click.pass_context
def export_command(
    ctx: click.Context,
    *,
    file: str | None,
    target: str,
    output: Path | None,
    ingress: bool,
    services: str,
    tag: str,
) -> None:
    """Write the manifest as TARGET's documents and list what TARGET cannot express.

    Every setting is either mapped or listed in the table of gaps, with what was done instead.
    """
    project = load_manifest(file)
    result = export(
        project.manifest,
        next(t for t in TARGETS if t == target),
        routing="ingress" if ingress else "httproute",
        services="fargate" if services == "fargate" else "report",
        tag=tag,
    )
    settings = settings_of(ctx)
    as_json = settings.output.log_format == "json"
    if output is None:
        for doc in result.documents:
            text = render(doc)
            click.echo(f"# --- {doc.name}")
            click.echo(text, nl=not text.endswith("\n"))
    else:
        written = write_documents(result, output)
        if not as_json:
            stdout(settings).print(f"wrote {len(written)} files to {output}")
    if as_json:
        body = {
            "target": result.target,
            "files": [d.name for d in result.documents],
            "gaps": [_gap_json(g) for g in result.gaps],
        }
        print(json.dumps(body), file=sys.stderr if output is None else sys.stdout)
        return
    console = stderr(settings) if output is None else stdout(settings)
    console.print(gap_table(result))


__all__ = ["export_command", "gap_table", "write_documents"]
