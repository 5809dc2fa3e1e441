"""The package's curated API, the spec from the manifest, and the lightness of the process side."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import shoal.functions
from shoal.functions.spec import FunctionSpec
from shoal.manifest import load_manifest
from tests.functions.conftest import ROOT


def test_exports_are_sorted_and_resolve() -> None:
    names = shoal.functions.__all__
    assert names == sorted(names)
    for name in names:
        assert getattr(shoal.functions, name).__name__ == name
    with pytest.raises(AttributeError):
        _ = shoal.functions.Nope


def test_the_forked_side_imports_no_heavy_modules() -> None:
    """Every module the forkserver imports is in every template and instance."""
    code = "import sys, shoal.functions.template; print(' '.join(sorted(m for m in sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    for heavy in ("typing", "dataclasses", "asyncio", "hashlib", "argparse", "pydantic"):
        assert heavy not in out, heavy
    assert "shoal.functions.pool" not in out


def test_spec_from_the_shop_manifest() -> None:
    project = load_manifest(ROOT / "examples" / "shop" / "shoal.yaml", cwd=ROOT)
    base = project.root
    thumbnail = project.manifest.functions["thumbnail"]
    spec = FunctionSpec.from_manifest("thumbnail", thumbnail, base)
    assert spec.handler_file == base / "functions" / "thumbnail.py"
    assert (spec.handler_function, spec.memory_mb, spec.timeout, spec.max_instances) == (
        "handler",
        128,
        10.0,
        20,
    )
    assert spec.handler == "thumbnail.handler"
    assert spec.task_root == base / "functions"


@pytest.mark.parametrize(
    "fields",
    [
        {"handler_file": Path("relative.py")},
        {"concurrency": 0},
        {"min_instances": 5, "max_instances": 2},
        {"timeout": 0},
    ],
)
def test_spec_refuses_what_cannot_run(fields: dict[str, object]) -> None:
    args: dict[str, object] = {"name": "f", "handler_file": Path("/abs/f.py"), **fields}
    with pytest.raises(ValueError, match="must"):
        FunctionSpec(**args)  # type: ignore[arg-type]
