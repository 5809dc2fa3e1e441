"""``shoal init [DIR]``: scaffold a small working app."""

from __future__ import annotations

from pathlib import Path

import click

from shoal.cli.common import settings_of, stdout
from shoal.manifest.scaffolding import scaffold


@click.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
def init(ctx: click.Context, directory: Path) -> None:
    """Create a small working app (one service, one function) in DIRECTORY (default: here)."""
    written = scaffold(directory)
    console = stdout(settings_of(ctx))
    for path in written:
        console.print(f"  created {path}")
    console.print(
        f"[green]ready[/green]: cd {directory} && shoal validate  (it lists what shoal will run)"
    )


__all__ = ["init"]
