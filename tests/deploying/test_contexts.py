"""Build contexts staged for the export images: what goes in, and that a function image's
manifest is one shoal itself accepts."""

from __future__ import annotations

import shutil
from pathlib import Path

from shoal.deploying.contexts import (
    function_context,
    generated_context,
    runtime_distributions,
)
from shoal.errors import ExitCode
from shoal.manifest import load_manifest
from tests.cli.test_commands import shoal
from tests.exporters.conftest import SHOP


def _copy(tmp_path: Path) -> Path:
    folder = tmp_path / "shop"
    shutil.copytree(SHOP.parent, folder, ignore=shutil.ignore_patterns(".shoal", "*.db"))
    return folder


def test_a_process_service_gets_its_folder_and_command(tmp_path: Path) -> None:
    project = load_manifest(_copy(tmp_path), environ={})
    catalog = project.manifest.services["catalog"]
    folder = generated_context(project, "catalog", catalog, "base:1", tmp_path / "ctx")
    assert (folder / "app" / "app.py").is_file() and (folder / "app" / "products.json").is_file()
    dockerfile = (folder / "Dockerfile").read_text().splitlines()
    assert dockerfile[0] == "FROM base:1"
    assert 'CMD ["python3", "app.py"]' in dockerfile and "ENV PORT=8080" in dockerfile


def test_a_function_image_carries_shoal_and_a_valid_manifest(tmp_path: Path) -> None:
    project = load_manifest(_copy(tmp_path), environ={})
    notify = project.manifest.functions["notify"]
    folder = function_context(project, "notify", notify, "base:1", tmp_path / "ctx")
    assert (folder / "site" / "shoal" / "__init__.py").is_file()
    assert (folder / "site" / "pydantic").is_dir() and (folder / "site" / "yaml").is_dir()
    assert (folder / "app" / "functions" / "notify.py").is_file()
    inner = load_manifest(folder / "app" / "shoal.yaml", environ={"PORT": "9000"})
    m = inner.manifest
    assert m.gateway.host == "0.0.0.0" and m.gateway.port == 9000
    assert list(m.functions) == ["notify"]
    assert m.functions["notify"] == notify  # the same function, every setting
    assert set(m.topics) == {"orders.created", "orders.failed"}
    assert "python3" in (folder / "Dockerfile").read_text()


def test_runtime_distributions_are_shoals_core_dependencies() -> None:
    names = runtime_distributions()
    assert {"pydantic", "pyyaml", "click", "rich", "aiohttp", "httptools"} <= set(names)
    assert "pytest" not in names and "docker" not in names


def test_build_export_takes_no_service_names(tmp_path: Path) -> None:
    done = shoal("build", "--export", "catalog", "-f", str(SHOP), cwd=tmp_path)
    assert done.returncode == ExitCode.USAGE
    assert "name no service" in done.stderr
