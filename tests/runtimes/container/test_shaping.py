"""What the container runtime sends the engine and how it reads the answers (pure: no engine)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from shoal.runtimes.base import InstanceSpec, Limits
from shoal.runtimes.container.running import repository_of, stats_of
from shoal.runtimes.container.shaping import (
    container_name,
    create_options,
    exit_of,
    labels_of,
    matches,
    memory_limit_text,
    nano_cpus,
    stop_seconds,
    sweep_filters,
)


def spec(**fields: Any) -> InstanceSpec:
    defaults: dict[str, Any] = {
        "app": "shop",
        "kind": "service",
        "name": "catalog",
        "ordinal": 2,
        "revision": "r9",
        "command": None,
        "env": {"PORT": "8080", "SHOAL_STATE": "/srv/shop/.shoal"},
        "port": 8080,
        "host_port": 41000,
        "log_path": Path("/tmp/catalog-2.raw"),
        "image": "shoal/busybox:1",
    }
    defaults.update(fields)
    return InstanceSpec(**defaults)


def test_create_options_publish_on_loopback_and_carry_limits_and_labels() -> None:
    options = create_options(
        spec(
            command=("python3", "app.py"),
            workdir=Path("/app"),
            limits=Limits(cpus=1.5, memory_bytes=1 << 30),
            stop_grace=2.5,
        ),
        "shoal/shop-catalog:abc",
    )
    host = options["host_config"]
    assert host["port_bindings"] == {8080: ("127.0.0.1", 41000)}
    assert host["nano_cpus"] == 1_500_000_000
    assert host["mem_limit"] == host["memswap_limit"] == 1 << 30
    assert host["init"] is True
    assert options["ports"] == [8080]
    assert options["command"] == ["python3", "app.py"]
    assert options["working_dir"] == "/app"
    assert options["stop_timeout"] == 3  # whole seconds, rounded up
    assert options["labels"] == {
        "io.shoal.app": "shop",
        "io.shoal.service": "catalog",
        "io.shoal.instance": "2",
        "io.shoal.revision": "r9",
        "io.shoal.kind": "service",
        "io.shoal.state": "/srv/shop/.shoal",
    }


def test_defaults_leave_the_image_in_charge() -> None:
    options = create_options(spec(port=None, host_port=None), "img")
    assert options["command"] is None and "working_dir" not in options
    assert options["ports"] is None and "port_bindings" not in options["host_config"]
    assert "nano_cpus" not in options["host_config"] and "mem_limit" not in options["host_config"]


@pytest.mark.parametrize(
    ("state", "code", "signum", "oom", "reason"),
    [
        ({"ExitCode": 0}, 0, None, False, "exited with code 0"),
        ({"ExitCode": 3}, 3, None, False, "exited with code 3"),
        ({"ExitCode": 137}, None, signal.SIGKILL, False, "killed by SIGKILL"),
        ({"ExitCode": 143}, None, signal.SIGTERM, False, "killed by SIGTERM"),
        (
            {"ExitCode": 137, "OOMKilled": True},
            None,
            signal.SIGKILL,
            True,
            "out of memory (memory limit 64M)",
        ),
        (
            {"ExitCode": 127, "Error": "exec: nope: not found"},
            127,
            None,
            False,
            "exited with code 127: exec: nope: not found",
        ),
        ({}, None, None, False, "exit status unknown"),
    ],
)
def test_exit_of_reads_the_engine_like_a_shell(
    state: dict[str, Any], code: int | None, signum: int | None, oom: bool, reason: str
) -> None:
    exit_ = exit_of(state, "memory limit 64M")
    assert (exit_.code, exit_.signal, exit_.oom_killed) == (code, signum, oom)
    if state:
        assert exit_.reason == reason
    else:
        assert exit_.code is None and exit_.signal is None


def test_small_conversions() -> None:
    assert nano_cpus(0.5) == 500_000_000 and nano_cpus(2) == 2_000_000_000
    assert stop_seconds(0) == 0 and stop_seconds(0.2) == 1 and stop_seconds(10) == 10
    assert memory_limit_text(spec(limits=Limits(memory_bytes=64 << 20))) == "memory limit 64M"
    assert memory_limit_text(spec()) == ""
    name = container_name(spec(app="my app"), suffix="abc")
    assert name == "shoal-my-app-catalog-2-abc"
    assert container_name(spec()) != container_name(spec())  # unique across restarts
    assert repository_of("Shop", "Catalog") == "shoal/shop-catalog"


def test_labels_decide_adoption_and_sweeps() -> None:
    mine = labels_of(spec())
    assert matches(mine, spec())
    assert matches(mine, spec(app=""))  # `shoal down` without a manifest knows no app name
    assert not matches(mine, spec(ordinal=1))
    assert not matches(mine, spec(name="orders"))
    assert not matches(mine, spec(app="other"))
    assert not matches(None, spec())
    assert sweep_filters({"SHOAL_SERVICE": "catalog"}) is None  # never unscoped
    assert sweep_filters(
        {"SHOAL_STATE": "/srv/shop/.shoal", "SHOAL_SERVICE": "catalog", "SHOAL_INSTANCE": "2"}
    ) == {
        "io.shoal.state": "/srv/shop/.shoal",
        "io.shoal.service": "catalog",
        "io.shoal.instance": "2",
    }


def test_stats_of_the_engine_document() -> None:
    raw = {
        "cpu_stats": {"cpu_usage": {"total_usage": 2_500_000_000}},
        "memory_stats": {"usage": 10 << 20, "stats": {"cache": 4 << 20}},
    }
    stats = stats_of(raw)
    assert stats is not None and stats.cpu_seconds == 2.5 and stats.rss_bytes == 6 << 20
    assert stats_of({}) is None
