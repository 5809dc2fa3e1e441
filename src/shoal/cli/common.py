"""What every command shares: the ``-f FILE`` option, the consoles, the settings object."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console

from shoal.cli.options import FILE_HELP, FILE_KEY
from shoal.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])


def _file_fallback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A command's own ``-f`` wins; else the root's (``shoal -f FILE ps``, as Compose has it)."""
    if value is not None:
        return value
    root = ctx.find_root().meta.get(FILE_KEY)
    return root if isinstance(root, str) else None


def _manifest_option(*names: str, help_extra: str = "") -> Callable[[F], F]:
    """The manifest option under ``names``, as parameter ``file``, falling back to the root's."""
    return click.option(
        *names,
        "file",
        type=click.Path(dir_okay=True, path_type=str),
        default=None,
        callback=_file_fallback,
        help=FILE_HELP + help_extra,
    )


def manifest_option(func: F) -> F:
    """``-f/--file FILE``: the manifest; default ./shoal.yaml, then ./shoal.yml."""
    return _manifest_option("-f", "--file")(func)


def profile_option(func: F) -> F:
    """``--profile NAME`` (repeatable): also run the services of these profiles (``*``: all).

    The choice is put in ``SHOAL_PROFILES`` for the rest of the process, so a detached daemon
    and its later ``apply`` reloads keep the same set."""

    def remember(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> None:
        if value:
            os.environ["SHOAL_PROFILES"] = ",".join(value)

    return click.option(
        "--profile",
        "profiles",
        multiple=True,
        metavar="NAME",
        expose_value=False,
        is_eager=True,
        callback=remember,
        help="Also run services of this profile (repeatable; * for all; env SHOAL_PROFILES).",
    )(func)


def file_only_option(func: F) -> F:
    """``--file FILE`` without the short form (for ``shoal logs``, where ``-f`` follows)."""
    return _manifest_option("--file", help_extra=" (Here -f means --follow, as in docker logs.)")(
        func
    )


def short_file_option(func: F) -> F:
    """``-f FILE`` (long form ``--manifest``) for commands whose ``--file`` is their input
    (``shoal invoke NAME --file event.json``, ``shoal publish``)."""
    return _manifest_option("-f", "--manifest", help_extra=" (Here --file is the event.)")(func)


def settings_of(ctx: click.Context) -> Settings:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Settings) else Settings()


def _console(settings: Settings, *, to_stderr: bool) -> Console:
    return Console(
        stderr=to_stderr,
        no_color=settings.output.color is False or "NO_COLOR" in os.environ,
        force_terminal=settings.output.color or None,
        highlight=False,
        soft_wrap=True,
    )


def stdout(settings: Settings) -> Console:
    return _console(settings, to_stderr=False)


def stderr(settings: Settings) -> Console:
    return _console(settings, to_stderr=True)


__all__ = ["FILE_KEY", "file_only_option", "manifest_option", "settings_of", "stderr", "stdout"]
