"""kill -9 of the daemon mid-stream: the next log store loses no line and repeats at most the
batch the killed one had written but not yet recorded as read.

A real instance writes numbered lines for about a second. A separate Python process (the
"daemon") runs a LogStore tailing it and is killed with SIGKILL while lines are flowing; the
test's own store then registers the same raw file and reads on to the end.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shoal.logs import LogStore
from shoal.runtimes.base import InstanceSpec
from shoal.runtimes.process import ProcessRuntime

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(10)]

LINES = 3000
WRITER = f"""
import time
for n in range({LINES}):
    print("n", n)
    if n % 20 == 0:
        time.sleep(0.006)
"""
DAEMON = """
import asyncio, sys
from pathlib import Path
from shoal.logs import LogStore

async def main():
    logs = LogStore(Path(sys.argv[1]), poll_interval=0.01)
    await logs.start()
    logs.register("w#0", logs.raw_path("w#0"))
    print("ready", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


def logged_lines(path: Path) -> int:
    try:
        return path.read_text().count("\n")
    except FileNotFoundError:
        return 0


async def test_kill_9_loses_nothing(tmp_path: Path) -> None:
    root = tmp_path / ".shoal" / "logs"
    logs = LogStore(root)
    raw = logs.raw_path("w#0")
    runtime = ProcessRuntime()
    spec = InstanceSpec(
        app="logs",
        kind="service",
        name="w",
        ordinal=0,
        revision="r",
        command=(sys.executable, "-c", WRITER),
        log_path=raw,
    )
    daemon = subprocess.Popen(
        [sys.executable, "-c", DAEMON, str(root)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert daemon.stdout is not None
        assert daemon.stdout.readline() == "ready\n"
        handle = await runtime.start(spec)
        deadline = time.monotonic() + 5
        while logged_lines(logs.log_path("w#0")) < 300:
            assert time.monotonic() < deadline, "the daemon never tailed anything"
            await asyncio.sleep(0.005)
    finally:
        daemon.send_signal(signal.SIGKILL)
        daemon.wait()
        if daemon.stdout is not None:
            daemon.stdout.close()
    at_kill = logged_lines(logs.log_path("w#0"))
    logs.register("w#0", raw)  # the new daemon picks up where the saved offset says
    exit_ = await runtime.wait(handle)
    await runtime.close()
    assert exit_.success
    logs.unregister("w#0")
    await logs.stop()
    numbers = [int(r.text.split()[1]) for r in logs.read(["w#0"])]
    assert at_kill < LINES, "the writer finished before the kill: nothing was tested"
    assert sorted(set(numbers)) == list(range(LINES))  # nothing lost
    backward = [i for i in range(1, len(numbers)) if numbers[i] <= numbers[i - 1]]
    assert len(backward) <= 1  # at most one batch read twice...
    if backward:
        i = backward[0]
        repeated = numbers[i : i + (numbers[i - 1] - numbers[i] + 1)]
        assert repeated == list(range(numbers[i], numbers[i - 1] + 1))  # ...and contiguous
        print(f"killed at {at_kill} lines; {len(repeated)} lines read twice (the unsaved batch)")
    else:
        print(f"killed at {at_kill} lines; no line read twice")
