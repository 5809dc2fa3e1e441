"""What a handler's process sees: the ``context`` object, Lambda's variables, the error shape.

Instances (``shoal.functions.instance``) make one :class:`LambdaContext` per invocation and
report a handler's exception with :func:`error_shape`; templates (``shoal.functions.template``)
get the :func:`lambda_environment` before they import the handler module, so module-level code
sees what it would see on Lambda (``AWS_LAMBDA_FUNCTION_NAME``,
``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``...).

The context is what AWS documents for Python ("AWS Lambda context object in Python"):
``function_name``, ``function_version``, ``invoked_function_arn``, ``memory_limit_in_mb``,
``aws_request_id``, ``log_group_name``, ``log_stream_name``, ``identity`` and
``client_context`` (None: no mobile SDK calls these functions), and
``get_remaining_time_in_millis()``. Names use a fixed local account and region:
``arn:aws:lambda:local:000000000000:function:NAME``.

The error shape is the Python runtime's: ``errorMessage`` (``str(exc)``), ``errorType`` (the
class name), ``stackTrace`` (the handler's frames, as ``traceback.format_list`` formats them,
without the runtime's own) and ``requestId``.

Every module a forked process imports is in every fork (and costs fork time and memory), so
this one imports only ``time`` and ``traceback``: no ``typing``, no ``dataclasses``.
"""

from __future__ import annotations

import time
import traceback

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

ACCOUNT = "000000000000"
REGION = "local"
VERSION = "$LATEST"


def function_arn(name: str) -> str:
    """``arn:aws:lambda:local:000000000000:function:NAME``."""
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


def log_group_name(name: str) -> str:
    """``/aws/lambda/NAME``."""
    return f"/aws/lambda/{name}"


def log_stream_name(started_at: float, token: str) -> str:
    """``2026/01/31/[$LATEST]<token>``: one stream per instance, as Lambda names them."""
    return time.strftime("%Y/%m/%d/", time.gmtime(started_at)) + f"[{VERSION}]{token}"


def lambda_environment(
    *, name: str, handler: str, memory_mb: int, task_root: str, log_stream: str = ""
) -> dict[str, str]:
    """The variables Lambda sets for a function's process (the manifest's ``env`` wins)."""
    env = {
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_VERSION": VERSION,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": log_group_name(name),
        "AWS_EXECUTION_ENV": "shoal",
        "LAMBDA_TASK_ROOT": task_root,
        "_HANDLER": handler,
    }
    if log_stream:
        env["AWS_LAMBDA_LOG_STREAM_NAME"] = log_stream
    return env


class LambdaContext:
    """The ``context`` argument of one invocation (see the module docstring)."""

    __slots__ = (
        "_deadline",
        "aws_request_id",
        "client_context",
        "function_name",
        "identity",
        "invoked_function_arn",
        "log_group_name",
        "log_stream_name",
        "memory_limit_in_mb",
    )

    function_version = VERSION

    def __init__(
        self,
        request_id: str,
        *,
        function_name: str,
        memory_mb: int,
        log_stream: str,
        deadline: float,
        arn: str | None = None,
        log_group: str | None = None,
    ) -> None:
        self.aws_request_id = request_id
        self.function_name = function_name
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = arn or function_arn(function_name)
        self.log_group_name = log_group or log_group_name(function_name)
        self.log_stream_name = log_stream
        self.identity: object = None
        self.client_context: object = None
        self._deadline = deadline  # time.monotonic() seconds

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the invocation times out (0 once past)."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def __repr__(self) -> str:
        return f"LambdaContext({self.aws_request_id!r}, function_name={self.function_name!r})"


def error_shape(
    exc: BaseException, request_id: str | None = None, *, skip_files: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Lambda's Python error shape for ``exc``; frames from ``skip_files`` (the runtime's own)
    are left out of ``stackTrace``."""
    frames = [
        (frame.filename, frame.lineno, frame.name, frame.line)
        for frame in traceback.extract_tb(exc.__traceback__)
        if not (skip_files and frame.filename.endswith(skip_files))
    ]
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "requestId": request_id or "",
        "stackTrace": traceback.format_list(frames),  # type: ignore[arg-type]
    }


def platform_error(error_type: str, message: str, request_id: str | None = None) -> dict[str, Any]:
    """An error the platform reports for an invocation (no handler frames to show)."""
    return {"errorMessage": message, "errorType": error_type, "requestId": request_id or ""}


__all__ = [
    "ACCOUNT",
    "REGION",
    "VERSION",
    "LambdaContext",
    "error_shape",
    "function_arn",
    "lambda_environment",
    "log_group_name",
    "log_stream_name",
    "platform_error",
]
