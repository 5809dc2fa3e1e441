"""The one choke point through which the VM runtime runs external commands.

Baking (:mod:`shoal.runtimes.vm.baking`) runs ``apt-get download``, ``dpkg -x``, ``mmdebstrap``,
``mkfs.ext4`` and ``qemu-img`` through :func:`run`: argv only (never a shell), the child in its
own process group (killed with the whole group if the caller is cancelled), and one typed error,
:class:`~shoal.errors.CommandFailed`, carrying the argv, the exit code and the output's tail.
Which Debian package provides each tool is said by :mod:`shoal.runtimes.vm.hosting`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

from shoal.errors import CommandFailed

OUTPUT_TAIL = 4000
"""How many characters of a failed command's output its error keeps."""


async def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> str:
    """Run ``argv`` to completion; its combined output, or :class:`CommandFailed`."""
    args = tuple(str(part) for part in argv)
    try:
        process = await asyncio.create_subprocess_exec(
            *args,
            cwd=cwd,
            env=None if env is None else dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        raise CommandFailed(args, None, f"{exc.strerror or exc}") from exc
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        raise
    text = output.decode(errors="replace")
    if process.returncode != 0:
        raise CommandFailed(args, process.returncode, text[-OUTPUT_TAIL:])
    return text


__all__ = ["OUTPUT_TAIL", "run"]
