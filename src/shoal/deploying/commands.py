"""The one way ``shoal deploy`` runs an external command (``docker stack ...``): argv in, text
out, :class:`~shoal.errors.CommandFailed` (argv, exit code, output tail) on failure.

Deploying is a foreground CLI operation, so this is a blocking call with a timeout; the
command runs in its own process group, and a timeout kills the whole group.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence

from shoal.errors import CommandFailed

OUTPUT_TAIL = 4000


def run(argv: Sequence[str], *, timeout: float = 300.0, check: bool = True) -> str:
    """Run ``argv`` (never through a shell) and return its stdout.

    Raises CommandFailed when it cannot start, exits non-zero (if ``check``) or outlives
    ``timeout`` seconds.
    """
    args = tuple(argv)
    try:
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
    except OSError as exc:
        raise CommandFailed(args, None, exc.strerror or str(exc)) from exc
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise CommandFailed(args, None, f"still running after {timeout:g}s; killed") from exc
    if check and process.returncode != 0:
        raise CommandFailed(args, process.returncode, (err or out)[-OUTPUT_TAIL:])
    return out


__all__ = ["run"]
