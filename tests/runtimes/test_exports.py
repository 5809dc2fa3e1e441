"""Every runtimes module curates ``__all__``: names exist, sorted (constants first)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

MODULES = [
    "shoal.runtimes",
    "shoal.runtimes.base",
    "shoal.runtimes.cgroup",
    "shoal.runtimes.cgroupfs",
    "shoal.runtimes.procfs",
    "shoal.runtimes.process",
    "shoal.runtimes.registry",
    "shoal.runtimes.sandbox",
    "shoal.runtimes.spawning",
    "shoal.runtimes.watching",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist_and_are_sorted(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert exported == sorted(exported, key=lambda s: (not s.isupper(), s))
    for attr in exported:
        assert hasattr(module, attr), f"{name}.{attr}"


def test_package_exports() -> None:
    import shoal.runtimes

    assert {"Runtime", "InstanceSpec", "Handle", "Exit", "load_runtime", "RUNTIMES"} <= set(
        shoal.runtimes.__all__
    )


def test_drivers_are_imported_only_when_loaded() -> None:
    code = "import sys, shoal.runtimes; print('shoal.runtimes.process' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
