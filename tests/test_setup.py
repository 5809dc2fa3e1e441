"""What `make` makes .venv from: scripts/pick-python (the Makefile's default PYTHON)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SYSTEM = Path("/usr/bin/python3")


def _new_enough(python: Path) -> bool:
    check = [str(python), "-c", "import sys; sys.exit(sys.version_info < (3, 11))"]
    return subprocess.run(check, check=False).returncode == 0


def test_the_distributions_python_comes_first_when_new_enough() -> None:
    picked = subprocess.run(
        [str(ROOT / "scripts" / "pick-python")], capture_output=True, text=True, check=True
    ).stdout.strip()
    if SYSTEM.exists() and os.access(SYSTEM, os.X_OK) and _new_enough(SYSTEM):
        assert picked == str(SYSTEM)
    else:
        assert picked == "python3"


def test_the_makefile_takes_its_default_from_pick_python() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "PYTHON ?= $(shell scripts/pick-python)" in makefile
    assert "scripts/ensure-venv $(PYTHON) $(VENV)" in makefile
