"""The starter project ``shoal init`` writes: a small working app (one service, one function).

The files live in ``shoal/templates/init`` and are copied as they are, except that the app's
``name:`` becomes the target folder's name when that is a valid name. Nothing is overwritten.
"""

from __future__ import annotations

import re
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from shoal.errors import UsageError


def _files(root: Traversable, prefix: str = "") -> list[tuple[str, Traversable]]:
    out: list[tuple[str, Traversable]] = []
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name == "__pycache__":
            continue
        rel = f"{prefix}{entry.name}"
        if entry.is_dir():
            out += _files(entry, f"{rel}/")
        else:
            out.append((rel, entry))
    return out


def app_name_for(folder: Path) -> str:
    """A valid app name from a folder name: lowercase, '-' for anything else."""
    name = re.sub(r"[^a-z0-9-]+", "-", folder.resolve().name.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"app-{name}".strip("-")
    return name[:63].rstrip("-") or "app"


def scaffold(target: Path) -> list[Path]:
    """Write the starter app into ``target``; refuse if any file would be overwritten."""
    template = resources.files("shoal") / "templates" / "init"
    entries = _files(template)
    clashes = [rel for rel, _ in entries if (target / rel).exists()]
    if clashes:
        raise UsageError(
            f"{target} already has {', '.join(clashes)}; shoal init never overwrites files "
            "(choose an empty folder: shoal init DIR)"
        )
    name = app_name_for(target)
    written: list[Path] = []
    for rel, entry in entries:
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        data = entry.read_bytes()
        if rel == "shoal.yaml":
            data = re.sub(rb"(?m)^name: hello$", f"name: {name}".encode(), data, count=1)
        dest.write_bytes(data)
        written.append(dest)
    return written


__all__ = ["app_name_for", "scaffold"]
