"""Every log store module curates ``__all__``: names exist, sorted (constants first)."""

from __future__ import annotations

import importlib

import pytest

MODULES = [
    "shoal.logs",
    "shoal.logs.punching",
    "shoal.logs.records",
    "shoal.logs.rotating",
    "shoal.logs.splitting",
    "shoal.logs.store",
    "shoal.logs.subscribing",
    "shoal.logs.tailing",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist_and_are_sorted(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert exported == sorted(exported, key=lambda s: (not s.isupper(), s))
    for attr in exported:
        assert hasattr(module, attr), f"{name}.{attr}"


def test_package_exports() -> None:
    import shoal.logs

    assert set(shoal.logs.__all__) == {
        "LogRecord",
        "LogStore",
        "Stream",
        "Subscription",
        "file_stem",
    }
