"""thumbnail: an AWS Lambda handler that sizes image thumbnails, run by shoal as a function.

Triggered by ``POST /thumbnail`` through the gateway, it receives an API Gateway HTTP API event
(payload format 2.0). The request is JSON ``{"width": W, "height": H, "max": N}`` in the body
(base64-encoded when ``isBase64Encoded`` is true) or the same names in the query string; ``max``
defaults to 128. The answer is the thumbnail size that fits in N x N with the aspect ratio kept
(never enlarged), and the plan a resizer would follow to get there: a box reduction by a power
of two, then a Lanczos-3 filter whose taps come from a precomputed kernel table.

The module-level code is the function's init phase: it precomputes the Lanczos kernel once per
process, and every response reports how long that took (``init_ms``) and whether this was the
first, cold, invocation of the process.
"""

import base64
import binascii
import json
import math
import time
from typing import Any
from urllib.parse import parse_qsl

# ---------------------------------------------------------------- init phase

_init_started = time.perf_counter()

LANCZOS_A = 3  # lobes: the kernel is non-zero on (-3, 3)
TABLE_STEPS = 4096  # samples per unit of distance
MAX_SIDE = 100_000  # pixels, for the source and for max
DEFAULT_MAX = 128


def _lanczos(x: float) -> float:
    if x == 0:
        return 1.0
    if abs(x) >= LANCZOS_A:
        return 0.0
    px = math.pi * x
    return LANCZOS_A * math.sin(px) * math.sin(px / LANCZOS_A) / (px * px)


KERNEL = tuple(_lanczos(step / TABLE_STEPS) for step in range(LANCZOS_A * TABLE_STEPS + 1))
INIT_MS = round((time.perf_counter() - _init_started) * 1000, 3)
_invocations = 0  # per process: the first one is the cold start


# ---------------------------------------------------------------- the work


def filter_weights(scale: float) -> list[float]:
    """Normalised kernel weights of the source pixels that blend into one output pixel."""
    reach = math.ceil(LANCZOS_A / scale)  # source pixels on each side
    raw = []
    for offset in range(-reach, reach):
        step = round(abs((offset + 0.5) * scale) * TABLE_STEPS)
        raw.append(KERNEL[step] if step < len(KERNEL) else 0.0)
    total = sum(raw)
    return [weight / total for weight in raw]


def resize_plan(scale: float) -> tuple[int, float]:
    """How a resizer reaches ``scale``: a box reduction by a power of two, then a Lanczos step.

    The box filter is cheap and halves exactly; what is left (0.5 < step <= 1) is done with the
    kernel, whose width grows as the step shrinks, so the work per pixel stays bounded.
    """
    box = 1
    while scale * box <= 0.5:
        box *= 2
    return box, scale * box


def thumbnail_size(width: int, height: int, limit: int) -> tuple[int, int, float]:
    """The largest size within limit x limit with the aspect ratio kept, never enlarged."""
    scale = min(1.0, limit / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale)), scale


def _positive_int(params: dict[str, Any], name: str, default: int | None = None) -> int:
    value = params.get(name, default)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIDE:
        raise ValueError(f"{name} must be a whole number from 1 to {MAX_SIDE}, got {value!r}")
    return value


def _request_params(event: dict[str, Any]) -> dict[str, Any]:
    body = event.get("body")
    if body:
        if event.get("isBase64Encoded"):
            try:
                body = base64.b64decode(body, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ValueError("body is not valid base64") from exc
        try:
            params = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError("body is not valid JSON") from exc
        if not isinstance(params, dict):
            raise ValueError("body must be a JSON object")
        return params
    if event.get("queryStringParameters"):
        return dict(event["queryStringParameters"])
    return dict(parse_qsl(event.get("rawQueryString") or ""))


def _response(status: int, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(payload),
    }


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _invocations  # noqa: PLW0603 (per-process counter, the point of the demo)
    _invocations += 1
    try:
        params = _request_params(event)
        width = _positive_int(params, "width")
        height = _positive_int(params, "height")
        limit = _positive_int(params, "max", DEFAULT_MAX)
    except ValueError as exc:
        return _response(400, {"error": str(exc), "request_id": context.aws_request_id})
    thumb_width, thumb_height, scale = thumbnail_size(width, height, limit)
    box, step = resize_plan(scale)
    return _response(
        200,
        {
            "source": {"width": width, "height": height},
            "thumbnail": {"width": thumb_width, "height": thumb_height},
            "scale": round(scale, 6),
            "resize": {
                "box_reduce": box,
                "filter": "lanczos3",
                "filter_scale": round(step, 6),
                "taps": len(filter_weights(step)),
            },
            "request_id": context.aws_request_id,
            "cold": _invocations == 1,
            "init_ms": INIT_MS,
        },
    )
