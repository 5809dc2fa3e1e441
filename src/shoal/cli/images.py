"""``shoal images``: the container images shoal makes on this machine.

``shoal images bootstrap`` builds the Debian + Python base image without a registry (once:
cached by the recipe's hash); ``shoal images ls`` lists the ``shoal/...`` images. Thin over
:mod:`shoal.runtimes.container`; the Docker SDK is imported only when a command runs.
"""

from __future__ import annotations

import importlib
import json
from types import ModuleType

import click
from rich.table import Table

from shoal.cli.common import settings_of, stderr, stdout
from shoal.errors import RuntimeNotAvailable


def _container_package() -> ModuleType:
    """The container package, or the missing-extra error (the SDK is optional)."""
    try:
        package = importlib.import_module("shoal.runtimes.container")
    except ModuleNotFoundError as exc:
        raise RuntimeNotAvailable(
            "container", f"its dependency {exc.name!r} is not installed", extra="docker"
        ) from exc
    return package


@click.group()
def images() -> None:
    """Container images made here (no registry needed)."""


@images.command()
@click.option("--suite", default="bookworm", show_default=True, help="Debian release to use.")
@click.option("--mirror", default=None, help="Debian mirror URL (default: apt's own choice).")
@click.pass_context
def bootstrap(ctx: click.Context, suite: str, mirror: str | None) -> None:
    """Build the Debian + Python base image (mmdebstrap | docker import), once.

    Tags it shoal/python:<recipe hash> and shoal/python:<suite>; a Dockerfile says
    FROM shoal/python:bookworm.
    """
    settings = settings_of(ctx)
    err = stderr(settings)
    package = _container_package()
    tag = package.bootstrap_base(
        lambda line: err.print(line, markup=False), suite=suite, mirror=mirror
    )
    stdout(settings).print(tag, markup=False)


@images.command(name="ls")
@click.pass_context
def list_command(ctx: click.Context) -> None:
    """List the shoal/... images on the Docker Engine."""
    settings = settings_of(ctx)
    rows = _container_package().list_images()
    out = stdout(settings)
    if settings.output.log_format == "json":
        out.print(json.dumps([row.__dict__ for row in rows]), markup=False)
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("TAG", "ID", "SIZE"):
        table.add_column(column)
    for row in rows:
        table.add_row(row.tag, row.id, f"{row.size / 1e6:.1f} MB")
    out.print(table)


__all__ = ["images"]
