"""`shoal images` and the external-command pipe behind `shoal images bootstrap`, on the real
engine (the Debian + Python bootstrap itself takes a minute and a Debian mirror: it is run by
hand, `shoal images bootstrap`, and cached by its recipe's hash)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.errors import CommandFailed
from shoal.runtimes.container.bootstrapping import base_recipe, base_tag, run_into

pytestmark = pytest.mark.timeout(60)


def shoal(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shoal", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})},
        check=False,
    )


def test_images_ls_lists_what_shoal_made(busybox: str) -> None:
    table = shoal("images", "ls")
    assert table.returncode == 0, table.stderr
    assert busybox in table.stdout
    rows = json.loads(shoal("--log-format", "json", "images", "ls").stdout)
    assert busybox in {row["tag"] for row in rows}


def test_images_without_an_engine_is_one_clear_line(tmp_path: Path) -> None:
    result = shoal("images", "ls", env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"})
    assert result.returncode == 1
    assert f"Docker Engine not reachable at unix://{tmp_path}/none.sock" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_command_streams_into_an_import(tmp_path: Path, engine: Any) -> None:
    """The bootstrap's pipe (a command's stdout -> the engine's import), with tar for mmdebstrap."""
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hello").write_text("hi\n")
    progress: list[str] = []
    repository, version = "shoal/test-import", tmp_path.name.lower()[-12:]
    tag = f"{repository}:{version}"

    def load(chunks: Iterator[bytes]) -> None:
        engine.api.import_image_from_stream(chunks, repository=repository, tag=version)

    run_into(("tar", "-C", str(root), "-cv", "."), load, progress.append)
    try:
        assert engine.api.inspect_image(tag)["Size"] > 0
        assert any("hello" in line for line in progress)  # tar -v talks on stderr
    finally:
        engine.api.remove_image(tag, force=True)


def test_a_failing_or_missing_command_is_a_command_failed(tmp_path: Path) -> None:
    with pytest.raises(CommandFailed) as failed:
        run_into(("tar", "-c", str(tmp_path / "missing")), lambda chunks: None, lambda line: None)
    assert failed.value.returncode == 2 and "missing" in failed.value.output
    with pytest.raises(CommandFailed) as missing:
        run_into(("no-such-command-here",), lambda chunks: None, lambda line: None)
    assert missing.value.returncode is None


def test_the_base_image_tag_names_its_recipe() -> None:
    assert base_recipe()[:3] == ("mmdebstrap", "--variant=apt", "--include=python3,ca-certificates")
    assert base_tag() == base_tag() and base_tag().startswith("shoal/python:")
    assert base_tag("trixie") != base_tag()
