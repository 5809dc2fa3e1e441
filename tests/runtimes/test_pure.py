"""The pure parts of the runtimes: /proc and cgroup parsing, exits, environments, registry."""

from __future__ import annotations

import errno
import os
import signal
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.errors import RuntimeNotAvailable
from shoal.runtimes import RUNTIMES, cgroupfs, load_runtime, procfs, registry
from shoal.runtimes.base import Handle, InstanceSpec
from shoal.runtimes.spawning import DEFAULT_ENV, build_env, describe_exec_error
from shoal.runtimes.watching import ADOPTED_REASON, describe_exit, signal_name

STAT = (
    "4242 (my (odd) app) S 1 4242 4242 0 -1 4194560 1234 0 0 0 "
    "150 30 7 3 20 0 1 0 987654 12345678 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 "
    "1 0 0 0 0 0"
)


def test_parse_stat_reads_fields_past_a_tricky_comm() -> None:
    stat = procfs.parse_stat(STAT)
    assert (stat.pid, stat.comm, stat.state, stat.ppid, stat.pgrp, stat.session) == (
        4242,
        "my (odd) app",
        "S",
        1,
        4242,
        4242,
    )
    assert (stat.utime, stat.stime, stat.cutime, stat.cstime, stat.starttime) == (
        150,
        30,
        7,
        3,
        987654,
    )


@given(st.text(alphabet=st.characters(blacklist_characters="\n\x00"), max_size=16))
def test_parse_stat_any_comm(comm: str) -> None:
    stat = procfs.parse_stat(STAT.replace("my (odd) app", comm))
    assert stat.comm == comm
    assert stat.starttime == 987654


def test_start_times() -> None:
    assert procfs.parse_boot_time("cpu 1 2 3\nbtime 1700000000\nprocesses 9\n") == 1700000000
    with pytest.raises(ValueError, match="btime"):
        procfs.parse_boot_time("cpu 1 2 3\n")
    assert procfs.start_time_epoch(250, 1700000000, clock_ticks=100) == 1700000002.5
    assert procfs.same_start(1700000002.5, 1700000002.51, clock_ticks=100)
    assert not procfs.same_start(1700000002.5, 1700000002.53, clock_ticks=100)
    assert procfs.parse_statm_rss("1000 250 10 1 0 100 0", page_size=4096) == 250 * 4096


def test_this_process_in_proc() -> None:
    me = procfs.read_stat(os.getpid())
    assert me is not None and me.pid == os.getpid()
    assert procfs.is_alive(os.getpid(), procfs.process_start_time(os.getpid()))
    assert os.getpid() in procfs.group_members(os.getpgid(0))
    usage = procfs.usage([os.getpid()])
    assert usage is not None and usage[1] > 0
    assert procfs.read_stat(2**22 + 1) is None  # above any pid_max
    assert procfs.usage([2**22 + 1]) is None


MOUNTINFO = """\
25 1 0:23 / /sys rw,nosuid - sysfs sysfs rw
33 25 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
34 33 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 33 0:30 / /sys/fs/cgroup/memory rw,relatime shared:5 - cgroup cgroup rw,memory
36 33 0:31 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd
37 33 0:32 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
38 1 0:33 /docker/abc /mnt/with\\040space rw - cgroup cgroup ro,cpuacct,cpu
"""


def test_parse_mountinfo() -> None:
    mounts = cgroupfs.parse_mountinfo(MOUNTINFO)
    assert [(m.version, str(m.mount_point), sorted(m.controllers)) for m in mounts] == [
        (1, "/sys/fs/cgroup/cpu", ["cpu"]),
        (1, "/sys/fs/cgroup/memory", ["memory"]),
        (1, "/sys/fs/cgroup/systemd", []),
        (2, "/sys/fs/cgroup/unified", []),
        (1, "/mnt/with space", ["cpu", "cpuacct"]),
    ]
    assert mounts[-1].root == "/docker/abc"
    assert cgroupfs.parse_mountinfo("garbage\n\n1 2 3\n") == []


def test_parse_proc_cgroup() -> None:
    text = "9:name=systemd:/\n4:memory:/process_api/x\n1:cpu,cpuacct:/\n0::/user.slice\nbad\n"
    assert cgroupfs.parse_proc_cgroup(text) == {
        "name=systemd": "/",
        "memory": "/process_api/x",
        "cpu": "/",
        "cpuacct": "/",
        "": "/user.slice",
    }


def test_own_dir() -> None:
    host = cgroupfs.Mount(
        version=1, mount_point=Path("/sys/fs/cgroup/memory"), root="/", controllers=frozenset()
    )
    assert cgroupfs.own_dir(host, "/") == Path("/sys/fs/cgroup/memory")
    assert cgroupfs.own_dir(host, "/a/b") == Path("/sys/fs/cgroup/memory/a/b")
    boxed = cgroupfs.Mount(
        version=2, mount_point=Path("/sys/fs/cgroup"), root="/docker/abc", controllers=frozenset()
    )
    assert cgroupfs.own_dir(boxed, "/docker/abc") == Path("/sys/fs/cgroup")
    assert cgroupfs.own_dir(boxed, "/docker/abc/x") == Path("/sys/fs/cgroup/x")
    assert cgroupfs.own_dir(boxed, "/../other") == Path("/sys/fs/cgroup")


def test_limit_values() -> None:
    assert cgroupfs.cpu_quota_us(0.5) == 50_000
    assert cgroupfs.cpu_quota_us(0.001) == cgroupfs.MIN_CPU_QUOTA_US
    assert cgroupfs.cpu_max_text(2) == "200000 100000"
    assert cgroupfs.parse_cpu_max("max 100000\n") is None
    assert cgroupfs.parse_cpu_max("50000 100000\n") == 0.5
    assert cgroupfs.parse_v1_cpu("-1\n", "100000\n") is None
    assert cgroupfs.parse_v1_cpu("25000\n", "100000\n") == 0.25
    assert cgroupfs.parse_memory_limit("max\n") is None
    assert cgroupfs.parse_memory_limit("9223372036854771712\n") is None
    assert cgroupfs.parse_memory_limit("134217728\n") == 134217728
    assert cgroupfs.parse_flat_keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n") == {
        "oom_kill_disable": 0,
        "under_oom": 0,
        "oom_kill": 2,
    }
    assert cgroupfs.parse_pids("12\n13\n\n") == [12, 13]
    assert cgroupfs.safe_name("web app/1") == "web_app_1"
    assert cgroupfs.safe_name(".hidden") == "_hidden"
    assert cgroupfs.safe_name("") == "_"


@pytest.mark.parametrize(
    ("oom_kills", "failcnt", "sigkilled", "expected"),
    [
        (1, None, True, True),
        (1, 5, False, True),  # the kernel's count decides when it is known
        (0, 5, True, False),
        (None, 3, True, True),  # no counter: hitting the limit and dying by SIGKILL
        (None, 3, False, False),
        (None, 0, True, False),
        (None, None, True, False),
    ],
)
def test_was_oom_killed(
    oom_kills: int | None, failcnt: int | None, sigkilled: bool, expected: bool
) -> None:
    assert cgroupfs.was_oom_killed(oom_kills, failcnt, sigkilled) is expected


@pytest.mark.parametrize(
    ("returncode", "oom", "code", "signum", "reason"),
    [
        (0, False, 0, None, "exited with code 0"),
        (3, False, 3, None, "exited with code 3"),
        (-signal.SIGTERM, False, None, signal.SIGTERM, "killed by SIGTERM"),
        (-signal.SIGKILL, True, None, signal.SIGKILL, "out of memory (limit 128Mi)"),
        (1, True, 1, None, "exited with code 1 after running out of memory (limit 128Mi)"),
        (None, False, None, None, ADOPTED_REASON),
        (None, True, None, None, "out of memory (limit 128Mi)"),
    ],
)
def test_describe_exit(
    returncode: int | None, oom: bool, code: int | None, signum: int | None, reason: str
) -> None:
    exit_ = describe_exit(returncode, oom=oom, limit="limit 128Mi")
    assert (exit_.code, exit_.signal, exit_.oom_killed, exit_.reason) == (code, signum, oom, reason)


def test_signal_names() -> None:
    assert signal_name(9) == "SIGKILL"
    assert signal_name(200) == "signal 200"


def test_build_env_precedence() -> None:
    daemon = {"PATH": "/daemon/bin", "HOME": "/root", "AWS_SECRET": "x", "LANG": "C.UTF-8"}
    env = build_env(daemon, {"PORT": "8080", "HOME": "/srv", "PYTHONUNBUFFERED": "0"})
    assert env == {
        "PATH": "/daemon/bin",
        "HOME": "/srv",
        "LANG": "C.UTF-8",
        "PORT": "8080",
        "PYTHONUNBUFFERED": "0",
    }
    assert build_env({}, {})["PATH"] == DEFAULT_ENV["PATH"]


def test_describe_exec_error() -> None:
    missing = FileNotFoundError(errno.ENOENT, "No such file or directory", "node")
    assert "not found on the instance's PATH" in describe_exec_error(missing, ("node",), None)
    workdir = FileNotFoundError(errno.ENOENT, "No such file or directory", "/srv/x")
    assert describe_exec_error(workdir, ("node",), "/srv/x").startswith("workdir '/srv/x'")
    noexec = OSError(errno.ENOEXEC, "Exec format error", "./run")
    assert "#!" in describe_exec_error(noexec, ("./run",), None)


def test_registry_names() -> None:
    assert set(RUNTIMES) == {"process", "container", "vm"}
    with pytest.raises(RuntimeNotAvailable, match="did you mean 'process'") as caught:
        load_runtime("proces")
    assert caught.value.runtime == "proces" and caught.value.extra is None


@pytest.mark.parametrize("name", ["container", "vm"])
def test_drivers_not_shipped_yet(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # both drivers ship now: a registry entry whose module is missing stands for a future one
    monkeypatch.setitem(registry.RUNTIMES, name, "shoal.runtimes.not_shipped:Driver")
    with pytest.raises(RuntimeNotAvailable, match="not available yet in this version") as caught:
        load_runtime(name)
    assert caught.value.__cause__ is not None  # the ImportError is kept, not shown


def test_missing_optional_dependency_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "shoal_fake_driver.py").write_text("import docker_sdk_not_installed\n")
    (tmp_path / "shoal_fake_plain.py").write_text("class NotARuntime:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registry.RUNTIMES, "container", "shoal_fake_driver:ContainerRuntime")
    with pytest.raises(RuntimeNotAvailable) as caught:
        load_runtime("container")
    assert caught.value.extra == "docker"
    assert "pip install 'shoal[docker]'" in str(caught.value)
    assert "docker_sdk_not_installed" in str(caught.value)
    monkeypatch.setitem(registry.RUNTIMES, "container", "shoal_fake_plain:Missing")
    with pytest.raises(RuntimeNotAvailable, match="has no Missing"):
        load_runtime("container")
    monkeypatch.setitem(registry.RUNTIMES, "container", "shoal_fake_plain:NotARuntime")
    with pytest.raises(TypeError, match="Runtime protocol"):
        load_runtime("container")
    sys.modules.pop("shoal_fake_plain", None)


def test_a_handle_names_the_same_process_only_with_its_pid_and_start_time() -> None:
    spec = InstanceSpec(
        app="a",
        kind="service",
        name="s",
        ordinal=0,
        revision="r",
        command=("x",),
        log_path=Path("/dev/null"),
    )
    started = Handle(spec=spec, pid=42, pid_start_time=100.0)
    assert started.same_process(Handle(spec=spec, pid=42, pid_start_time=100.0 + 0.5 / 100))
    assert not started.same_process(Handle(spec=spec, pid=42, pid_start_time=101.0))  # pid reused
    assert not started.same_process(Handle(spec=spec, pid=43, pid_start_time=100.0))
    assert not started.same_process(Handle(spec=spec, pid=42))
    assert Handle(spec=spec, pid=42).same_process(Handle(spec=spec, pid=42))
    assert not Handle(spec=spec).same_process(Handle(spec=spec))
