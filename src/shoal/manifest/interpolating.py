"""``${VAR}`` interpolation from the environment and a ``.env`` file beside the manifest.

Second step of the loading flow: after reading, before schema validation. Forms, as in Compose:

    ${VAR}          the value of VAR; an error if VAR is unset (shoal never substitutes silently)
    ${VAR:-default} default when VAR is unset or empty      ${VAR-default}  when unset only
    ${VAR:?message} an error with message when unset/empty  ${VAR?message}  when unset only
    $$              a literal $

A ``$`` not followed by ``{`` or ``$`` is kept as written. The process environment wins over
``.env``, as in Compose. Pure functions: the caller reads the files and passes the text in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shoal.manifest.reading import Path

_TOKEN = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<broken>\{[^}]*\}?))"
)
_DOTENV_LINE = re.compile(r"(?:export\s+)?(?P<key>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?P<value>.*)")


@dataclass(frozen=True)
class InterpolationProblem:
    path: Path
    message: str
    hint: str


@dataclass(frozen=True)
class DotenvProblem:
    line: int
    message: str


def parse_dotenv(text: str) -> tuple[dict[str, str], list[DotenvProblem]]:
    """``KEY=value`` lines; ``#`` comments, ``export`` prefixes and quotes are understood."""
    values: dict[str, str] = {}
    problems: list[DotenvProblem] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _DOTENV_LINE.fullmatch(line)
        if match is None:
            problems.append(
                DotenvProblem(number, f"{raw.strip()!r} is not KEY=value (e.g. PORT=8000)")
            )
            continue
        value = match.group("value").strip()
        if value[:1] in ("'", '"'):
            quote = value[0]
            end = value.find(quote, 1)
            if end == -1:
                problems.append(DotenvProblem(number, f"unclosed {quote} quote"))
                continue
            inner = value[1:end]
            if quote == '"':
                inner = inner.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
            value = inner
        else:
            value = re.sub(r"\s+#.*$", "", value)  # an unquoted value ends at " #"
        values[match.group("key")] = value
    return values, problems


def interpolate_text(text: str, env: Mapping[str, str]) -> str:
    """Expand one string; raises ValueError (message, hint) on an unset or malformed variable."""
    if "$" not in text:
        return text

    def expand(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        if match.group("broken") is not None:
            raise ValueError(
                f"{match.group(0)!r} is not a valid variable reference",
                "write ${NAME}, ${NAME:-default} or $$ for a literal $",
            )
        name, op, arg = match.group("name"), match.group("op"), match.group("arg") or ""
        value = env.get(name)
        missing = value is None or (value == "" and op is not None and op.startswith(":"))
        if not missing:
            return value or ""
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            raise ValueError(f"${{{name}}}: {arg or 'required variable is not set'}", "")
        raise ValueError(
            f"${{{name}}} is not set",
            f"set {name} in the environment or in .env beside the manifest, "
            f"or write ${{{name}:-default}}",
        )

    return _TOKEN.sub(expand, text)


def interpolate(
    data: Any, env: Mapping[str, str], path: Path = ()
) -> tuple[Any, list[InterpolationProblem]]:
    """Expand every string value in ``data`` (keys are left as written)."""
    problems: list[InterpolationProblem] = []

    def walk(value: Any, here: Path) -> Any:
        if isinstance(value, str):
            try:
                return interpolate_text(value, env)
            except ValueError as exc:
                message, hint = exc.args
                problems.append(InterpolationProblem(here, message, hint))
                return value
        if isinstance(value, dict):
            return {k: walk(v, (*here, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*here, i)) for i, v in enumerate(value)]
        return value

    return walk(data, path), problems


__all__ = [
    "DotenvProblem",
    "InterpolationProblem",
    "interpolate",
    "interpolate_text",
    "parse_dotenv",
]
