"""Spawning one instance's command: the process runtime's single choke point for ``exec``.

:class:`~shoal.runtimes.process.ProcessRuntime` calls :func:`spawn`; nothing else in shoal's
runtimes starts a service process. The command runs as given (an argv list, never through a
shell), in a new session (so it leads its own process group and a stop reaches its whole
tree), with stdin from ``/dev/null`` and stdout and stderr both appended straight to the
instance's log file: the child holds that file itself, so its output is kept even while the
daemon is down, and the log store tails it from there.

The environment is rebuilt from scratch (:func:`build_env`) so an instance sees the same
variables whoever started the daemon: only :data:`INHERITED_ENV` passes through from the
daemon, :data:`DEFAULT_ENV` fills in, and the manifest's ``env`` (including ``PORT``) wins.
"""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from shoal.errors import InstanceStartError
from shoal.runtimes.base import InstanceSpec

INHERITED_ENV: tuple[str, ...] = (
    "PATH",  # where commands like `python` are found
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",  # locale: text encoding of the instance's output
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",  # local time in the instance's own log lines
    "TMPDIR",
)
"""Variables copied from the daemon's environment when set there. Nothing else leaks through:
no tokens, no virtualenv of the daemon, no ``PYTHONPATH``."""

DEFAULT_ENV: Mapping[str, str] = {
    "PATH": os.defpath,
    "PYTHONUNBUFFERED": "1",  # Python services: each line reaches the log when printed
}
"""Set unless the daemon's environment (``PATH``) or the manifest overrides them."""

LOG_FILE_MODE = 0o640
TEMPORARY_ERRNOS = frozenset({errno.EAGAIN, errno.ENOMEM, errno.EMFILE, errno.ENFILE})


def build_env(daemon_env: Mapping[str, str], spec_env: Mapping[str, str]) -> dict[str, str]:
    """An instance's environment: defaults < inherited daemon variables < the manifest's."""
    env = dict(DEFAULT_ENV)
    env.update({k: daemon_env[k] for k in INHERITED_ENV if k in daemon_env})
    env.update(spec_env)
    return env


def open_log(path: Path) -> int:
    """An append-only descriptor on the instance's log file, created (with its folder) if new.

    O_APPEND makes every write of the child land at the current end even while the log store
    punches holes in the part it has already read.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
    return os.open(path, flags, LOG_FILE_MODE)


async def spawn(spec: InstanceSpec, env: Mapping[str, str]) -> asyncio.subprocess.Process:
    """Start ``spec.command``; raise :class:`InstanceStartError` if it cannot be executed."""
    argv = spec.command
    workdir = str(spec.workdir) if spec.workdir is not None else None
    if not argv:
        raise InstanceStartError(
            label=spec.label, argv=(), reason="no command to run", workdir=workdir
        )
    try:
        log_fd = open_log(spec.log_path)
    except OSError as exc:
        raise InstanceStartError(
            label=spec.label,
            argv=argv,
            reason=f"cannot open its log file {spec.log_path}: {exc.strerror or exc}",
            errno=exc.errno,
            workdir=workdir,
            temporary=exc.errno in TEMPORARY_ERRNOS,
        ) from exc
    try:
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            cwd=workdir,
            env=dict(env),
            start_new_session=True,
        )
    except OSError as exc:
        raise InstanceStartError(
            label=spec.label,
            argv=argv,
            reason=describe_exec_error(exc, argv, workdir),
            errno=exc.errno,
            workdir=workdir,
            temporary=exc.errno in TEMPORARY_ERRNOS,
        ) from exc
    finally:
        os.close(log_fd)


def describe_exec_error(exc: OSError, argv: tuple[str, ...], workdir: str | None) -> str:
    """The OS's reason, said about the thing it concerns: the workdir or the executable."""
    reason = exc.strerror or str(exc)
    filename = os.fsdecode(exc.filename) if exc.filename is not None else None
    if workdir is not None and filename == workdir:
        return f"workdir {workdir!r}: {reason}"
    program = argv[0]
    if exc.errno == errno.ENOENT and os.sep not in program:
        return f"{reason}: {program!r} (not found on the instance's PATH)"
    if exc.errno == errno.ENOEXEC:
        return f"{reason}: {program!r} (a script needs a #! line, or run it via its interpreter)"
    target = filename or program
    return f"{reason}: {target!r}"


__all__ = [
    "DEFAULT_ENV",
    "INHERITED_ENV",
    "LOG_FILE_MODE",
    "build_env",
    "describe_exec_error",
    "open_log",
    "spawn",
]
