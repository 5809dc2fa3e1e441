"""Resource limits through cgroups: real ones where this machine allows, fake trees for the rest.

The real-cgroup cases skip (saying why) only where the limit cannot be enforced here; what
cannot be enforced must then be announced by a warning, which is tested without cgroups.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from shoal.runtimes.base import InstanceSpec, Limits
from shoal.runtimes.cgroup import InstanceCgroup
from shoal.runtimes.process import ProcessRuntime
from shoal.runtimes.sandbox import Sandbox

pytestmark = pytest.mark.timeout(10)

MiB = 1024 * 1024
SLEEPER = "import time\nprint('ready')\ntime.sleep(60)"
HOG = (
    "chunks = []\n"
    "while True:\n"
    "    chunks.append(bytearray(4 * 1024 * 1024))  # zero-filled: every page is touched\n"
)
BUSY = (
    "import time\n"
    "end = time.monotonic() + 1.0\n"
    "while time.monotonic() < end:\n"
    "    pass\n"
    "print('cpu', time.process_time())"
)


def need(sandbox: Sandbox, limits: Limits) -> None:
    """Skip, saying why, when this machine cannot enforce ``limits``."""
    why = sandbox.missing(limits)
    if why is not None:
        print(f"cgroup limits not enforceable here: {why}")
        pytest.skip(f"cgroup limits not enforceable here: {why}")


def cgroup_of(spec: InstanceSpec, ref: str | None) -> InstanceCgroup:
    cgroup = InstanceCgroup.from_ref(spec.label, ref)
    assert cgroup is not None
    return cgroup


@pytest.mark.asyncio
async def test_limits_are_written_and_read_back(
    runtime: ProcessRuntime, make_spec: Callable[..., InstanceSpec]
) -> None:
    limits = Limits(cpus=0.5, memory_bytes=64 * MiB)
    need(runtime.sandbox, limits)
    spec = make_spec(SLEEPER, limits=limits)
    handle = await runtime.start(spec)
    cgroup = cgroup_of(spec, handle.runtime_ref)
    assert cgroup.read_limits() == limits
    assert handle.pid in cgroup.pids()
    assert all("/shoal/shoaltest-" in str(path) for path in cgroup.dirs)
    if cgroup.version == 1 and cgroup.memory_dir is not None:
        memsw = cgroup.memory_dir / "memory.memsw.limit_in_bytes"
        if memsw.exists():
            assert int(memsw.read_text()) == 64 * MiB  # no swapping past the limit
    stats = await runtime.stats(handle)
    assert stats is not None and stats.rss_bytes > 0
    await runtime.stop(handle, grace=1)
    assert not any(path.exists() for path in cgroup.dirs)  # removed once the instance ended


@pytest.mark.asyncio
async def test_memory_limit_kills_with_oom_killed(
    runtime: ProcessRuntime, make_spec: Callable[..., InstanceSpec]
) -> None:
    limits = Limits(memory_bytes=32 * MiB)
    need(runtime.sandbox, limits)
    spec = make_spec(HOG, limits=limits)
    handle = await runtime.start(spec)
    exit_ = await runtime.wait(handle)
    assert exit_.oom_killed
    assert exit_.signal == signal.SIGKILL
    assert exit_.reason == "out of memory (limit 32Mi)"
    assert not any(path.exists() for path in cgroup_of(spec, handle.runtime_ref).dirs)


@pytest.mark.asyncio
async def test_cpu_quota_is_enforced(
    runtime: ProcessRuntime, make_spec: Callable[..., InstanceSpec]
) -> None:
    limits = Limits(cpus=0.2)
    need(runtime.sandbox, limits)
    spec = make_spec(BUSY, limits=limits)
    exit_ = await runtime.wait(await runtime.start(spec))
    assert exit_.success
    (line,) = [x for x in spec.log_path.read_text().splitlines() if x.startswith("cpu ")]
    used = float(line.split()[1])
    assert used < 0.5, f"a 0.2-CPU instance used {used:.2f} CPU seconds in 1 s"


@pytest.mark.asyncio
async def test_unenforceable_limits_warn_once_per_service(
    make_spec: Callable[..., InstanceSpec], caplog: pytest.LogCaptureFixture
) -> None:
    runtime = ProcessRuntime(sandbox=Sandbox.disabled("no cgroups in this test"))
    limits = Limits(cpus=1, memory_bytes=64 * MiB)
    caplog.set_level(logging.WARNING, logger="shoal.runtimes.sandbox")
    specs = [
        make_spec("pass", name="web", ordinal=0, limits=limits),
        make_spec("pass", name="web", ordinal=1, limits=limits),
        make_spec("pass", name="api", ordinal=0, limits=limits),
    ]
    for spec in specs:
        handle = await runtime.start(spec)
        assert handle.runtime_ref is None
        assert (await runtime.wait(handle)).success  # runs, unlimited
    await runtime.close()
    warnings = [r for r in caplog.records if r.name == "shoal.runtimes.sandbox"]
    assert len(warnings) == 2
    assert all("running without resource limits" in r.getMessage() for r in warnings)
    assert all("no cgroups in this test" in r.getMessage() for r in warnings)
    assert {r.getMessage().split("]")[0] for r in warnings} == {"[web", "[api"}


@pytest.mark.asyncio
async def test_no_limits_means_no_cgroup(
    runtime: ProcessRuntime, make_spec: Callable[..., InstanceSpec]
) -> None:
    handle = await runtime.start(make_spec("pass"))
    assert handle.runtime_ref is None
    await runtime.wait(handle)


# ---------------------------------------------------------------- fake cgroup trees


def fake_proc(tmp_path: Path, mountinfo: str, cgroup: str) -> Path:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mountinfo").write_text(mountinfo)
    (proc / "self" / "cgroup").write_text(cgroup)
    return proc


def v2_tree(tmp_path: Path, own: str = "", delegated: str = "") -> tuple[Path, Path]:
    root = tmp_path / "cg2"
    folder = root / own if own else root
    folder.mkdir(parents=True)
    (folder / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (folder / "cgroup.subtree_control").write_text(delegated)
    mountinfo = f"35 24 0:30 / {root} rw,nosuid,nodev shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
    proc = fake_proc(tmp_path, mountinfo, f"0::/{own}\n")
    return proc, folder


def test_v2_at_the_root_writes_cpu_max_and_memory_max(
    tmp_path: Path, make_spec: Callable[..., InstanceSpec]
) -> None:
    proc, root = v2_tree(tmp_path)
    sandbox = Sandbox.detect(proc=proc)
    assert sandbox.why_not is None
    assert sandbox.cpu is not None and sandbox.cpu.version == 2
    assert sandbox.cpu.parent == root / "shoal"
    limits = Limits(cpus=1.5, memory_bytes=128 * MiB)
    cgroup = sandbox.create(make_spec("pass", limits=limits, app="shop", name="web", ordinal=2))
    assert cgroup is not None
    assert cgroup.cpu_dir == cgroup.memory_dir  # one folder in the unified hierarchy
    assert cgroup.dirs[0].parent == root / "shoal" / "shop"
    assert cgroup.dirs[0].name.startswith("web-2-")
    assert (cgroup.dirs[0] / "cpu.max").read_text() == "150000 100000"
    assert (cgroup.dirs[0] / "memory.max").read_text() == str(128 * MiB)
    assert cgroup.read_limits() == limits
    assert (root / "shoal" / "shop" / "cgroup.subtree_control").exists()
    assert InstanceCgroup.from_ref(cgroup.label, cgroup.to_ref()) == cgroup


def test_v2_without_delegation_says_why(tmp_path: Path) -> None:
    proc, _ = v2_tree(tmp_path, own="user.slice/session-1.scope")
    sandbox = Sandbox.detect(proc=proc)
    assert sandbox.cpu is None and sandbox.memory is None
    assert sandbox.why_not is not None and "delegated" in sandbox.why_not
    assert sandbox.missing(Limits(memory_bytes=MiB)) is not None
    assert sandbox.missing(Limits()) is None


def test_v2_with_delegation_is_usable(tmp_path: Path) -> None:
    proc, folder = v2_tree(tmp_path, own="shoal.service", delegated="cpu memory pids\n")
    sandbox = Sandbox.detect(proc=proc)
    assert sandbox.why_not is None
    assert sandbox.memory is not None and sandbox.memory.parent == folder / "shoal"


def test_v1_uses_each_controllers_own_hierarchy(
    tmp_path: Path, make_spec: Callable[..., InstanceSpec]
) -> None:
    cpu, memory = tmp_path / "cg" / "cpu,cpuacct", tmp_path / "cg" / "memory"
    (memory / "daemon").mkdir(parents=True)
    cpu.mkdir(parents=True)
    mountinfo = (
        f"31 25 0:27 / {cpu} rw - cgroup cgroup rw,cpu,cpuacct\n"
        f"32 25 0:28 / {memory} rw - cgroup cgroup rw,memory\n"
        f"33 25 0:29 / {tmp_path / 'cg' / 'systemd'} rw - cgroup cgroup rw,name=systemd\n"
    )
    proc = fake_proc(tmp_path, mountinfo, "4:memory:/daemon\n2:cpu,cpuacct:/\n1:name=systemd:/\n")
    sandbox = Sandbox.detect(proc=proc)
    assert sandbox.why_not is None
    assert sandbox.cpu is not None and sandbox.cpu.parent == cpu / "shoal"
    assert sandbox.memory is not None and sandbox.memory.parent == memory / "daemon" / "shoal"
    cgroup = sandbox.create(make_spec("pass", limits=Limits(cpus=0.25, memory_bytes=MiB)))
    assert cgroup is not None and cgroup.cpu_dir is not None and cgroup.memory_dir is not None
    assert (cgroup.cpu_dir / "cpu.cfs_quota_us").read_text() == "25000"
    assert (cgroup.cpu_dir / "cpu.cfs_period_us").read_text() == "100000"
    assert (cgroup.memory_dir / "memory.limit_in_bytes").read_text() == str(MiB)
    assert cgroup.read_limits() == Limits(cpus=0.25, memory_bytes=MiB)


def test_no_cgroups_mounted(tmp_path: Path, make_spec: Callable[..., InstanceSpec]) -> None:
    proc = fake_proc(tmp_path, "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n", "0::/\n")
    sandbox = Sandbox.detect(proc=proc)
    assert sandbox.why_not == (
        "no mounted cgroup hierarchy offers the cpu controller; "
        "no mounted cgroup hierarchy offers the memory controller"
    )
    assert sandbox.prepare(make_spec("pass", limits=Limits(cpus=1))) is None


def test_unreadable_proc_disables_the_sandbox(tmp_path: Path) -> None:
    sandbox = Sandbox.detect(proc=tmp_path / "nothing")
    assert sandbox.why_not is not None and "cannot read" in sandbox.why_not


def test_refs_that_name_no_cgroup() -> None:
    for ref in (None, "", "not json", "[1]", '{"cgroup": 3}', "container:abc"):
        assert InstanceCgroup.from_ref("x#0", ref) is None
