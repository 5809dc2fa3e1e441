"""Fixtures for the VM suite: qemu and the baking tools (the suite skips, saying why, only when
they truly cannot be had), and the kernel + base root filesystem baked once per session.

The bake goes to the shared cache (``~/.cache/shoal/vm``): a clean cache takes a minute or two
(mmdebstrap), later runs reuse it. Every test that starts a VM must leave none running: the
``no_leftover_vms`` check fails a test whose qemu outlives it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator

import pytest

from shoal.errors import RuntimeNotAvailable
from shoal.runtimes import procfs
from shoal.runtimes.vm import Baker, hosting, kernel
from tests.daemon.conftest import Project, project  # noqa: F401  (the daemon tests' fixture)


@pytest.fixture(scope="session")
def baked() -> Baker:
    """A baker whose kernel and base root filesystem are in the cache (baked now if missing)."""
    try:
        for tool in hosting.BAKE_TOOLS:
            hosting.require(tool)
        kernel.require_tools()
    except RuntimeNotAvailable as exc:
        pytest.skip(f"VM suite: {exc} (make test installs TEST_PACKAGES_VMS)")
    if os.geteuid() != 0:
        pytest.skip("VM suite: baking the base image needs root (mmdebstrap keeps file owners)")
    baker = Baker()
    started = time.monotonic()

    def say(line: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {line}", flush=True)

    async def bake() -> None:
        await baker.kernel(say)
        await baker.guest_init(say)
        await baker.base(say)

    asyncio.run(bake())
    return baker


def qemus_of(state: str) -> list[int]:
    """qemu processes started for the shoal state folder ``state`` (by their environment)."""
    return procfs.with_environ({"SHOAL_STATE": state})


@pytest.fixture
def no_leftover_vms(project: Project) -> Iterator[Project]:  # noqa: F811
    state = str(project.root / ".shoal")
    yield project
    left = qemus_of(state)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"qemu processes left running: {left}"
