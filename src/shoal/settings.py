"""How shoal behaves, as opposed to what it runs (STYLE.md habit 5).

The manifest says what to run; settings say how shoal itself behaves. One root dataclass of
group dataclasses, every field documented with its unit and default, resolved in one place,
:func:`resolve`, from command-line flags > ``SHOAL_*`` environment variables > defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from shoal.errors import UsageError

LogFormat = Literal["text", "json"]


@dataclass(frozen=True)
class OutputSettings:
    """What the CLI prints."""

    log_format: LogFormat = "text"
    """``text`` for people, ``json`` (one object per line) for machines. Env: SHOAL_LOG_FORMAT."""
    color: bool | None = None
    """Force colour on/off; ``None`` lets the terminal decide (and honours NO_COLOR)."""


@dataclass(frozen=True)
class StateSettings:
    """Where shoal keeps its state."""

    dir_name: str = ".shoal"
    """Folder beside the manifest holding state.db, token, logs. Env: SHOAL_STATE_DIR_NAME."""


@dataclass(frozen=True)
class Settings:
    """The root of all settings."""

    output: OutputSettings = field(default_factory=OutputSettings)
    state: StateSettings = field(default_factory=StateSettings)


_ENV: dict[tuple[str, str], str] = {
    ("output", "log_format"): "SHOAL_LOG_FORMAT",
    ("state", "dir_name"): "SHOAL_STATE_DIR_NAME",
}


def resolve(flags: Mapping[tuple[str, str], Any], environ: Mapping[str, str]) -> Settings:
    """Settings from flags (``{("output", "color"): False}``; None = not given) > env > defaults."""
    settings = Settings()
    for group in fields(settings):
        current = getattr(settings, group.name)
        changes: dict[str, Any] = {}
        for item in fields(current):
            key = (group.name, item.name)
            if flags.get(key) is not None:
                changes[item.name] = flags[key]
            elif key in _ENV and environ.get(_ENV[key]):
                changes[item.name] = environ[_ENV[key]]
        settings = replace(settings, **{group.name: replace(current, **changes)})
    if settings.output.log_format not in ("text", "json"):
        raise UsageError(
            f"log format must be text or json, not {settings.output.log_format!r} "
            "(from --log-format or SHOAL_LOG_FORMAT)"
        )
    return settings


__all__ = ["LogFormat", "OutputSettings", "Settings", "StateSettings", "resolve"]
