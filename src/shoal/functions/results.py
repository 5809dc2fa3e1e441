"""What one invocation returns: :class:`InvocationResult`, and the failures it can carry. Pure.

Every call of :meth:`shoal.functions.pool.FunctionPool.invoke` ends in exactly one result,
whatever happened: the handler's answer, its exception, a timeout, a kill, a throttle. The
result carries the payload Lambda would return (the handler's JSON, or the error shape), the
figures of Lambda's ``REPORT`` line, and ``error``: ``None`` on success, else a
:class:`~shoal.errors.FunctionError` whose class says what went wrong and whose
``http_status`` is what the gateway answers. :meth:`InvocationResult.record` is what the store
keeps; :meth:`InvocationResult.report_line` what the function's log shows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

from shoal.errors import (
    FunctionCrashed,
    FunctionError,
    FunctionInitError,
    FunctionOutOfMemory,
    FunctionTimeout,
    HandlerError,
)
from shoal.functions.shapes import billed_ms, report_line
from shoal.runtimes.watching import signal_name
from shoal.store.records import InvocationRecord, InvocationStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class InvocationResult:
    """One finished invocation (see the module docstring). Times in milliseconds."""

    function: str
    request_id: str
    payload: bytes  # JSON: the handler's return value, or Lambda's error shape
    error: FunctionError | None
    started_at: float  # wall clock, epoch seconds, when invoke() was called
    duration_ms: float  # the handler's run time (Lambda's Duration)
    memory_mb: int
    max_memory_bytes: int | None = None
    cold: bool = False
    init_duration_ms: float | None = None  # on a cold start: what starting the instance took
    ordinal: int | None = None  # the instance that ran it
    latency_ms: float = 0.0  # invoke() called -> result, queueing and dispatch included

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def status(self) -> InvocationStatus:
        return "ok" if self.error is None else cast(InvocationStatus, self.error.status)

    @property
    def billed_ms(self) -> int:
        return billed_ms(self.duration_ms, self.init_duration_ms)

    def value(self) -> Any:
        """The payload decoded: the handler's return value, or the error shape."""
        return json.loads(self.payload)

    def report_line(self) -> str:
        """Lambda's ``REPORT RequestId: ...`` line for this invocation."""
        return report_line(
            request_id=self.request_id,
            duration_ms=self.duration_ms,
            memory_mb=self.memory_mb,
            max_memory_bytes=self.max_memory_bytes,
            init_ms=self.init_duration_ms,
        )

    def record(self) -> InvocationRecord:
        """The row the store keeps for this invocation."""
        return InvocationRecord(
            request_id=self.request_id,
            function=self.function,
            ordinal=self.ordinal,
            started_at=self.started_at,
            duration_ms=self.duration_ms,
            billed_ms=self.billed_ms,
            max_memory_bytes=self.max_memory_bytes,
            cold=self.cold,
            status=self.status,
            init_duration_ms=self.init_duration_ms,
            error_type=None if self.error is None else self.error.error_type,
        )


def handler_error(function: str, request_id: str, payload: bytes) -> HandlerError:
    """The error for a handler that raised (``payload`` is the error shape it produced)."""
    try:
        shape = json.loads(payload)
    except ValueError:
        shape = {}
    if not isinstance(shape, dict):
        shape = {}
    return HandlerError(
        str(shape.get("errorMessage", "the handler failed")),
        function=function,
        request_id=request_id,
        error_type=str(shape.get("errorType") or "Exception"),
        payload=payload,
    )


def init_error(function: str, request_id: str, shape: dict[str, Any]) -> FunctionInitError:
    """The error for an invocation whose function could not start (``shape`` from the template)."""
    body = dict(shape, requestId=request_id)
    return FunctionInitError(
        str(shape.get("errorMessage", "the function could not start")),
        function=function,
        request_id=request_id,
        error_type=str(shape.get("errorType") or FunctionInitError.error_type),
        payload=json.dumps(body).encode(),
    )


def exit_text(code: int | None) -> str:
    """``exit status 3`` / ``signal: killed``, as Lambda words a runtime's exit."""
    if code is None:
        return "the instance exited"
    if code >= 0:
        return f"exit status {code}"
    name = signal_name(-code)
    return "signal: killed" if name == "SIGKILL" else f"signal: {name}"


def exit_error(
    function: str, request_id: str, code: int | None, *, oom: bool, memory_mb: int
) -> FunctionError:
    """The error for an invocation whose instance died under it."""
    message = f"RequestId: {request_id} Error: Runtime exited with error: {exit_text(code)}"
    if oom:
        message += f" (out of memory: the limit is {memory_mb} MB)"
        return FunctionOutOfMemory(message, function=function, request_id=request_id)
    return FunctionCrashed(message, function=function, request_id=request_id)


def timeout_error(function: str, request_id: str, timeout: float) -> FunctionTimeout:
    message = f"RequestId: {request_id} Error: Task timed out after {timeout:.2f} seconds"
    return FunctionTimeout(message, function=function, request_id=request_id)


__all__ = [
    "InvocationResult",
    "exit_error",
    "exit_text",
    "handler_error",
    "init_error",
    "timeout_error",
]
