"""The root ``shoal`` command: global options, the command groups, and errors -> exit codes.

Library code raises :class:`~shoal.errors.ShoalError`; only :func:`main` turns errors into a
short message and a named exit code (:class:`~shoal.errors.ExitCode`).
"""

from __future__ import annotations

import importlib
import json
import os
import sys

import click

from shoal import __version__
from shoal.cli.options import FILE_HELP, FILE_KEY
from shoal.errors import ExitCode, ManifestError, ShoalError
from shoal.settings import Settings, resolve

COMMANDS: dict[str, str] = {
    "validate": "shoal.cli.manifest:validate",
    "schema": "shoal.cli.manifest:schema",
    "init": "shoal.cli.init:init",
    "up": "shoal.cli.lifecycle:up",
    "down": "shoal.cli.lifecycle:down",
    "ps": "shoal.cli.inspecting:ps",
    "logs": "shoal.cli.inspecting:logs",
    "scale": "shoal.cli.operating:scale",
    "restart": "shoal.cli.operating:restart",
    "apply": "shoal.cli.operating:apply",
    "invoke": "shoal.cli.operating:invoke",
    "export": "shoal.cli.export:export_command",
    "deploy": "shoal.cli.deploy:deploy",
    "publish": "shoal.cli.eventing:publish",
    "topics": "shoal.cli.eventing:topics",
    "dlq": "shoal.cli.eventing:dlq",
    "jobs": "shoal.cli.jobs:jobs",
    "run": "shoal.cli.jobs:run",
    "images": "shoal.cli.images:images",
    "build": "shoal.cli.build:build",
}
"""Every command, imported only when called: `shoal --version` loads no pydantic or aiohttp."""


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(
    __version__, "-V", "--version", prog_name="shoal", message="%(prog)s %(version)s"
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="Messages for people (text) or machines (json). Env: SHOAL_LOG_FORMAT.",
)
@click.option(
    "--color/--no-color", default=None, help="Force colour on or off (NO_COLOR is honoured)."
)
@click.option("-f", "--file", "file", default=None, help=FILE_HELP)
@click.pass_context
def cli(ctx: click.Context, log_format: str | None, color: bool | None, file: str | None) -> None:
    """shoal: describe your services once; run them here, deploy them anywhere."""
    ctx.obj = resolve(
        {("output", "log_format"): log_format, ("output", "color"): color}, os.environ
    )
    ctx.meta[FILE_KEY] = file


def _report(error: ShoalError, settings: Settings) -> None:
    """Print an error the way the settings ask: one line per problem, or one JSON object."""
    if settings.output.log_format == "json":
        body: dict[str, object] = {"error": type(error).__name__, "message": str(error)}
        if isinstance(error, ManifestError):
            body["problems"] = [
                {
                    "file": p.file,
                    "line": p.line,
                    "column": p.column,
                    "path": p.path,
                    "message": p.message,
                    "hint": p.hint,
                }
                for p in error.problems
            ]
        print(json.dumps(body), file=sys.stderr)
        return
    from shoal.cli.common import stderr  # noqa: PLC0415 - rich only when there is an error

    console = stderr(settings)
    if isinstance(error, ManifestError):
        for problem in error.problems:
            console.print(problem.render(), markup=False)
        count = len(error.problems)
        console.print(f"[red]{count} problem{'s' if count != 1 else ''}[/red] in the manifest")
    else:
        console.print(f"[red]error:[/red] {error}", markup=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script and of ``python -m shoal``."""
    ctx: click.Context | None = None
    try:
        ctx = cli.make_context("shoal", list(sys.argv[1:] if argv is None else argv))
        with ctx:
            cli.invoke(ctx)
    except click.exceptions.Exit as exc:  # --help, --version
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        exc.show()
        sys.exit(ExitCode.USAGE)
    except click.Abort:
        sys.exit(ExitCode.INTERRUPTED)
    except KeyboardInterrupt:
        sys.exit(ExitCode.INTERRUPTED)
    except ShoalError as exc:
        settings = ctx.obj if ctx is not None and isinstance(ctx.obj, Settings) else Settings()
        _report(exc, settings)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(ExitCode.FAILURE)
    sys.exit(ExitCode.OK)


__all__ = ["cli", "main"]
