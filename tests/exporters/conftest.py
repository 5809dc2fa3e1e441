"""Helpers for the exporter tests: the shop example, a manifest that sets every field, and
golden files (``SHOAL_UPDATE_GOLDEN=1 pytest tests/exporters`` rewrites them)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shoal.exporters.documents import Export, render
from shoal.manifest import Manifest, load_manifest

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
SHOP = ROOT / "examples" / "shop" / "shoal.yaml"
FULL = HERE / "data" / "full.yaml"
GOLDEN = HERE / "golden"
UPDATE = os.environ.get("SHOAL_UPDATE_GOLDEN") == "1"


@pytest.fixture(scope="session")
def shop() -> Manifest:
    return load_manifest(SHOP, environ={}).manifest


@pytest.fixture(scope="session")
def full() -> Manifest:
    return load_manifest(FULL, environ={"SHOAL_PROFILES": "debug"}).manifest


def check_golden(export: Export, folder: str) -> None:
    """Every document equals its golden file, and no golden file is left without a document."""
    where = GOLDEN / folder
    written = {doc.name: render(doc) for doc in export.documents}
    if UPDATE:
        for old in where.rglob("*") if where.exists() else []:
            if old.is_file():
                old.unlink()
        for name, text in written.items():
            (where / name).parent.mkdir(parents=True, exist_ok=True)
            (where / name).write_text(text)
    expected = {str(p.relative_to(where)): p.read_text() for p in where.rglob("*") if p.is_file()}
    assert sorted(written) == sorted(expected), "set SHOAL_UPDATE_GOLDEN=1 to regenerate"
    for name, text in written.items():
        assert text == expected[name], f"{folder}/{name} differs (SHOAL_UPDATE_GOLDEN=1)"
