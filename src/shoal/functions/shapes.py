"""AWS's shapes, so Lambda handlers run unchanged: events in, responses and errors out. Pure.

Triggers build events here and the gateway maps results back here; no I/O, no clocks (times
are passed in). Sources, AWS's own documentation:

- **HTTP** (API Gateway HTTP API, payload format 2.0, "Working with AWS Lambda proxy
  integrations for HTTP APIs"): :func:`http_event` and :func:`http_response`. Header names are
  lowercased and repeated headers joined with commas; ``cookie`` headers become the ``cookies``
  list; the query string is kept raw and parsed into ``queryStringParameters`` (repeated names
  joined with commas); a body that is not text is base64-encoded (``isBase64Encoded``).
  The response: a dict with ``statusCode`` is read as ``statusCode`` / ``headers`` /
  ``cookies`` (each a ``set-cookie``) / ``body`` / ``isBase64Encoded``; any other valid JSON
  (a dict without ``statusCode``, a list, a number...) is "inferred": 200, ``content-type:
  application/json``, the function's JSON as the body. A string is the documented special case:
  ``"Hello from Lambda!"`` becomes the body ``Hello from Lambda!`` (its value, not its JSON). A
  response API Gateway cannot read is a 500 ``{"message":"Internal Server Error"}``, as there.
- **Errors** (the Python runtime's error shape): :func:`error_shape` and
  :func:`platform_error`, defined in ``shoal.functions.context`` (instances need them, and
  instances import as little as they can) and re-exported here.
- **Schedules** (EventBridge "Scheduled Event"): :func:`scheduled_event`.
- **Queues** (SQS batch, "Using Lambda with Amazon SQS"): :func:`sqs_event`, and
  :func:`failed_message_ids` for the partial batch response (``batchItemFailures``).
- **REPORT** (the log line after every invocation): :func:`report_line`; :func:`billed_ms`
  rounds up to the millisecond and, on a cold start, includes the init phase, as Lambda bills
  on-demand functions since August 2025 (REPORT lines show ``Billed Duration`` =
  ceil(``Duration`` + ``Init Duration``)).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from shoal.functions.context import ACCOUNT, REGION, error_shape, platform_error

STAGE = "$default"
TEXT_TYPES = ("application/json", "application/javascript", "application/xml", "text/")
INTERNAL_ERROR = b'{"message":"Internal Server Error"}'
JSON_TYPE = "application/json"


# ---------------------------------------------------------------- HTTP API, payload 2.0


def is_text(content_type: str | None) -> bool:
    """Whether a body of ``content_type`` travels as text (else base64), as API Gateway does."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media.startswith(TEXT_TYPES) or media.endswith(("+json", "+xml"))


def _clf_time(epoch: float) -> str:
    """``12/Mar/2020:19:03:58 +0000``: the requestContext ``time`` format."""
    return _clf_second(int(epoch))


@functools.lru_cache(maxsize=4)
def _clf_second(second: int) -> str:  # once per second: events come many to a second
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(second))


def http_event(
    *,
    method: str,
    raw_path: str,
    request_id: str,
    now: float,
    raw_query: str = "",
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    source_ip: str = "127.0.0.1",
    protocol: str = "HTTP/1.1",
    route_key: str = STAGE,
    path_parameters: Mapping[str, str] | None = None,
    api_id: str = "local",
) -> dict[str, Any]:
    """The event API Gateway (HTTP API, payload 2.0) sends for one request; ``now`` in epoch s."""
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    host = joined.get("host", "localhost")
    event: dict[str, Any] = {"version": "2.0", "routeKey": route_key, "rawPath": raw_path}
    event["rawQueryString"] = raw_query
    if cookies:
        event["cookies"] = cookies
    event["headers"] = joined
    if raw_query:
        params: dict[str, str] = {}
        for key, value in parse_qsl(raw_query, keep_blank_values=True):
            params[key] = f"{params[key]},{value}" if key in params else value
        event["queryStringParameters"] = params
    event["requestContext"] = {
        "accountId": ACCOUNT,
        "apiId": api_id,
        "domainName": host,
        "domainPrefix": host.split(".", 1)[0],
        "http": {
            "method": method.upper(),
            "path": raw_path,
            "protocol": protocol,
            "sourceIp": source_ip,
            "userAgent": joined.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": route_key,
        "stage": STAGE,
        "time": _clf_time(now),
        "timeEpoch": int(now * 1000),
    }
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    encoded = False
    if body:
        text: str | None = None
        if is_text(joined.get("content-type")):
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        if text is None:
            text = base64.b64encode(body).decode("ascii")
            encoded = True
        event["body"] = text
    event["isBase64Encoded"] = encoded
    return event


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """What the gateway sends back: status, header pairs (``set-cookie`` may repeat), body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def _internal_error() -> HttpResponse:
    return HttpResponse(500, (("content-type", JSON_TYPE),), INTERNAL_ERROR)


def http_response(payload: bytes) -> HttpResponse:
    """Map a function's result (the JSON bytes it returned) the way API Gateway does (2.0)."""
    try:
        value = json.loads(payload)
    except ValueError:
        return _internal_error()
    if not (isinstance(value, dict) and "statusCode" in value):
        if isinstance(value, str):
            return HttpResponse(200, (("content-type", JSON_TYPE),), value.encode())
        return HttpResponse(200, (("content-type", JSON_TYPE),), payload)
    try:
        return _custom_response(value)
    except (TypeError, ValueError, binascii.Error):
        return _internal_error()


def _custom_response(value: dict[str, Any]) -> HttpResponse:
    status = value["statusCode"]
    if isinstance(status, str) and status.strip().isdigit():
        status = int(status)
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise ValueError(f"statusCode {status!r} is not an HTTP status")
    pairs: list[tuple[str, str]] = []
    headers = value.get("headers") or {}
    if not isinstance(headers, dict):
        raise TypeError("headers is not an object")
    for name, item in headers.items():
        pairs.append((str(name), _scalar(item)))
    cookies = value.get("cookies") or []
    if not isinstance(cookies, list):
        raise TypeError("cookies is not a list")
    pairs.extend(("set-cookie", str(cookie)) for cookie in cookies)
    if not any(name.lower() == "content-type" for name, _ in pairs):
        pairs.append(("content-type", JSON_TYPE))
    body = value.get("body")
    if body is None:
        data = b""
    elif isinstance(body, str):
        data = body.encode()
    else:
        data = json.dumps(body).encode()
    if value.get("isBase64Encoded") is True:
        data = base64.b64decode(data, validate=True)
    return HttpResponse(status, tuple(pairs), data)


def _scalar(item: Any) -> str:
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, str | int | float):
        return str(item)
    raise TypeError(f"header value {item!r} is not a string")


def gateway_error(status: int, message: str) -> HttpResponse:
    """An error answered by the gateway itself: ``{"message": ...}``, as API Gateway does."""
    body = json.dumps({"message": message}).encode()
    return HttpResponse(status, (("content-type", JSON_TYPE),), body)


# ---------------------------------------------------------------- schedules and queues


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def scheduled_event(
    *, rule: str, event_id: str, now: float, region: str = REGION, account: str = ACCOUNT
) -> dict[str, Any]:
    """The EventBridge "Scheduled Event" a schedule trigger sends; ``now`` in epoch seconds."""
    return {
        "version": "0",
        "id": event_id,
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": _iso(now),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{account}:rule/{rule}"],
        "detail": {},
    }


@dataclass(frozen=True, slots=True)
class QueueMessage:
    """One message as a queue trigger delivers it: ids, body, when sent, delivery count."""

    message_id: str
    body: str
    sent_at: float  # epoch seconds
    receive_count: int = 1
    first_received_at: float | None = None
    receipt: str = ""


def sqs_event(
    messages: Iterable[QueueMessage], *, queue: str, region: str = REGION, account: str = ACCOUNT
) -> dict[str, Any]:
    """An SQS batch event (``Records``) for ``messages`` from the queue (topic) ``queue``."""
    records = []
    for message in messages:
        first = message.first_received_at or message.sent_at
        receipt = message.receipt or base64.b64encode(
            f"{message.message_id}#{message.receive_count}".encode()
        ).decode("ascii")
        records.append(
            {
                "messageId": message.message_id,
                "receiptHandle": receipt,
                "body": message.body,
                "attributes": {
                    "ApproximateReceiveCount": str(message.receive_count),
                    "SentTimestamp": str(int(message.sent_at * 1000)),
                    "SenderId": account,
                    "ApproximateFirstReceiveTimestamp": str(int(first * 1000)),
                },
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(message.body.encode(), usedforsecurity=False).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{region}:{account}:{queue}",
                "awsRegion": region,
            }
        )
    return {"Records": records}


def failed_message_ids(result: Any, message_ids: Iterable[str]) -> set[str]:
    """The messages to retry after a batch, from the handler's partial batch response.

    As Lambda reads it: ``None``, an empty ``batchItemFailures`` or a response without the key
    means all succeeded; a failure naming an unknown (or no) id fails the whole batch.
    """
    ids = list(message_ids)
    if not isinstance(result, dict) or result.get("batchItemFailures") in (None, []):
        return set()
    failures = result["batchItemFailures"]
    if not isinstance(failures, list):
        return set(ids)
    failed: set[str] = set()
    for failure in failures:
        item = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not isinstance(item, str) or item not in ids:
            return set(ids)
        failed.add(item)
    return failed


# ---------------------------------------------------------------- the REPORT line


def billed_ms(duration_ms: float, init_ms: float | None = None) -> int:
    """Billed milliseconds: duration (plus init on a cold start), rounded up, at least 1."""
    return max(1, math.ceil(duration_ms + (init_ms or 0.0) - 1e-9))


def report_line(
    *,
    request_id: str,
    duration_ms: float,
    memory_mb: int,
    max_memory_bytes: int | None,
    init_ms: float | None = None,
) -> str:
    """Lambda's ``REPORT`` line (fields separated by tabs, Init Duration on cold starts only)."""
    used = "?" if max_memory_bytes is None else str(round(max_memory_bytes / (1 << 20)))
    parts = [
        f"REPORT RequestId: {request_id}",
        f"Duration: {duration_ms:.2f} ms",
        f"Billed Duration: {billed_ms(duration_ms, init_ms)} ms",
        f"Memory Size: {memory_mb} MB",
        f"Max Memory Used: {used} MB",
    ]
    if init_ms is not None:
        parts.append(f"Init Duration: {init_ms:.2f} ms")
    return "\t".join(parts)


__all__ = [
    "ACCOUNT",
    "INTERNAL_ERROR",
    "REGION",
    "HttpResponse",
    "QueueMessage",
    "billed_ms",
    "error_shape",
    "failed_message_ids",
    "gateway_error",
    "http_event",
    "http_response",
    "is_text",
    "platform_error",
    "report_line",
    "scheduled_event",
    "sqs_event",
]
