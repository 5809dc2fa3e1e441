"""Function routes: the hook a function runtime plugs into the gateway.

    route kind "function" ──body buffered (max_body)──▶ FunctionRequest ──hook──▶ FunctionResponse
                                                                          └─▶ written to the client

The gateway does not run functions; whoever does (the function pool manager, later) passes a
:data:`FunctionHook` to :class:`~shoal.gateway.server.Gateway`. A hook may answer at once (a
:class:`FunctionResponse`) or with an awaitable; then one named task per invocation awaits it
(the only coroutine per request in the gateway, and only on function routes). Until a runtime is
plugged in, :func:`unavailable` answers 503.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shoal.gateway.messages import CLOSE, RESPONSE_HEADERS, STATUS_LINES

if TYPE_CHECKING:
    from shoal.gateway.exchange import Exchange

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class FunctionRequest:
    """An HTTP request for a function, body complete (what an API Gateway v2 event is made of)."""

    function: str
    method: str
    path: str
    """The normalised path, percent-encoding kept where it is not of an unreserved character."""
    query: str
    """The raw query string, without ``?``."""
    headers: tuple[tuple[str, str], ...]
    """Headers as received (hop-by-hop ones removed), names in their original case."""
    body: bytes
    client_ip: str
    request_id: str


@dataclass(frozen=True, slots=True)
class FunctionResponse:
    """What a function answered."""

    status: int = 200
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b""


FunctionHook = Callable[[FunctionRequest], FunctionResponse | Awaitable[FunctionResponse]]


def unavailable(request: FunctionRequest) -> FunctionResponse:
    """The hook used until a function runtime is plugged in."""
    body = json.dumps({"message": "functions are not available yet"}).encode() + b"\n"
    return FunctionResponse(503, (("Content-Type", "application/json"),), body)


def request_of(ex: Exchange) -> FunctionRequest:
    """The FunctionRequest of a parsed exchange whose body is complete."""
    target = ex.up_target
    q = target.find(b"?")
    path, query = (target, b"") if q < 0 else (target[:q], target[q + 1 :])
    parts = ex.parts
    headers = tuple(
        (parts[i].decode("latin-1"), parts[i + 2].decode("latin-1"))
        for i in range(1, len(parts), 4)
    )
    assert ex.rule is not None
    return FunctionRequest(
        function=ex.rule.target,
        method=ex.method.decode("ascii"),
        path=path.decode("latin-1"),
        query=query.decode("latin-1"),
        headers=headers,
        body=b"".join(ex.function_body or ()),
        client_ip=ex.conn.client_ip.decode("ascii"),
        request_id=(ex.request_id or ex.conn.gw.new_request_id()).decode("ascii"),
    )


def invoke(ex: Exchange, hook: FunctionHook, tasks: set[asyncio.Task[None]]) -> None:
    """Call the hook for ``ex``; write its answer now, or when its awaitable is done."""
    ex.invoked = True
    try:
        result: object = hook(request_of(ex))
    except Exception:
        log.exception("gateway: the function hook failed")
        ex.fail(502, "the function could not be invoked")
        return
    if isinstance(result, FunctionResponse):
        respond(ex, result)
        return
    if not inspect.isawaitable(result):
        ex.fail(502, "the function hook returned no response")
        return
    assert ex.rule is not None
    task = ex.conn.loop.create_task(_await(ex, result), name=f"gateway:function:{ex.rule.target}")
    ex.function_task = task
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def _await(ex: Exchange, pending: Awaitable[object]) -> None:
    try:
        response = await pending
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("gateway: the function invocation failed")
        ex.function_task = None
        ex.fail(502, "the function invocation failed")
        return
    ex.function_task = None
    if not isinstance(response, FunctionResponse):
        ex.fail(502, "the function hook returned no response")
        return
    respond(ex, response)


def respond(ex: Exchange, response: FunctionResponse) -> None:
    """Write a function's response to the client and end the exchange."""
    if ex.finished:
        return
    head = encode_head(response, ex)
    if head is None:
        ex.fail(502, "the function answered with an invalid response")
        return
    body = b"" if ex.head_method else response.body
    ex.status = response.status
    ex.bytes_out = len(body)
    ex.conn.transport.write(head + body if len(body) < 65536 else head)
    if len(body) >= 65536:
        ex.conn.transport.write(body)
    ex.finish()


def encode_head(response: FunctionResponse, ex: Exchange) -> bytes | None:
    """The response head, or None if the function's status or headers are not valid HTTP."""
    status = response.status
    if not 200 <= status <= 599:
        return None
    lines = [STATUS_LINES[status]]
    for name, value in response.headers:
        if not _TOKEN.fullmatch(name) or _BAD_VALUE.search(value):
            return None
        if name.lower().encode("ascii") in RESPONSE_HEADERS:
            continue  # framing and hop-by-hop headers are the gateway's
        lines.append(f"{name}: {value}\r\n".encode("latin-1", "replace"))
    lines.append(b"Content-Length: %d\r\n" % len(response.body))
    if ex.close_after or not ex.keep_alive or ex.conn.gw.stopping:
        ex.close_after = True
        lines.append(CLOSE)
    lines.append(b"\r\n")
    return b"".join(lines)


__all__ = [
    "FunctionHook",
    "FunctionRequest",
    "FunctionResponse",
    "invoke",
    "request_of",
    "respond",
    "unavailable",
]
