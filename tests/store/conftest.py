"""Fixtures for the state store tests: a fresh database file per test, in ``tmp_path``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import shoal
from shoal.store import Store


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where the test's database lives (not created yet), laid out as shoal lays it out."""
    return tmp_path / "app" / ".shoal" / "state.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    """An open store on a fresh database, closed after the test."""
    with Store.open(db_path) as opened:
        yield opened


@pytest.fixture
def child_env() -> dict[str, str]:
    """The environment for a child Python that must import this very ``shoal``."""
    src = str(Path(shoal.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env
