"""``shoal ps`` and ``shoal logs``: what runs, and what it says."""

from __future__ import annotations

import json
import time
import zlib
from datetime import datetime

import click
from rich.table import Table

from shoal.api.models import InstanceRow, LogLine
from shoal.cli.client import client_for
from shoal.cli.common import file_only_option, manifest_option, settings_of, stdout
from shoal.errors import UsageError
from shoal.manifest.units import parse_duration

PS_KEYS = (
    "kind",
    "name",
    "instance",
    "runtime",
    "state",
    "ready",
    "pid",
    "port",
    "restarts",
    "uptime",
)
_COLOURS = (
    "cyan",
    "magenta",
    "green",
    "yellow",
    "blue",
    "bright_cyan",
    "bright_magenta",
    "bright_green",
)


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    return f"{seconds // 3600:.0f}h{(seconds % 3600) // 60:02.0f}m"


def ps_table(rows: list[InstanceRow]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for key in (*PS_KEYS, "reason"):
        table.add_column(key.upper(), no_wrap=key != "reason")
    for r in rows:
        state = {"running": "green", "fatal": "red", "backoff": "yellow"}.get(r.state)
        table.add_row(
            r.kind,
            r.name,
            str(r.instance),
            r.runtime,
            f"[{state}]{r.state}[/{state}]" if state else r.state,
            "yes" if r.ready else "no",
            str(r.pid or "-"),
            str(r.port or "-"),
            str(r.restarts),
            _uptime(r.uptime),
            r.reason or "",
        )
    return table


@click.command()
@manifest_option
@click.option(
    "--json", "as_json", is_flag=True, help="A stable JSON list, one object per instance."
)
@click.pass_context
def ps(ctx: click.Context, file: str | None, as_json: bool) -> None:
    """List every instance: kind, name, instance, state, ready, pid, port, restarts, uptime."""
    rows = client_for(file).instances()
    if as_json:
        click.echo(
            json.dumps([{k: getattr(r, k) for k in (*PS_KEYS, "reason")} for r in rows], indent=2)
        )
        return
    console = stdout(settings_of(ctx))
    if not rows:
        console.print("no instances")
        return
    console.print(ps_table(rows))


def colour_of(source: str) -> str:
    return _COLOURS[zlib.crc32(source.encode()) % len(_COLOURS)]


def render_line(line: LogLine, width: int) -> str:
    stamp = datetime.fromtimestamp(line.time).strftime("%H:%M:%S.%f")[:-3]
    return f"[{colour_of(line.source)}]{line.source:<{width}} |[/] [dim]{stamp}[/] {line.text}"


@click.command()
@file_only_option
@click.argument("names", nargs=-1)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("--since", default=None, help="Only lines newer than this: 5m, 1h30m, 10s.")
@click.option("--tail", type=int, default=None, help="Only the last N lines (before following).")
@click.pass_context
def logs(
    ctx: click.Context,
    *,
    file: str | None,
    names: tuple[str, ...],
    follow: bool,
    since: str | None,
    tail: int | None,
) -> None:
    """Print the output of NAMES (a service, or one instance like catalog#2; default: all)."""
    try:
        since_at = time.time() - parse_duration(since) if since else None
    except ValueError as exc:
        raise UsageError(f"--since: {exc}") from None
    console = stdout(settings_of(ctx))
    client = client_for(file, timeout=None if follow else 30.0)
    width = max((len(n) for n in names), default=12)
    try:
        for line in client.logs(list(names) or None, since=since_at, tail=tail, follow=follow):
            width = max(width, len(line.source))
            console.print(render_line(line, width), markup=True, highlight=False)
    except KeyboardInterrupt:
        return


__all__ = ["logs", "ps", "ps_table", "render_line"]
