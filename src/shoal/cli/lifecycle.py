"""``shoal up`` and ``shoal down``: run the app here, and stop it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

import click
import uvloop
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from shoal.api.client import Client
from shoal.api.endpoint import discover, read_pid
from shoal.api.models import LogLine
from shoal.cli.client import state_for
from shoal.cli.common import manifest_option, profile_option, settings_of, stdout
from shoal.cli.inspecting import ps_table, render_line
from shoal.daemon import detached
from shoal.daemon.leftovers import stop_leftovers
from shoal.daemon.running import Daemon, run
from shoal.errors import DaemonNotRunning, ExitCode, ShoalError
from shoal.logs import LogRecord, Subscription
from shoal.manifest import load_manifest


@click.command()
@manifest_option
@profile_option
@click.option(
    "-d", "--detach", is_flag=True, help="Run in the background; return once all are ready."
)
@click.option(
    "--wait-timeout",
    type=float,
    default=120.0,
    show_default=True,
    help="With -d: seconds to wait for every service to be ready.",
)
@click.pass_context
def up(ctx: click.Context, file: str | None, detach: bool, wait_timeout: float) -> None:
    """Run the app on this machine (foreground; Ctrl-C stops everything, twice forces)."""
    project = load_manifest(file)
    console = stdout(settings_of(ctx))
    if project.left_out:
        console.print(
            f"left out (their profiles are not active): {', '.join(project.left_out)}; "
            "add --profile NAME to run them"
        )
    if detach:
        outcome = detached.start(project, timeout=wait_timeout, progress=console.print)
        if outcome.failures:
            for name, why in outcome.failures.items():
                console.print(f"[red]{name}[/red]: {why}")
            console.print(
                f"the daemon keeps running (pid {outcome.pid}): `shoal logs NAME`, `shoal ps`, "
                "`shoal down`"
            )
            ctx.exit(ExitCode.UNHEALTHY)
        console.print(f"[green]ready[/green]: {project.manifest.name} (daemon pid {outcome.pid})")
        return
    uvloop.run(_foreground(project_file=str(project.file), console=console))


async def _foreground(project_file: str, console: Console) -> None:
    project = load_manifest(project_file)
    view = _View(console)
    await run(project, on_started=view.attach)
    view.close()


class _View:
    """The live status table, with each instance's output printed above it as it comes."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live: Live | None = None
        self.daemon: Daemon | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.width = 12

    def attach(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.console.print(
            f"[bold]{daemon.project.manifest.name}[/bold]: control API {daemon.url} · "
            "Ctrl-C stops everything (twice forces)"
        )
        if self.console.is_terminal:
            self.live = Live(
                self._render(), console=self.console, auto_refresh=False, transient=True
            )
            self.live.start()
        subscription = daemon.logs.subscribe(None)  # before reading the backlog: no gap
        for record in daemon.logs.read(None):
            self._print(record)
        for coro, name in ((self._follow(subscription), "view:logs"), (self._tick(), "view:tick")):
            task = asyncio.create_task(coro, name=name)
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _render(self) -> Group:
        assert self.daemon is not None
        rows = self.daemon.plane.instances()
        waiting = [f"{n}: {w}" for n, w in sorted(self.daemon.supervisor.waiting.items())]
        return Group(ps_table(rows), *(Text(w, style="yellow") for w in waiting))

    async def _follow(self, subscription: Subscription) -> None:
        async with subscription:
            async for record in subscription:
                self._print(record)
                self._refresh()

    def _print(self, record: LogRecord) -> None:
        self.width = max(self.width, len(record.source))
        line = LogLine(source=record.source, time=record.time, text=record.text)
        self.console.print(render_line(line, self.width), highlight=False)

    async def _tick(self) -> None:
        while True:
            self._refresh()
            await asyncio.sleep(0.5)

    def _refresh(self) -> None:
        if self.live is not None:
            self.live.update(self._render(), refresh=True)

    def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.live is not None:
            self.live.stop()


@click.command()
@manifest_option
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds to wait.")
@click.pass_context
def down(ctx: click.Context, file: str | None, timeout: float) -> None:
    """Stop every instance and the daemon; leaves no process behind."""
    state = state_for(file)
    console = stdout(settings_of(ctx))
    try:
        endpoint = discover(state)
        Client(endpoint).shutdown()
    except DaemonNotRunning:
        stopped = asyncio.run(stop_leftovers(state))
        if stopped:
            console.print(f"no daemon was running; stopped {stopped} leftover instance(s)")
        else:
            console.print("not running")
        return
    pid = endpoint.pid or read_pid(state)
    deadline = time.monotonic() + timeout
    console.print("stopping...")
    while pid is not None and _alive(pid):
        if time.monotonic() > deadline:
            raise ShoalError(f"the daemon (pid {pid}) is still stopping after {timeout:.0f}s")
        time.sleep(0.05)
    console.print("stopped")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
        if f.read().rsplit(")", 1)[-1].split()[0] == "Z":
            return False
    return True


__all__ = ["down", "up"]
