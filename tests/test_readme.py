"""The README is the front door: its set-up commands and its manifest reference stay true."""

from __future__ import annotations

import re
from pathlib import Path

from shoal.manifest.reference import embed

README = Path(__file__).resolve().parents[1] / "README.md"


def test_manifest_reference_is_generated_from_the_schema() -> None:
    text = README.read_text(encoding="utf-8")
    assert embed(text) == text, "the manifest reference is stale: run `make docs`"


def test_exactly_two_setup_commands() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    commands = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    assert [c for c in commands if c] == ["make up", "make test"]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (README.parent / ".ci" / "run").read_text()
    assert "make test" in ci
