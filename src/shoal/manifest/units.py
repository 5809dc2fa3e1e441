"""Human-readable durations and sizes, the two value types every manifest setting leans on.

``parse_duration("1m30s") == 90.0`` (seconds, a float) and ``parse_size("128M") == 134217728``
(bytes, an int). Sizes are binary throughout, as Docker and AWS Lambda read them: ``M`` and
``Mi`` both mean 2**20 bytes. Both parsers raise :class:`ValueError` with a message that quotes
the value and states the expected form; the schema turns that into a located problem.

Pure functions, no I/O: the manifest loader and the exporters both use them.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_DURATION_UNITS: dict[str, float] = {
    "d": 86400.0,
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|d|h|m|s)")
_DURATION_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|us|µs|d|h|m|s))+")
DURATION_PATTERN = r"^(0|([0-9]+(\.[0-9]+)?(ms|us|µs|d|h|m|s))+)$"

_SIZE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kb": 1 << 10,
    "ki": 1 << 10,
    "kib": 1 << 10,
    "m": 1 << 20,
    "mb": 1 << 20,
    "mi": 1 << 20,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gb": 1 << 30,
    "gi": 1 << 30,
    "gib": 1 << 30,
    "t": 1 << 40,
    "tb": 1 << 40,
    "ti": 1 << 40,
    "tib": 1 << 40,
}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([a-zA-Z]*)")
SIZE_PATTERN = r"^[0-9]+(\.[0-9]+)?\s*([KMGTkmgt]([iI]?[bB]?)?|[bB])?$"


def parse_duration(value: object) -> float:
    """Seconds in ``value``: ``"100ms"``, ``"1m30s"``, ``"1.5h"``, ``"7d"`` or ``0``."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration; write it like 500ms, 30s, 1m30s or 7d")
    if isinstance(value, int | float):
        if value == 0:
            return 0.0
        raise ValueError(
            f"{value!r} has no unit; write {value}s for seconds or {value}ms for milliseconds"
        )
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like 30s, got {type(value).__name__}")
    text = value.strip()
    if text == "0":
        return 0.0
    if not _DURATION_WHOLE.fullmatch(text):
        raise ValueError(f"{value!r} is not a duration; write it like 500ms, 30s, 1m30s or 7d")
    total = sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(text))
    if not math.isfinite(total):
        raise ValueError(f"{value!r} is too large a duration")
    return total


def format_duration(seconds: float) -> str:
    """The shortest readable form: ``90.0 -> "1m30s"``, ``0.1 -> "100ms"``, ``0 -> "0s"``."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        ms = seconds * 1000
        return f"{ms:g}ms" if ms >= 1 else f"{seconds * 1e6:g}us"
    parts: list[str] = []
    rest = seconds
    for unit in ("d", "h", "m"):
        size = _DURATION_UNITS[unit]
        whole = int(rest // size)
        if whole:
            parts.append(f"{whole}{unit}")
            rest -= whole * size
    if rest > 1e-9 or not parts:
        parts.append(f"{round(rest, 6):g}s")
    return "".join(parts)


def parse_size(value: object) -> int:
    """Bytes in ``value``: ``"128M"``, ``"1Gi"``, ``"512k"``, ``"6MB"`` or a plain byte count."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size; write it like 128M or 1Gi")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} is negative; a size is 0 or more bytes")
        return value
    if isinstance(value, float):
        raise ValueError(f"{value!r} is not a size; write it like 128M or 1Gi")
    if not isinstance(value, str):
        raise ValueError(f"expected a size like 128M, got {type(value).__name__}")
    match = _SIZE.fullmatch(value.strip())
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError(
            f"{value!r} is not a size; write it like 512K, 128M or 1Gi "
            "(binary units: M and Mi both mean 2**20 bytes)"
        )
    number = float(match.group(1))
    if _SIZE_UNITS[unit] == 1 and not number.is_integer():
        raise ValueError(f"{value!r} is not a size: bytes are whole; write it like 128M or 1Gi")
    total = number * _SIZE_UNITS[unit]
    if not math.isfinite(total) or total > 2**63 - 1:
        raise ValueError(f"{value!r} is too large a size")
    return int(total)


def format_size(size: int) -> str:
    """``134217728 -> "128Mi"``; exact where it can be, in the largest whole unit."""
    for unit, factor in (("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def _validate_duration(value: Any) -> float:
    return parse_duration(value)


def _validate_size(value: Any) -> int:
    return parse_size(value)


Duration = Annotated[
    float,
    BeforeValidator(_validate_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": DURATION_PATTERN,
            "x-shoal-type": "duration",
            "description": "A duration: 500ms, 30s, 1m30s, 2h, 7d.",
        }
    ),
]
"""A duration in the manifest; the Python value is in seconds."""

Size = Annotated[
    int,
    BeforeValidator(_validate_size),
    PlainSerializer(format_size, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": SIZE_PATTERN},
                {"type": "integer", "minimum": 0},
            ],
            "description": "A size in binary units: 512K, 128M (= 128Mi), 1Gi, or bytes.",
            "x-shoal-type": "size",
        }
    ),
]
"""A size in the manifest; the Python value is in bytes."""

__all__ = [
    "Duration",
    "Size",
    "format_duration",
    "format_size",
    "parse_duration",
    "parse_size",
]
