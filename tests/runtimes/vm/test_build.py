"""``shoal build``: bakes VM images once per content, says what to install when qemu is missing;
the shop's VM service code, run here as a process (the VM life cycle is test_orchestration's)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from shoal.runtimes.vm import Baker, vmlinux
from tests.daemon.conftest import free_port, wait_until

ROOT = Path(__file__).resolve().parents[3]
SHOP = ROOT / "examples" / "shop"


def shoal(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shoal", *args],
        cwd=cwd,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.timeout(180)
def test_build_bakes_once_per_content(baked: Baker, tmp_path: Path) -> None:
    shop = tmp_path / "shop"
    shutil.copytree(SHOP, shop, ignore=shutil.ignore_patterns("__pycache__", "*.db", ".shoal"))
    (shop / "recommend" / "NONCE").write_text(f"{time.time_ns()}\n")  # a fresh service disk
    first = shoal("build", "recommend", cwd=shop)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "recommend: VM image" in first.stdout and "baked" in first.stdout
    assert "vm: baked recommend" in first.stderr  # progress goes to stderr
    again = shoal("build", "recommend", "catalog", cwd=shop)
    assert again.returncode == 0, again.stderr
    assert "recommend: VM image" in again.stdout and "up to date" in again.stdout
    assert "catalog: nothing to build (process)" in again.stdout
    (shop / "recommend" / "app.py").write_text(
        (shop / "recommend" / "app.py").read_text() + "\n# changed\n"
    )
    changed = shoal("build", "recommend", cwd=shop)
    assert "baked" in changed.stdout and changed.stdout.split()[3] != first.stdout.split()[3]


SMALL = """
name: small
services:
  recommend: {runtime: vm, build: ./recommend, command: [python3, app.py]}
"""


def small(tmp_path: Path) -> Path:
    (tmp_path / "recommend").mkdir()
    (tmp_path / "recommend" / "app.py").write_text("print('hi')\n")
    (tmp_path / "shoal.yaml").write_text(SMALL)
    return tmp_path


def test_build_names_an_unknown_service(tmp_path: Path) -> None:
    small(tmp_path)
    result = shoal("build", "recomend", cwd=tmp_path)
    assert result.returncode == 3
    assert "did you mean 'recommend'?" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_qemu_says_which_package(tmp_path: Path) -> None:
    small(tmp_path)
    result = shoal("build", "recommend", cwd=tmp_path, env={"PATH": str(tmp_path)})
    assert result.returncode == 1
    assert "qemu-system-x86_64 is not installed" in result.stderr
    assert "apt-get install qemu-system-x86" in result.stderr
    assert "Traceback" not in result.stderr


def test_shop_recommend_serves_and_stops_cleanly() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=SHOP / "recommend",
        env={**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "PYTHONDONTWRITEBYTECODE": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def get(path: str) -> dict[str, object]:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                body: dict[str, object] = json.loads(r.read())
                return body

        wait_until(lambda: _answers(port), timeout=15)
        assert get("/coffee-beans")["also_bought"] == ["filter-papers", "mug"]
        assert "tea" in get("/")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
            return True
    except OSError:
        return False


def test_the_baked_kernel_boots_as_pvh_and_the_guest_init_is_static(baked: Baker) -> None:
    """The kernel built from Debian's source: an ELF with the PVH note, every driver built in;
    the initramfs is the compiled guest init alone, which has no interpreter (nothing but the
    kernel runs it)."""
    kernel = asyncio.run(baked.kernel())
    assert kernel.name == "vmlinux"
    assert vmlinux.has_pvh_entry(kernel.read_bytes())
    init_path = asyncio.run(baked.guest_init())
    init = init_path.read_bytes()
    assert init[:4] == b"\x7fELF" and b"ld-linux" not in init[:8192]
    assert init in init_path.with_name("initramfs.cpio").read_bytes()
