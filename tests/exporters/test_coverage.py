"""No setting is dropped silently: every field of the manifest is mapped or reported as a gap by
every exporter. The full manifest (data/full.yaml) must set every field of the schema, so a
field added to the schema fails here until each exporter says what it does with it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from shoal.exporters.documents import Export
from shoal.exporters.kubernetes import export_kubernetes
from shoal.exporters.sam import export_sam
from shoal.exporters.swarm import export_swarm
from shoal.exporters.vm import export_vm
from shoal.manifest import Manifest

EXPORTERS: dict[str, Callable[[Manifest], Export]] = {
    "k8s": export_kubernetes,
    "k8s-httproute": lambda m: export_kubernetes(m, routing="httproute"),
    "swarm": export_swarm,
    "sam": export_sam,
    "sam-fargate": lambda m: export_sam(m, services="fargate"),
    "vm": export_vm,
}


def leaves(value: Any, path: str = "") -> Iterator[str]:
    """Dotted paths of every leaf setting of a (dumped) manifest."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from leaves(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list) and value and isinstance(value[0], dict):
        for i, item in enumerate(value):
            yield from leaves(item, f"{path}.{i}")
    else:
        yield path


def fields_set(model: BaseModel, seen: dict[type[BaseModel], set[str]]) -> None:
    seen.setdefault(type(model), set()).update(model.model_fields_set)
    for name in type(model).model_fields:
        value = getattr(model, name)
        items = value.values() if isinstance(value, dict) else value
        for item in items if isinstance(items, list | type({}.values())) else [value]:
            if isinstance(item, BaseModel):
                fields_set(item, seen)


def test_full_manifest_sets_every_field(full: Manifest) -> None:
    seen: dict[type[BaseModel], set[str]] = {}
    fields_set(full, seen)
    missing = [
        f"{cls.__name__}.{name}"
        for cls, names in seen.items()
        for name in cls.model_fields
        if name not in names
    ]
    assert not missing, f"set these in tests/exporters/data/full.yaml: {missing}"


@pytest.mark.parametrize("target", sorted(EXPORTERS))
@pytest.mark.parametrize("which", ["shop", "full"])
def test_every_setting_is_mapped_or_reported(
    target: str, which: str, request: pytest.FixtureRequest
) -> None:
    manifest: Manifest = request.getfixturevalue(which)
    export = EXPORTERS[target](manifest)
    silent = [p for p in leaves(manifest.model_dump()) if not export.covers(p)]
    assert not silent, f"{target} drops these silently: {silent}"
