"""The Swarm export of examples/shop: golden stack file, checked by Docker's own loader
(``docker stack config`` validates against the Compose schema without an engine)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from shoal.exporters.documents import render
from shoal.exporters.swarm import export_swarm
from shoal.manifest import Manifest
from tests.exporters.conftest import check_golden


def test_golden(shop: Manifest) -> None:
    check_golden(export_swarm(shop), "swarm")


def _stack_config(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI (Debian package docker.io) to validate the stack file")
    path = tmp_path / "stack.yaml"
    path.write_text(text)
    return subprocess.run(
        [docker, "stack", "config", "-c", str(path)], capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("which", ["shop", "full"])
def test_docker_accepts_the_stack(
    which: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    manifest: Manifest = request.getfixturevalue(which)
    done = _stack_config(render(export_swarm(manifest).documents[0]), tmp_path)
    assert done.returncode == 0, done.stderr


def test_docker_refuses_a_broken_stack(shop: Manifest, tmp_path: Path) -> None:
    text = render(export_swarm(shop).documents[0]).replace("start-first", "sideways")
    done = _stack_config(text, tmp_path)
    assert done.returncode != 0 and "order" in done.stderr


def test_shop_mapping(shop: Manifest) -> None:
    export = export_swarm(shop)
    stack = yaml.safe_load(render(export.documents[0]))
    catalog = stack["services"]["catalog"]
    assert catalog["deploy"]["replicas"] == 2
    assert catalog["deploy"]["update_config"]["order"] == "start-first"
    assert catalog["deploy"]["restart_policy"] == {
        "condition": "any",
        "delay": "100ms",
        "window": "10s",
    }
    assert catalog["ports"] == [{"target": 8080, "protocol": "tcp", "mode": "host"}]
    assert stack["services"]["thumbnail"]["image"] == "shoal/shop-fn-thumbnail:latest"
    assert stack["services"]["thumbnail"]["deploy"]["replicas"] == 1
    gaps = {g.path for g in export.gaps}
    assert {
        "functions.thumbnail.min_instances",
        "jobs.nightly-report",
        "services.catalog.restart.backoff.factor",
    } <= gaps
