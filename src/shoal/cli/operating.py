"""``shoal scale``, ``shoal restart``, ``shoal apply``: change what a running daemon runs."""

from __future__ import annotations

import json
from typing import IO

import click

from shoal.cli.client import client_for
from shoal.cli.common import manifest_option, settings_of, short_file_option, stdout
from shoal.errors import ExitCode, UsageError
from shoal.manifest import load_manifest


def parse_scale(pairs: tuple[str, ...]) -> dict[str, int]:
    """``("catalog=3", "orders=0")`` -> ``{"catalog": 3, "orders": 0}``."""
    out: dict[str, int] = {}
    for pair in pairs:
        name, sep, count = pair.partition("=")
        if not sep or not name or not count.isdigit():
            raise UsageError(f"{pair!r}: write NAME=N, e.g. catalog=3")
        out[name] = int(count)
    if not out:
        raise UsageError("give at least one NAME=N, e.g. shoal scale catalog=3")
    return out


@click.command()
@manifest_option
@click.argument("pairs", nargs=-1, metavar="NAME=N...")
@click.pass_context
def scale(ctx: click.Context, file: str | None, pairs: tuple[str, ...]) -> None:
    """Set how many replicas of a service run (other services are not touched)."""
    wanted = parse_scale(pairs)
    client = client_for(file)
    console = stdout(settings_of(ctx))
    for name, count in wanted.items():
        result = client.scale(name, count)
        console.print(f"{result.name}: scaling to {result.replicas}")
        if result.note:
            console.print(f"{result.name}: {result.note}")


@click.command()
@manifest_option
@click.argument("name")
@click.pass_context
def restart(ctx: click.Context, file: str | None, name: str) -> None:
    """Rolling restart of one service: new instances ready before old ones stop."""
    client_for(file).restart(name)
    stdout(settings_of(ctx)).print(f"{name}: rolling restart started (shoal ps to follow)")


@click.command()
@short_file_option
@click.argument("name")
@click.option("--data", default=None, help="The event, as JSON (default: {}).")
@click.option(
    "--file", "event_file", type=click.File("rb"), default=None, help="Read the event from a file."
)
@click.option(
    "--async",
    "is_async",
    is_flag=True,
    help="Queue it (durably) and return: Lambda's Event type, 2 retries, then a dead letter.",
)
@click.pass_context
def invoke(
    ctx: click.Context,
    *,
    file: str | None,
    name: str,
    data: str | None,
    event_file: IO[bytes] | None,
    is_async: bool = False,
) -> None:
    """Invoke a function: print its result (or Lambda's error shape) and the REPORT line."""
    if data is not None and event_file is not None:
        raise UsageError("give --data or --file, not both")
    raw = event_file.read() if event_file is not None else (data or "{}").encode()
    try:
        event = json.loads(raw)
    except ValueError as exc:
        raise UsageError(f"the event is not JSON: {exc}") from None
    if is_async:
        queued = client_for(file).invoke_async(name, event)
        stdout(settings_of(ctx)).print(
            f"{name}: queued (message {queued.ids[0]}); failures: shoal dlq async:{name}"
        )
        return
    result = client_for(file, timeout=None).invoke(name, event)
    click.echo(json.dumps(result.payload, indent=2))
    click.echo(result.report, err=True)
    if not result.ok:
        ctx.exit(ExitCode.FAILURE)


@click.command()
@manifest_option
@click.pass_context
def apply(ctx: click.Context, file: str | None) -> None:
    """Re-read the manifest and roll only what changed."""
    load_manifest(file)  # the problems, with lines, before anything is sent
    result = client_for(file).apply()
    console = stdout(settings_of(ctx))
    if not result.changes:
        console.print("no changes")
    for name, change in result.changes.items():
        console.print(f"{name}: {change}")


__all__ = ["apply", "invoke", "parse_scale", "restart", "scale"]
