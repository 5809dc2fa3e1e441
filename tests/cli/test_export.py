"""``shoal export``, run for real: files written, documents printed, the table of gaps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from shoal.errors import ExitCode
from tests.cli.test_commands import REPO, shoal

SHOP = str(REPO / "examples" / "shop")


@pytest.mark.parametrize(
    ("target", "files"),
    [
        ("k8s", {"service-catalog.yaml", "routes.yaml", "function-notify.yaml", "topics.yaml"}),
        ("swarm", {"stack.yaml"}),
        ("sam", {"template.yaml"}),
        ("vm", {"catalog/user-data", "catalog/shop-catalog.service", "catalog/catalog.pkr.hcl"}),
    ],
)
def test_writes_the_files_and_prints_the_gaps(target: str, files: set[str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = shoal("export", "-f", SHOP, "--target", target, "-o", str(out), cwd=tmp_path)
    assert done.returncode == ExitCode.OK, done.stderr
    written = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert files <= written
    assert f"what {target} cannot express" in done.stdout
    assert "services.orders.env.CATALOG_URL" in done.stdout  # points at the local gateway


def test_prints_documents_to_stdout_and_gaps_to_stderr(tmp_path: Path) -> None:
    done = shoal("export", "-f", SHOP, "-t", "swarm", cwd=tmp_path)
    assert done.returncode == ExitCode.OK
    stack = yaml.safe_load(done.stdout)
    assert set(stack["services"]) == {"catalog", "orders", "thumbnail", "notify"}
    assert "Swarm cannot scale to zero" in done.stderr


def test_httproute_and_fargate_flags(tmp_path: Path) -> None:
    done = shoal("export", "-f", SHOP, "-t", "k8s", "--httproute", cwd=tmp_path)
    assert "kind: HTTPRoute" in done.stdout and "kind: Ingress" not in done.stdout
    done = shoal("export", "-f", SHOP, "-t", "sam", "--services", "fargate", cwd=tmp_path)
    assert "AWS::ECS::Service" in done.stdout


def test_json_gaps(tmp_path: Path) -> None:
    done = shoal("--log-format", "json", "export", "-f", SHOP, "-t", "sam", cwd=tmp_path)
    body = json.loads(done.stderr)
    assert body["files"] == ["template.yaml"]
    assert any(g["path"] == "jobs.nightly-report" for g in body["gaps"])


def test_bad_target_is_a_usage_error(tmp_path: Path) -> None:
    done = shoal("export", "-f", SHOP, "-t", "nomad", cwd=tmp_path)
    assert done.returncode == ExitCode.USAGE
    assert "Traceback" not in done.stderr
