"""Adoption: a new daemon takes over instances its killed predecessor started.

The "old daemon" is a separate Python process that starts an instance with a ProcessRuntime,
prints the handle's identity and is then killed with SIGKILL. The instance lives on, no longer
anyone's child we can reap; the test's own runtime adopts it from the printed handle.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.runtimes.base import Handle, InstanceSpec
from shoal.runtimes.process import ProcessRuntime
from shoal.runtimes.procfs import group_members
from shoal.runtimes.watching import ADOPTED_REASON

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(10)]

OLD_DAEMON = """
import asyncio, json, sys
from pathlib import Path
from shoal.runtimes.base import InstanceSpec
from shoal.runtimes.process import ProcessRuntime

async def main():
    runtime = ProcessRuntime()
    spec = InstanceSpec(
        app="adopt", kind="service", name="svc", ordinal=0, revision="r",
        command=(sys.executable, "-c", sys.argv[2], sys.argv[3]), log_path=Path(sys.argv[1]),
    )
    handle = await runtime.start(spec)
    print(json.dumps({"pid": handle.pid, "start": handle.pid_start_time,
                      "ref": handle.runtime_ref, "started_at": handle.started_at}), flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""

# The instance: forks one helper, says ready, then exits when the "go" file (argv[1]) appears.
INSTANCE = """
import os, sys, time
from pathlib import Path
if os.fork() == 0:
    time.sleep(60)
    os._exit(0)
print("ready", flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
sys.exit(5)
"""


def _started_by_old_daemon(tmp_path: Path) -> tuple[dict[str, Any], InstanceSpec]:
    log_path = tmp_path / "svc.raw"
    go = str(tmp_path / "go")
    old = subprocess.Popen(
        [sys.executable, "-c", OLD_DAEMON, str(log_path), INSTANCE, go],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert old.stdout is not None
    try:
        identity = json.loads(old.stdout.readline())
    finally:
        old.send_signal(signal.SIGKILL)  # the daemon crashes; its instance lives on
        old.wait()
        old.stdout.close()
    deadline = time.monotonic() + 5
    while "ready" not in (log_path.read_text() if log_path.exists() else ""):
        assert time.monotonic() < deadline, "instance never got ready"
        time.sleep(0.01)
    spec = InstanceSpec(
        app="adopt",
        kind="service",
        name="svc",
        ordinal=0,
        revision="r",
        command=(sys.executable, "-c", INSTANCE, go),
        log_path=log_path,
    )
    return identity, spec


def _handle(identity: dict[str, Any], spec: InstanceSpec, **changes: Any) -> Handle:
    fields: dict[str, Any] = {
        "spec": spec,
        "pid": identity["pid"],
        "pid_start_time": identity["start"],
        "runtime_ref": identity["ref"],
        "started_at": identity["started_at"],
    }
    fields.update(changes)
    return Handle(**fields)


@pytest.fixture
def orphan(tmp_path: Path) -> Iterator[tuple[Handle, Path]]:
    """An instance whose daemon was SIGKILLed; killed for good after the test."""
    identity, spec = _started_by_old_daemon(tmp_path)
    handle = _handle(identity, spec)
    yield handle, tmp_path / "go"
    with contextlib.suppress(ProcessLookupError):
        os.killpg(identity["pid"], signal.SIGKILL)


async def test_adopted_instance_is_watched_until_it_exits(
    runtime: ProcessRuntime, orphan: tuple[Handle, Path], is_alive: Callable[[int], bool]
) -> None:
    handle, go = orphan
    assert handle.pid is not None
    assert os.getppid() != handle.pid  # not our child: we could not reap it
    members = group_members(handle.pid)
    assert len(members) == 2
    adopted = await runtime.adopt(handle)
    assert adopted == handle
    assert await runtime.adopt(handle) == handle  # adopting twice is harmless
    stats = await runtime.stats(handle)
    assert stats is not None and stats.rss_bytes > 0
    with pytest.raises(TimeoutError):  # it runs on until told to exit
        await asyncio.wait_for(runtime.wait(handle), 0.3)
    assert is_alive(handle.pid)
    go.touch()
    started = time.monotonic()
    exit_ = await runtime.wait(handle)
    assert time.monotonic() - started < 2
    assert exit_.code is None and exit_.reason == ADOPTED_REASON
    assert not any(is_alive(pid) for pid in members)  # its helper went with it


async def test_adopted_instance_can_be_stopped(
    runtime: ProcessRuntime, orphan: tuple[Handle, Path], is_alive: Callable[[int], bool]
) -> None:
    handle, _ = orphan
    assert handle.pid is not None
    members = group_members(handle.pid)
    assert await runtime.adopt(handle) is not None
    exit_ = await runtime.stop(handle, grace=2)
    assert exit_.reason == ADOPTED_REASON
    assert not any(is_alive(pid) for pid in members)


async def test_stop_adopts_an_unwatched_handle(
    runtime: ProcessRuntime, orphan: tuple[Handle, Path], is_alive: Callable[[int], bool]
) -> None:
    handle, _ = orphan
    assert handle.pid is not None
    await runtime.stop(handle, grace=2)
    assert not is_alive(handle.pid)


async def test_a_reused_pid_is_never_touched(
    runtime: ProcessRuntime, orphan: tuple[Handle, Path], is_alive: Callable[[int], bool]
) -> None:
    handle, _ = orphan
    assert handle.pid is not None and handle.pid_start_time is not None
    for wrong in (handle.pid_start_time - 100, handle.pid_start_time + 0.5):
        impostor = dataclasses.replace(handle, pid_start_time=wrong)
        assert await runtime.adopt(impostor) is None
        assert (await runtime.stop(impostor, grace=0)).reason == "already gone"
        await runtime.signal(impostor, signal.SIGKILL)
        assert await runtime.stats(impostor) is None
    assert is_alive(handle.pid)
    assert len(group_members(handle.pid)) == 2


async def test_a_gone_process_is_not_adopted(
    runtime: ProcessRuntime, make_spec: Callable[..., InstanceSpec]
) -> None:
    handle = await runtime.start(make_spec("pass"))
    await runtime.wait(handle)
    fresh = ProcessRuntime()
    assert await fresh.adopt(handle) is None
    assert await fresh.adopt(Handle(spec=handle.spec)) is None  # no pid at all
    await fresh.close()


async def test_adoption_without_pidfd_polls_proc(
    runtime: ProcessRuntime, orphan: tuple[Handle, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(os, "pidfd_open")
    fallback = ProcessRuntime(poll_interval=0.02)
    handle, go = orphan
    assert await fallback.adopt(handle) is not None
    go.touch()
    exit_ = await fallback.wait(handle)
    assert exit_.reason == ADOPTED_REASON
    await fallback.close()
