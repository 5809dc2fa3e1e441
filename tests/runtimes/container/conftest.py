"""Fixtures for the container suite: a real Docker Engine (the suite skips, saying why, only
when none can be had), the busybox test image, and per-test app names whose containers are
removed by label at teardown (a container left running fails the test)."""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from tests.daemon.conftest import Project, project  # noqa: F401  (the daemon tests' fixture)

try:
    from shoal.runtimes.container import ContainerRuntime, busybox_image, connect, reachable
    from shoal.runtimes.container.engine import LABEL_APP
except ModuleNotFoundError as missing:  # the docker SDK: pip install 'shoal[docker]'
    collect_ignore_glob = ["test_*.py"]
    print(
        f"tests/runtimes/container skipped: {missing.name!r} is not installed (shoal[docker])",
        file=sys.stderr,
    )

_NAMES = itertools.count()


@pytest.fixture(scope="session")
def engine() -> Iterator[Any]:
    """A client of the local Docker Engine; skips the suite (with the reason) if none answers."""
    problem = reachable()
    if problem is not None:
        pytest.skip(
            f"no Docker Engine here: {problem} (make test starts one: scripts/start-dockerd)"
        )
    client = connect()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def busybox(engine: Any) -> str:
    """The tag of the busybox test image (made once per engine)."""
    return busybox_image(client=engine)


@pytest.fixture
def app_name(engine: Any) -> Iterator[str]:
    """A unique app name; every container labelled with it is removed after the test, and one
    still running then fails the test."""
    name = f"ct{os.getpid()}x{next(_NAMES)}"
    yield name
    left = engine.api.containers(all=True, filters={"label": f"{LABEL_APP}={name}"})
    running = [c["Names"] for c in left if c.get("State") == "running"]
    for container in left:
        engine.api.remove_container(container["Id"], force=True)
    assert not running, f"containers left running: {running}"


@pytest_asyncio.fixture
async def runtime(engine: Any) -> AsyncIterator[ContainerRuntime]:
    """A ContainerRuntime; instances the test leaves are stopped, and the test fails for it."""
    runtime = ContainerRuntime()
    yield runtime
    leftovers = [follower.handle for follower in runtime._followers.values()]
    for handle in leftovers:
        await runtime.stop(handle, grace=0)
    await runtime.close()
    assert not leftovers, f"instances left running: {[h.spec.label for h in leftovers]}"
