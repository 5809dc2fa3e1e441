"""A daemon that dies: starts one VM with a fresh VmRuntime, prints its handle as JSON, and
exits at once without stopping it or its event loop (``os._exit``), as a daemon killed with -9
would.

Usage: ``python -m tests.runtimes.vm.starting APP_FOLDER ORDINAL HOST_PORT [standby]`` (from
the repo root); the spec is :func:`tests.runtimes.vm.test_running.make_spec`'s. With
``standby``, instance ORDINAL + 100 is started first (into a qemu of its own), then ORDINAL
takes over the standby qemu launched after it, and a standby is left for a next start: the
JSON also holds ``first`` (the other instance's handle) and ``standby`` (that standby's pid).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from shoal.runtimes.base import Handle
from shoal.runtimes.vm import VmRuntime
from tests.runtimes.vm.test_running import make_spec, standing_by


def described(handle: Handle) -> dict[str, object]:
    return {"pid": handle.pid, "start": handle.pid_start_time, "ref": handle.runtime_ref}


async def start(app: Path, ordinal: int, port: int, standby: bool) -> None:
    runtime = VmRuntime()
    out: dict[str, object] = {}
    if standby:
        out["first"] = described(await runtime.start(make_spec(app, ordinal + 100)))
        taken = await standing_by(runtime)
        handle = await runtime.start(make_spec(app, ordinal, host_port=port))
        assert handle.pid == taken, (handle.pid, taken)
        out["standby"] = await standing_by(runtime)
    else:
        handle = await runtime.start(make_spec(app, ordinal, host_port=port))
    print(json.dumps({**described(handle), **out}), flush=True)
    os._exit(0)  # no loop shutdown: a standby still launching is left as a crash leaves it


if __name__ == "__main__":
    standby = sys.argv[4:] == ["standby"]
    asyncio.run(start(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), standby))
