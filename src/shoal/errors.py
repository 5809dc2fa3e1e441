"""The one error hierarchy of shoal.

Every error shoal raises on purpose derives from :class:`ShoalError`; third-party errors are
wrapped at the boundary (``raise ... from exc``). The CLI maps each branch to a short message and
a named exit code (:class:`ExitCode`); nothing below the CLI calls ``sys.exit``.

    ShoalError
    ├── ManifestError          the manifest cannot be used; carries every Problem found at once
    ├── ManifestNotFound       no shoal.yaml / shoal.yml where we looked
    ├── StoreError             the state database cannot be opened, migrated or written
    │   └── StoreVersionError  the database was written by a newer shoal
    ├── RuntimeNotAvailable    a runtime name is unknown, or its module / optional dependency is
    │   │                      missing (carries the extra to install)
    │   └── EngineUnavailable  no Docker Engine answers where shoal looked (carries the URL)
    ├── EngineError            the Docker Engine refused or failed an operation (operation,
    │   │                      HTTP status, the engine's explanation)
    │   └── ImageError         an image could not be built, imported or found (image, log tail)
    ├── CommandFailed          an external command (mmdebstrap...) failed (argv, exit code, output)
    ├── DeployError            a deploy cannot be done on its target (target, reason): no swarm,
    │                          no kubeconfig, the cluster refused a document
    ├── InstanceError          a runtime could not do something to one instance (carries its label)
    │   ├── InstanceStartError the command could not be started (argv, workdir, OS reason)
    │   └── SandboxError       resource limits could not be applied (cgroup path, OS reason)
    ├── FunctionError          an invocation did not return the handler's answer (function,
    │   │                      request id, Lambda's errorType, the HTTP status the gateway maps)
    │   ├── HandlerError       the handler raised, or returned what JSON cannot carry
    │   ├── FunctionInitError  the handler module could not be loaded or its instance set up
    │   ├── FunctionTimeout    the invocation ran past its timeout; its instance was killed
    │   ├── FunctionOutOfMemory the instance went past its memory limit and was killed
    │   ├── FunctionCrashed    the instance exited in the middle of the invocation
    │   ├── FunctionThrottled  every instance busy and the queue full (Lambda's TooManyRequests)
    │   └── FunctionUnavailable the function's pool is stopping or cannot start anything
    ├── UsageError             a command was called with arguments that cannot work
    ├── UnknownName            no service, function or job by that name
    └── DaemonError            talking to, or being, the control-plane daemon
        ├── DaemonNotRunning   no daemon for this manifest folder (or it stopped answering)
        ├── DaemonRunning      `shoal up` while one already runs for this folder
        ├── ShuttingDown       a change was asked of a daemon that is stopping
        ├── GatewayUnavailable the gateway cannot listen where the manifest says
        └── ApiError           the daemon answered a request with an error (status, message)

Failures are classified (STYLE.md habit 8) by the ``temporary`` flag: a temporary failure may
succeed if retried after a delay; a permanent one will not, and says why.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field


class ExitCode(enum.IntEnum):
    """Exit codes of the ``shoal`` command, named so scripts can rely on them."""

    OK = 0
    FAILURE = 1  # an operation failed (the message says which and why)
    INVALID_MANIFEST = 2  # the manifest has problems; each is printed on its own line
    NOT_FOUND = 3  # a file, manifest or named object does not exist
    USAGE = 4  # bad command-line arguments (click uses 2 for its own; we remap to 4)
    STATE = 5  # the state store is unusable (corrupt, newer version, locked)
    NOT_RUNNING = 6  # no daemon runs for this manifest (start one with `shoal up`)
    UNHEALTHY = 7  # `shoal up -d`: some services did not become ready
    INTERRUPTED = 130  # stopped by Ctrl-C


class ShoalError(Exception):
    """Base of every error shoal raises on purpose."""

    exit_code: ExitCode = ExitCode.FAILURE
    temporary: bool = False


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a manifest, located like a compiler diagnostic.

    ``path`` is the dotted location inside the document (``services.api.port``); ``line`` and
    ``column`` are 1-based, 0 when unknown (a problem with the document as a whole).
    """

    file: str
    line: int
    column: int
    path: str
    message: str
    hint: str = field(default="", compare=False)

    def render(self) -> str:
        """``shoal.yaml:12:7: services.api.port: 80800 is out of range 1-65535 (hint)``."""
        where = self.file if self.line <= 0 else f"{self.file}:{self.line}:{self.column}"
        subject = f"{self.path}: " if self.path else ""
        tail = f" ({self.hint})" if self.hint else ""
        return f"{where}: {subject}{self.message}{tail}"


class ManifestError(ShoalError):
    """The manifest cannot be used. ``problems`` lists every problem found, sorted by position."""

    exit_code = ExitCode.INVALID_MANIFEST

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        lines = "\n".join(p.render() for p in self.problems)
        super().__init__(f"{count} {noun} in the manifest:\n{lines}")


class ManifestNotFound(ShoalError):
    """No manifest file where one was expected."""

    exit_code = ExitCode.NOT_FOUND


class StoreError(ShoalError):
    """The state store (SQLite) cannot be opened, migrated or written."""

    exit_code = ExitCode.STATE


class StoreVersionError(StoreError):
    """The state database was written by a newer shoal than this one."""


class RuntimeNotAvailable(ShoalError):
    """A runtime cannot be loaded: unknown name, module not shipped yet, or a missing extra.

    ``extra`` names the optional dependency group to install (``pip install 'shoal[docker]'``),
    or is None when installing something will not help.
    """

    def __init__(self, runtime: str, reason: str, *, extra: str | None = None) -> None:
        self.runtime = runtime
        self.reason = reason
        self.extra = extra
        hint = f" (install it with: pip install 'shoal[{extra}]')" if extra else ""
        super().__init__(f"runtime {runtime!r} is not available: {reason}{hint}")


class EngineUnavailable(RuntimeNotAvailable):
    """No Docker Engine answers at ``url`` (the socket is missing, refused, or not an engine)."""

    def __init__(self, url: str, detail: str = "") -> None:
        self.runtime = "container"
        self.url = url
        self.extra = None
        self.reason = (
            f"Docker Engine not reachable at {url}: install docker.io and start dockerd, "
            "or use runtime: process"
        )
        self.detail = detail
        ShoalError.__init__(self, self.reason + (f" ({detail})" if detail else ""))


class EngineError(ShoalError):
    """The Docker Engine refused or failed ``operation``; ``status`` is its HTTP status (None
    when the connection itself failed: temporary) and ``explanation`` its own words."""

    def __init__(self, operation: str, explanation: str, *, status: int | None = None) -> None:
        self.operation = operation
        self.explanation = explanation
        self.status = status
        self.temporary = status is None or status >= 500
        super().__init__(f"{operation}: {explanation}")


class ImageError(EngineError):
    """An image could not be built, imported or found. ``image`` names it (or the build folder)
    and ``log`` keeps the last lines of the build output."""

    def __init__(self, image: str, explanation: str, *, log: str = "") -> None:
        self.image = image
        self.log = log
        super().__init__(f"image {image}", explanation)
        self.temporary = False


class CommandFailed(ShoalError):
    """An external command failed: ``argv``, its ``returncode`` (None: it could not be started)
    and the tail of its ``output`` (stderr)."""

    def __init__(self, argv: tuple[str, ...], exit_code: int | None, output: str = "") -> None:
        self.argv = argv
        self.returncode = exit_code  # `exit_code` is the CLI's ExitCode of every ShoalError
        self.output = output
        how = "could not be started" if exit_code is None else f"exited with code {exit_code}"
        tail = f":\n{output.rstrip()}" if output.strip() else ""
        super().__init__(f"{' '.join(argv)} {how}{tail}")


class DeployError(ShoalError):
    """``shoal deploy`` cannot be done on ``target`` (``swarm``, ``k8s``): ``reason`` says why
    (this engine is not in a swarm, no kubeconfig, the cluster refused a document)."""

    def __init__(self, target: str, reason: str) -> None:
        self.target = target
        self.reason = reason
        super().__init__(f"deploy to {target}: {reason}")


class InstanceError(ShoalError):
    """A runtime could not do something to one instance; ``label`` names it (``catalog#2``)."""

    def __init__(self, message: str, *, label: str) -> None:
        self.label = label
        super().__init__(f"[{label}] {message}")


class InstanceStartError(InstanceError):
    """An instance's command could not be started: not found, not executable, bad workdir.

    Carries the ``argv`` as given, the ``workdir``, the OS ``reason`` (strerror and the path it
    concerns) and ``errno``. Permanent unless the OS said it was short of something (EAGAIN,
    ENOMEM, EMFILE, ENFILE): then retrying later may work. The environment is never included:
    it may hold secrets.
    """

    def __init__(
        self,
        *,
        label: str,
        argv: tuple[str, ...],
        reason: str,
        errno: int | None = None,
        workdir: str | None = None,
        temporary: bool = False,
    ) -> None:
        self.argv = argv
        self.reason = reason
        self.errno = errno
        self.workdir = workdir
        self.temporary = temporary
        where = f" in {workdir}" if workdir else ""
        super().__init__(f"cannot start {list(argv)!r}{where}: {reason}", label=label)


class SandboxError(InstanceError):
    """Resource limits could not be applied to an instance (a cgroup could not be made or set).

    ``path`` is the cgroup file or folder concerned and ``reason`` the OS's words. The process
    runtime catches it, warns once per service and runs the instance without limits.
    """

    def __init__(self, *, label: str, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"cannot apply resource limits via {path}: {reason}", label=label)


class FunctionError(ShoalError):
    """An invocation of a function did not return the handler's answer.

    ``function`` and ``request_id`` say which; ``error_type`` is Lambda's ``errorType`` for it
    (``Sandbox.Timedout``, the handler's exception class...); ``status`` is the invocation status
    the store records; ``http_status`` is what the gateway answers (500 for a function error,
    as API Gateway does; 504, 429 and 503 for a timeout, a throttle, an unavailable pool);
    ``payload`` is the JSON Lambda would return for it (the error shape), as bytes.
    """

    status: str = "error"
    http_status: int = 500
    error_type: str = "ServiceException"

    def __init__(
        self,
        message: str,
        *,
        function: str,
        request_id: str,
        error_type: str | None = None,
        payload: bytes | None = None,
    ) -> None:
        self.function = function
        self.request_id = request_id
        if error_type is not None:
            self.error_type = error_type
        self.message = message
        self.payload = payload if payload is not None else _error_payload(self, message)
        super().__init__(f"[{function}] {message}")


def _error_payload(error: FunctionError, message: str) -> bytes:
    shape = {"errorMessage": message, "errorType": error.error_type, "requestId": error.request_id}
    return json.dumps(shape).encode()


class HandlerError(FunctionError):
    """The handler raised (``error_type`` is its exception's class name) or returned a value
    JSON cannot carry (``Runtime.MarshalError``). ``payload`` is Lambda's error shape with the
    ``stackTrace``. Permanent: the same event fails the same way."""


class FunctionInitError(FunctionError):
    """The function could not start: its module would not import, the handler is missing, or
    ``after_fork`` raised (``Runtime.ImportModuleError``, ``Runtime.HandlerNotFound``...)."""

    error_type = "Runtime.ImportModuleError"


class FunctionTimeout(FunctionError):
    """The invocation ran past the function's ``timeout``; its instance was killed."""

    status = "timeout"
    http_status = 504
    error_type = "Sandbox.Timedout"
    temporary = True


class FunctionOutOfMemory(FunctionError):
    """The instance went past the function's ``memory`` limit and the kernel killed it."""

    status = "oom"
    error_type = "Runtime.OutOfMemory"


class FunctionCrashed(FunctionError):
    """The instance exited (or was killed) in the middle of the invocation; it is replaced."""

    status = "crash"
    error_type = "Runtime.ExitError"
    temporary = True


class FunctionThrottled(FunctionError):
    """Every instance is busy, ``max_instances`` are running and the queue is full: retry
    later (Lambda's ``TooManyRequestsException``, HTTP 429)."""

    status = "throttled"
    http_status = 429
    error_type = "TooManyRequestsException"
    temporary = True


class FunctionUnavailable(FunctionError):
    """The function's pool is stopping or cannot start instances right now (HTTP 503)."""

    http_status = 503
    error_type = "ServiceUnavailable"
    temporary = True


class UsageError(ShoalError):
    """A command was called with arguments that cannot work."""

    exit_code = ExitCode.USAGE


class UnknownName(ShoalError):
    """No service, function or job has that name."""

    exit_code = ExitCode.NOT_FOUND


class DaemonError(ShoalError):
    """Talking to, or being, the control-plane daemon."""


class DaemonNotRunning(DaemonError):
    """No daemon runs for this manifest folder, or it does not answer."""

    exit_code = ExitCode.NOT_RUNNING


class DaemonRunning(DaemonError):
    """A daemon already runs for this manifest folder."""

    exit_code = ExitCode.FAILURE


class ShuttingDown(DaemonError):
    """The daemon is stopping and takes no more changes."""


class GatewayUnavailable(DaemonError):
    """The gateway cannot listen on the manifest's host and port."""


class ApiError(DaemonError):
    """The daemon answered with an error status; ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)
        if status == 404:
            self.exit_code = ExitCode.NOT_FOUND
        elif status in (400, 409, 422):
            self.exit_code = ExitCode.USAGE


__all__ = [
    "ApiError",
    "CommandFailed",
    "DaemonError",
    "DaemonNotRunning",
    "DaemonRunning",
    "DeployError",
    "EngineError",
    "EngineUnavailable",
    "ExitCode",
    "FunctionCrashed",
    "FunctionError",
    "FunctionInitError",
    "FunctionOutOfMemory",
    "FunctionThrottled",
    "FunctionTimeout",
    "FunctionUnavailable",
    "GatewayUnavailable",
    "HandlerError",
    "ImageError",
    "InstanceError",
    "InstanceStartError",
    "ManifestError",
    "ManifestNotFound",
    "Problem",
    "RuntimeNotAvailable",
    "SandboxError",
    "ShoalError",
    "ShuttingDown",
    "StoreError",
    "StoreVersionError",
    "UnknownName",
    "UsageError",
]
