"""examples/shop on a real single-node Swarm: build the images, deploy the stack, reach the
tasks on 127.0.0.1, scale, update, remove; the swarm is left as it was found.

Needs a Docker Engine (scripts/start-dockerd) and the Debian + Python base image, or mmdebstrap
to make it; skips, saying which is missing, otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shoal.manifest import Project, load_manifest

REPO = Path(__file__).resolve().parents[2]
SHOP = REPO / "examples" / "shop"

pytestmark = pytest.mark.slow


def _engine() -> None:
    pytest.importorskip("docker", reason="the docker SDK (pip install 'shoal[docker]')")
    from shoal.runtimes.container import reachable

    if shutil.which("docker") is None:
        pytest.skip("no docker CLI (Debian package docker.io)")
    problem = reachable()
    if problem is not None:
        pytest.skip(f"no Docker Engine answers ({problem}); start one with scripts/start-dockerd")


def _docker(*args: str) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=True, timeout=60)
    return done.stdout.strip()


def test_deploy_refuses_an_engine_outside_a_swarm(tmp_path: Path) -> None:
    _engine()
    if _docker("info", "--format", "{{.Swarm.LocalNodeState}}") != "inactive":
        pytest.skip("this engine is in a swarm")
    from shoal.deploying import swarm as deploying
    from shoal.errors import DeployError

    shutil.copytree(SHOP, tmp_path / "shop", ignore=shutil.ignore_patterns(".shoal", "*.db"))
    with pytest.raises(DeployError, match="docker swarm init"):
        deploying.deploy_stack(_project(tmp_path / "shop", "shop"))


@pytest.fixture(scope="module")
def swarm() -> Iterator[None]:
    """A single-node swarm: the one found, or one made here and left afterwards."""
    _engine()
    state = _docker("info", "--format", "{{.Swarm.LocalNodeState}}")
    made = state == "inactive"
    if made:
        _docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    elif state != "active":
        pytest.skip(f"this engine's swarm is {state}")
    try:
        yield
    finally:
        if made:
            _docker("swarm", "leave", "--force")
        assert _docker("info", "--format", "{{.Swarm.LocalNodeState}}") == state


def _project(folder: Path, app: str, log_level: str = "info") -> Project:
    text = (SHOP / "shoal.yaml").read_text()
    text = text.replace("name: shop\n", f"name: {app}\n").replace(
        "env: {LOG_LEVEL: info}", f"env: {{LOG_LEVEL: {log_level}}}"
    )
    (folder / "shoal.yaml").write_text(text)
    return load_manifest(folder / "shoal.yaml", environ={})


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def _get(port: int, path: str, body: bytes | None = None) -> dict[str, object]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=5) as response:
        data = json.loads(response.read())
    assert isinstance(data, dict)
    return data


def _answers(port: int, path: str) -> bool:
    try:
        return _get(port, path).get("status") == "ok"
    except OSError:
        return False


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shoal", *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )


def _healthy(port: int) -> Callable[[], bool]:
    return lambda: _answers(port, "/healthz")


@pytest.mark.timeout(300)
def test_deploy_reach_scale_update_remove(swarm: None, tmp_path: Path) -> None:
    from shoal.deploying import swarm as deploying
    from shoal.deploying.building import last_tags

    shutil.copytree(SHOP, tmp_path / "shop", ignore=shutil.ignore_patterns(".shoal", "*.db"))
    folder = tmp_path / "shop"
    app = "shoal-swarm-test"  # one name: its images are reused (content-tagged) run to run
    project = _project(folder, app)
    try:
        done = _cli("deploy", "-t", "swarm", "-f", str(folder))  # build, deploy, wait
        assert done.returncode == 0, done.stderr
        assert "deployed stack" in done.stdout and "127.0.0.1:" in done.stdout
        tags = last_tags(project)
        assert {"catalog", "orders", "fn-thumbnail", "fn-notify"} <= set(tags)
        assert deploying.converged(app)

        def running(counts: dict[str, int]) -> Callable[[], bool]:
            def check() -> bool:
                seen: dict[str, int] = {}
                for task in deploying.tasks(app):
                    if task.state == "running" and task.ports:
                        seen[task.service] = seen.get(task.service, 0) + 1
                return all(seen.get(k, 0) == v for k, v in counts.items())

            return check

        wait_for(
            "the stack's tasks", running({"catalog": 2, "orders": 1, "thumbnail": 1, "notify": 1})
        )

        def catalog_ports() -> set[int]:
            return {
                t.ports[0]
                for t in deploying.tasks(app)
                if t.service == "catalog" and t.state == "running" and t.ports
            }

        views = deploying.tasks(app)
        for port in catalog_ports():  # every replica, on its own host port, via 127.0.0.1
            wait_for(f"catalog on {port}", _healthy(port))
            products = _get(port, "/catalog/products")["products"]
            assert isinstance(products, list) and products
        thumbnail = next(t.ports[0] for t in views if t.service == "thumbnail")
        answers: list[dict[str, object]] = []

        def thumbnail_answers() -> bool:
            try:
                body = json.dumps({"width": 64, "height": 32}).encode()
                answers.append(_get(thumbnail, "/thumbnail", body))
            except OSError:  # the engine's port is open before the gateway inside listens
                return False
            return True

        wait_for("the thumbnail function", thumbnail_answers)
        assert answers[-1]["source"] == {"width": 64, "height": 32}

        def catalog_tasks(*filters: str) -> set[str]:  # shut-down ones too, unless filtered
            return set(_docker("service", "ps", f"{app}_catalog", "-q", *filters).split())

        def running_catalog_tasks() -> set[str]:
            return catalog_tasks("--filter", "desired-state=running")

        # Scaling adds a task and touches no other: the two running keep their ids and ports
        # (the Docker SDK's own scale resubmits the spec with defaults filled in, and Swarm
        # then replaces every task).
        before, before_ports, known = running_catalog_tasks(), catalog_ports(), catalog_tasks()
        assert len(before) == 2 and len(before_ports) == 2
        deploying.scale(app, "catalog", 3)
        wait_for("three catalog tasks", lambda: len(catalog_ports()) == 3)
        ports = catalog_ports()
        assert before < running_catalog_tasks() and before_ports < ports
        assert len(catalog_tasks() - known) == 1  # one task made, none replaced
        for port in ports:
            wait_for(f"catalog on {port}", _healthy(port))

        # An update: a new setting rolls out start-first, back to the manifest's 2 replicas.
        # Right after the deploy the old tasks still run: the stack has not converged until
        # every task runs the new spec.
        marks = deploying.update_marks(app)
        updated = _project(folder, app, log_level="debug")
        deploying.deploy_stack(updated, tag=tags)
        env = _docker(
            "service",
            "inspect",
            f"{app}_catalog",
            "--format",
            "{{json .Spec.TaskTemplate.ContainerSpec.Env}}",
        )
        assert "LOG_LEVEL=debug" in json.loads(env)
        assert not deploying.converged(app, marks=marks)
        assert deploying.wait_converged(app, marks=marks, timeout=90)
        assert len(running_catalog_tasks()) == 2
        for task in running_catalog_tasks():
            env = _docker("inspect", "--format", "{{json .Spec.ContainerSpec.Env}}", task)
            assert "LOG_LEVEL=debug" in json.loads(env)
        order = _docker(
            "service", "inspect", f"{app}_catalog", "--format", "{{.Spec.UpdateConfig.Order}}"
        )
        assert order == "start-first"
        for port in catalog_ports():
            wait_for(f"catalog on {port}", _healthy(port))

        # A broken update (its new tasks exit at once) is rolled back by Swarm, and the deploy
        # says so and fails, naming the task's error; the old tasks never stopped.
        running_before = running_catalog_tasks()
        (folder / "shoal.yaml").write_text(
            (folder / "shoal.yaml")
            .read_text()
            .replace(
                "command: [python3, app.py]\n    workdir: ./catalog",
                "command: [python3, -c, 'raise SystemExit(3)']\n    workdir: ./catalog",
            )
        )
        done = _cli("deploy", "-t", "swarm", "--no-build", "-f", str(folder))
        assert done.returncode != 0, done.stdout
        assert f"the update of {app}_catalog failed and was rolled back" in done.stderr
        assert "exit (3)" in done.stderr, done.stderr
        assert running_catalog_tasks() == running_before
        for port in catalog_ports():
            wait_for(f"catalog on {port}", _healthy(port))

        done = _cli("deploy", "-t", "swarm", "--remove", "-f", str(folder))
        assert done.returncode == 0, done.stderr
        assert deploying.tasks(app) == []
    finally:
        subprocess.run(["docker", "stack", "rm", app], capture_output=True, check=False)
        wait_for(
            "the stack to go",
            lambda: not _docker("ps", "-aq", "--filter", f"label=com.docker.stack.namespace={app}"),
        )
        wait_for(
            "its networks to go",
            lambda: (
                not _docker(
                    "network", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={app}"
                )
            ),
        )
