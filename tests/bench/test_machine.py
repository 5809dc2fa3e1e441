"""What the bench records of the interpreter: its version, base executable and libpython linkage."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from bench.machine import interpreter, libpython


def test_libpython_reads_the_mapped_libraries(tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f01 r--p 0 08:01 42 /usr/lib/libpython3.11.so.1.0\n")
    assert libpython(maps) == "shared"
    maps.write_text("5600-5601 r-xp 0 08:01 7 /usr/bin/python3.11\n")
    assert libpython(maps) == "static"
    assert libpython(tmp_path / "missing") == "unknown"


@pytest.mark.skipif(shutil.which("ldd") is None, reason="ldd is not installed")
def test_libpython_agrees_with_ldd_on_this_interpreter() -> None:
    base = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    linked = subprocess.run(["ldd", base], capture_output=True, text=True, check=False)
    # (a wholly static binary makes ldd exit 1: "not a dynamic executable")
    expected = "shared" if "libpython" in linked.stdout else "static"
    assert libpython() == expected
    assert interpreter().endswith(f"{base}, libpython {expected})")
