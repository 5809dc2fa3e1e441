"""A daemon that dies: starts one VM with a fresh VmRuntime, prints its handle as JSON, and
exits at once without stopping it (``os._exit``), as a daemon killed with -9 would.

Usage: ``python -m tests.runtimes.vm.starting APP_FOLDER ORDINAL HOST_PORT`` (from the repo
root); the spec is :func:`tests.runtimes.vm.test_running.make_spec`'s.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from shoal.runtimes.vm import VmRuntime
from tests.runtimes.vm.test_running import make_spec


async def start(app: Path, ordinal: int, port: int) -> None:
    runtime = VmRuntime()
    handle = await runtime.start(make_spec(app, ordinal, host_port=port))
    print(json.dumps({"pid": handle.pid, "start": handle.pid_start_time,
                      "ref": handle.runtime_ref}), flush=True)  # fmt: skip


if __name__ == "__main__":
    asyncio.run(start(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
    os._exit(0)
