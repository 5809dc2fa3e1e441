"""The one choke point through which the VM runtime runs external commands.

Baking (:mod:`shoal.runtimes.vm.baking`) runs ``apt-get download``, ``dpkg -x``, ``tar``,
``make`` (the kernel), ``gcc``, ``mmdebstrap``, ``mkfs.ext4`` and ``qemu-img`` through
:func:`run`: argv only (never a shell), the child in its own process group (killed with the
whole group if the caller is cancelled), and one typed error, :class:`~shoal.errors.CommandFailed`,
carrying the argv, the exit code and the output's tail.
Which Debian package provides each tool is said by :mod:`shoal.runtimes.vm.hosting`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from shoal.errors import CommandFailed

OUTPUT_TAIL = 4000
"""How many characters of a failed command's output its error keeps."""
FOLLOWED_LINES = 200
"""How many of its last lines a followed command (``lines=``) returns."""


async def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    lines: Callable[[str], None] | None = None,
) -> str:
    """Run ``argv`` to completion; its combined output, or :class:`CommandFailed`.

    With ``lines``, each output line is handed to it as it comes (a long build shows progress)
    and only the last :data:`FOLLOWED_LINES` lines are kept and returned.
    """
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
        if lines is None:
            output, _ = await asyncio.wait_for(process.communicate(), timeout)
        else:
            output = await asyncio.wait_for(_follow(process, lines), timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        raise
    text = output.decode(errors="replace")
    if process.returncode != 0:
        raise CommandFailed(args, process.returncode, text[-OUTPUT_TAIL:])
    return text


async def _follow(process: asyncio.subprocess.Process, lines: Callable[[str], None]) -> bytes:
    assert process.stdout is not None
    kept: deque[bytes] = deque(maxlen=FOLLOWED_LINES)
    async for raw in process.stdout:
        kept.append(raw)
        lines(raw.decode(errors="replace").rstrip("\n"))
    await process.wait()
    return b"".join(kept)


__all__ = ["FOLLOWED_LINES", "OUTPUT_TAIL", "run"]
