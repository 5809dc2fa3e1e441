"""``shoal deploy`` arguments that need no engine: dry runs and refusals."""

from __future__ import annotations

from pathlib import Path

import yaml

from shoal.errors import ExitCode
from tests.cli.test_commands import shoal
from tests.exporters.conftest import SHOP


def test_swarm_dry_run_prints_the_stack(tmp_path: Path) -> None:
    done = shoal("deploy", "-t", "swarm", "--dry-run", "-f", str(SHOP), cwd=tmp_path)
    assert done.returncode == ExitCode.OK, done.stderr
    assert done.stdout.startswith("# would run: docker stack deploy")
    stack = yaml.safe_load(done.stdout)
    assert stack["services"]["catalog"]["deploy"]["replicas"] == 2
    assert "what swarm cannot express" in done.stderr


def test_swarm_remove_dry_run(tmp_path: Path) -> None:
    done = shoal("deploy", "-t", "swarm", "--remove", "--dry-run", "-f", str(SHOP), cwd=tmp_path)
    assert done.returncode == ExitCode.OK
    assert "docker stack rm shop" in done.stdout


def test_remove_is_for_swarm_only(tmp_path: Path) -> None:
    done = shoal("deploy", "-t", "k8s", "--remove", "-f", str(SHOP), cwd=tmp_path)
    assert done.returncode == ExitCode.USAGE
    assert "kubectl delete -l app.kubernetes.io/part-of=shop" in done.stderr
