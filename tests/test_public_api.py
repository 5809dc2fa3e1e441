"""The curated public API (``__all__``) names exactly what each package exports."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = ["shoal", "shoal.errors", "shoal.manifest", "shoal.settings"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_names_exist_and_are_sorted(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert exported == sorted(exported, key=lambda s: (not s.isupper(), s))
    for attr in exported:
        assert hasattr(module, attr), f"{name}.{attr}"


def test_manifest_exports() -> None:
    import shoal.manifest

    assert {"load_manifest", "Manifest", "Project", "json_schema"} <= set(shoal.manifest.__all__)
