"""The shop example, loaded as the exporter tests load it."""

from __future__ import annotations

import pytest

from shoal.manifest import Manifest, load_manifest
from tests.exporters.conftest import SHOP


@pytest.fixture(scope="session")
def shop() -> Manifest:
    return load_manifest(SHOP, environ={}).manifest
