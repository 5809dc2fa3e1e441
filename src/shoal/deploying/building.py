"""``shoal build`` for the export targets: one image per service or job that needs one, and
one per function, each tagged by its content (nothing is rebuilt when nothing changed).

The answer maps an image key (``catalog``, ``fn-thumbnail``) to its content tag, which the
exporters take as ``tag=`` so the documents name exactly what was built. Images are built with
the container runtime's :func:`~shoal.runtimes.container.build_image` on the Debian + Python
base (:func:`~shoal.runtimes.container.bootstrap_base`, made once). Blocking.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from pathlib import Path

from shoal.deploying.contexts import function_context, generated_context, unit_context
from shoal.manifest import Project
from shoal.manifest.schema import Job, Service
from shoal.runtimes.container import bootstrap_base, build_image, connect
from shoal.runtimes.container.running import repository_of

Progress = Callable[[str], None]


def _quiet(line: str) -> None:
    return None


def build_folder(project: Project) -> Path:
    return project.root / ".shoal" / "build"


def build_images(
    project: Project,
    progress: Progress | None = None,
    *,
    names: Collection[str] | None = None,
    functions: bool = True,
    url: str | None = None,
) -> dict[str, str]:
    """Build every image the export targets run; ``{key: tag}`` (the tag after the colon).

    ``names`` limits the services and jobs built (None: all); ``functions`` adds one image per
    function. A service or job that names an ``image`` has nothing to build.
    """
    say = progress or _quiet
    m = project.manifest
    staging = build_folder(project)
    tags: dict[str, str] = {}
    client = connect(url, timeout=900)
    try:
        base = bootstrap_base(say, client=client)
        units: list[tuple[str, Service | Job]] = [*m.services.items(), *m.jobs.items()]
        for name, unit in units:
            if unit.image is not None or (names is not None and name not in names):
                continue
            folder = unit_context(project, name, unit, staging / name)
            if folder is None:
                folder = generated_context(project, name, unit, base, staging / name)
            ref = build_image(folder, say, repository=repository_of(m.name, name), client=client)
            tags[name] = ref.rsplit(":", 1)[1]
        if functions:
            for name, f in m.functions.items():
                key = f"fn-{name}"
                folder = function_context(project, name, f, base, staging / key)
                ref = build_image(folder, say, repository=repository_of(m.name, key), client=client)
                tags[key] = ref.rsplit(":", 1)[1]
    finally:
        client.close()
    known = last_tags(project)
    known.update(tags)
    tags_file(project).write_text(json.dumps(known, indent=2, sort_keys=True) + "\n")
    return tags


def tags_file(project: Project) -> Path:
    return build_folder(project) / "tags.json"


def last_tags(project: Project) -> dict[str, str]:
    """The content tags of the last build (``{}`` before any), for ``deploy --no-build``."""
    try:
        data = json.loads(tags_file(project).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items()}


__all__ = ["Progress", "build_folder", "build_images", "last_tags", "tags_file"]
