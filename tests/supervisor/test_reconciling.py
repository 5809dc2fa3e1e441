"""The reconcile loop in-process, with the real store, log store and process runtime."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from shoal.logs import LogStore
from shoal.manifest import load_manifest
from shoal.runtimes.registry import load_runtime
from shoal.store import InstanceRecord, Store, default_db_path, state_dir
from shoal.supervisor.reconciling import Supervisor

APP = Path(__file__).resolve().parents[1] / "daemon" / "app.py"


@pytest_asyncio.fixture
async def parts(tmp_path: Path) -> AsyncIterator[tuple[Path, Store, LogStore]]:
    shutil.copy(APP, tmp_path / "app.py")
    (tmp_path / "shoal.yaml").write_text(
        "name: demo\nservices:\n  web:\n"
        f"    command: [{sys.executable}, app.py]\n"
        "    health: {http: /healthz}\n"
    )
    store = Store.open(default_db_path(tmp_path / "shoal.yaml"))
    logs = LogStore(state_dir(tmp_path / "shoal.yaml") / "logs")
    await logs.start()
    try:
        yield tmp_path, store, logs
    finally:
        await logs.stop()
        store.close()


async def wait_for(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_an_instance_started_but_not_recorded_is_found_and_killed(
    parts: tuple[Path, Store, LogStore],
) -> None:
    root, store, logs = parts
    state = state_dir(root / "shoal.yaml")
    env = {**os.environ, "SHOAL_STATE": str(state), "SHOAL_SERVICE": "web", "SHOAL_INSTANCE": "0"}
    stray = subprocess.Popen(["sleep", "30"], env=env, start_new_session=True)
    store.upsert_instance(
        InstanceRecord(
            kind="service",
            name="web",
            ordinal=0,
            runtime="process",
            state="starting",
            updated_at=0.0,
        )
    )
    runtimes = {"process": load_runtime("process")}
    supervisor = Supervisor(load_manifest(root / "shoal.yaml"), store, logs, runtimes.__getitem__)
    await supervisor.start()
    try:
        assert await asyncio.to_thread(stray.wait, 5) is not None  # killed by the sweep
        await wait_for(lambda: supervisor.ready_endpoints("web"))
        [inst] = supervisor.snapshot()
        assert inst.pid != stray.pid
    finally:
        await supervisor.shutdown(timeout=20)
        await runtimes["process"].close()
    assert [r.state for r in store.list_instances()] == ["exited"]
