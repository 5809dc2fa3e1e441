"""``shoal publish``, ``shoal topics``, ``shoal dlq``: the event bus of a running daemon."""

from __future__ import annotations

import json
from datetime import datetime
from typing import IO, Any

import click
from rich.table import Table

from shoal.api.models import DeadLetter, TopicRow
from shoal.cli.client import client_for
from shoal.cli.common import manifest_option, settings_of, short_file_option, stdout
from shoal.errors import UsageError


def read_event(data: str | None, event_file: IO[bytes] | None) -> Any:
    """The event of ``--data`` or ``--file`` (default ``{}``), parsed as JSON."""
    if data is not None and event_file is not None:
        raise UsageError("give --data or --file, not both")
    raw = event_file.read() if event_file is not None else (data or "{}").encode()
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise UsageError(f"the event is not JSON: {exc}") from None


@click.command()
@short_file_option
@click.argument("topic")
@click.option("--data", default=None, help="The event, as JSON (default: {}).")
@click.option(
    "--file", "event_file", type=click.File("rb"), default=None, help="Read the event from a file."
)
@click.option("--batch", is_flag=True, help="The JSON is an array of events: one transaction.")
@click.pass_context
def publish(
    ctx: click.Context,
    *,
    file: str | None,
    topic: str,
    data: str | None,
    event_file: IO[bytes] | None,
    batch: bool = False,
) -> None:
    """Publish an event on TOPIC; returns once it is durable (delivered at least once)."""
    event = read_event(data, event_file)
    if batch:
        if not isinstance(event, list):
            raise UsageError("--batch takes a JSON array of events")
        result = client_for(file).publish_batch(topic, event)
    else:
        result = client_for(file).publish(topic, event)
    ids = ", ".join(str(i) for i in result.ids)
    stdout(settings_of(ctx)).print(f"{topic}: published (message {ids})")


def _age(seconds: float) -> str:
    return "-" if seconds <= 0 else f"{seconds:.1f}s"


def topics_table(rows: list[TopicRow]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for key in ("TOPIC", "SUBSCRIBERS", "DEPTH", "IN FLIGHT", "LAG", "DEAD LETTERS"):
        table.add_column(key, no_wrap=True)
    for r in rows:
        dead = f"[red]{r.dead_letters}[/red]" if r.dead_letters else "0"
        table.add_row(
            r.name,
            ", ".join(r.subscribers) or "-",
            str(r.depth),
            str(r.leased),
            _age(r.lag),
            dead,
        )
    return table


@click.command()
@manifest_option
@click.option("--json", "as_json", is_flag=True, help="A JSON list, one object per topic.")
@click.pass_context
def topics(ctx: click.Context, file: str | None, as_json: bool) -> None:
    """Topics: subscribers, messages waiting, delivery lag, dead letters."""
    rows = client_for(file).topics()
    if as_json:
        click.echo(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
        return
    stdout(settings_of(ctx)).print(topics_table(rows))


def _dead_table(rows: list[DeadLetter]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for key in ("ID", "SINCE", "HELD IN", "ERROR", "PAYLOAD"):
        table.add_column(key, no_wrap=key in ("ID", "SINCE", "HELD IN"))
    for r in rows:
        since = datetime.fromtimestamp(r.created_at).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(str(r.id), since, r.queue, r.error, json.dumps(r.payload)[:200])
    return table


@click.command()
@manifest_option
@click.argument("words", nargs=-1, required=True, metavar="TOPIC | redrive TOPIC")
@click.option("--json", "as_json", is_flag=True, help="A JSON list of the dead letters.")
@click.pass_context
def dlq(ctx: click.Context, file: str | None, words: tuple[str, ...], as_json: bool) -> None:
    """List the dead letters of TOPIC (messages that failed every retry, with the error), or
    send them back to it with `shoal dlq redrive TOPIC`."""
    console = stdout(settings_of(ctx))
    if words[0] == "redrive":
        if len(words) != 2:
            raise UsageError("write shoal dlq redrive TOPIC")
        result = client_for(file).redrive(words[1])
        console.print(f"{result.topic}: {result.count} dead letters sent back")
        return
    if len(words) != 1:
        raise UsageError("write shoal dlq TOPIC, or shoal dlq redrive TOPIC")
    rows = client_for(file).dead_letters(words[0])
    if as_json:
        click.echo(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
    elif not rows:
        console.print(f"{words[0]}: no dead letters")
    else:
        console.print(_dead_table(rows))


__all__ = ["dlq", "publish", "read_event", "topics", "topics_table"]
