"""Build contexts for the images the export targets run, staged under ``.shoal/build/``.

- A ``container`` service or job with ``build:`` is built from its own folder (its Dockerfile).
- A ``process`` or ``vm`` service or job gets a generated context: its folder (``workdir``, else
  the manifest's folder) copied to ``/app`` on the Debian + Python base, its command as ``CMD``.
- A function gets shoal itself and its dependencies (copied from this installation: the base
  has no pip and no registry is needed), the handler's folder, and a one-function manifest whose
  gateway listens on ``0.0.0.0:$PORT``: the image runs ``shoal up`` on it, so timeouts, memory,
  concurrency and the Lambda event shapes behave as they do locally.

Staging rewrites the folder each time; the image build is skipped when its content hash is
unchanged (:func:`shoal.runtimes.container.build_image`).
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shoal.exporters.documents import dump_yaml
from shoal.exporters.naming import APP_ROOT, DEFAULT_PORT
from shoal.manifest import Project
from shoal.manifest.schema import Function, Job, Service
from shoal.manifest.units import format_duration

SITE = "/opt/shoal/site"
ZONEINFO = Path("/usr/share/zoneinfo")
_SKIP = shutil.ignore_patterns(".shoal", ".git", ".venv", "__pycache__", "*.pyc", "*.db")
_NAME = re.compile(r"^[A-Za-z0-9._-]+")


def _fresh(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def unit_context(project: Project, name: str, unit: Service | Job, into: Path) -> Path | None:
    """The folder to build ``unit``'s image from, or None when it runs a given ``image``."""
    if unit.image is not None:
        return None
    if unit.runtime == "container" and unit.build is not None:
        return project.resolve(unit.build)
    return None


def generated_context(
    project: Project, name: str, unit: Service | Job, base: str, into: Path
) -> Path:
    """Stage a context for a process/vm service or job: its folder and a Dockerfile."""
    folder = _fresh(into)
    # A vm unit's files are its build folder (what it bakes); a process's, its workdir.
    folder_name = unit.workdir or (unit.build if unit.runtime == "vm" else None)
    source = project.resolve(folder_name) if folder_name else project.root
    shutil.copytree(source, folder / "app", ignore=_SKIP)
    lines = [f"FROM {base}", f"COPY app/ {APP_ROOT}/", f"WORKDIR {APP_ROOT}"]
    if isinstance(unit, Service):
        lines.append(f"ENV PORT={unit.port or DEFAULT_PORT}")
    if unit.command:
        lines.append(f"CMD {json.dumps(list(unit.command))}")
    (folder / "Dockerfile").write_text("\n".join(lines) + "\n")
    return folder


def _requirements(name: str) -> Iterator[str]:
    try:
        requires = importlib.metadata.requires(name) or []
    except importlib.metadata.PackageNotFoundError:
        return
    for line in requires:
        if "extra ==" in line or 'win32" and' in line:
            continue
        if "sys_platform == 'win32'" in line or 'sys_platform == "win32"' in line:
            continue
        match = _NAME.match(line)
        if match:
            yield match.group(0)


def runtime_distributions() -> list[str]:
    """shoal's dependencies, transitively (core only, no extras)."""
    seen: dict[str, None] = {}
    queue = list(_requirements("shoal"))
    while queue:
        name = queue.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        seen[key] = None
        queue.extend(_requirements(name))
    return sorted(seen)


def copy_site(into: Path) -> None:
    """shoal (the package) and its dependencies' files, as an importable folder."""
    import shoal  # noqa: PLC0415 - the installed package is what gets copied

    package = Path(shoal.__file__).parent
    shutil.copytree(package, into / "shoal", ignore=_SKIP)
    for name in runtime_distributions():
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # a dependency for other Python versions only (its marker is false here)
        for file in dist.files or []:
            if file.parts[0] == ".." or "__pycache__" in file.parts:
                continue
            source = Path(str(dist.locate_file(file)))
            if not source.is_file():
                continue
            target = into / file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def function_manifest(project: Project, name: str, f: Function) -> dict[str, Any]:
    """The one-function manifest the image runs: its gateway on ``0.0.0.0:$PORT``."""
    m = project.manifest
    g = m.gateway
    triggers: list[dict[str, Any]] = []
    topics: set[str] = set()
    for t in f.triggers:
        if t.http is not None:
            triggers.append({"http": t.http.model_dump(mode="json", exclude_none=True)})
        elif t.schedule is not None:
            triggers.append({"schedule": t.schedule.model_dump(mode="json", exclude_none=True)})
        elif t.event is not None:
            e = t.event.model_dump(mode="json", exclude_none=True)
            e["batch_window"] = format_duration(t.event.batch_window)
            triggers.append({"event": e})
            topics.update(x for x in (t.event.topic, t.event.dead_letter) if x)
    function = {
        "handler": f.handler,
        "memory": f.memory,
        "timeout": format_duration(f.timeout),
        "concurrency": f.concurrency,
        "min_instances": f.min_instances,
        "max_instances": f.max_instances,
        "idle_timeout": format_duration(f.idle_timeout),
        "env": dict(f.env),
        "triggers": triggers,
    }
    return {
        "name": m.name,
        "gateway": {
            "host": "0.0.0.0",  # noqa: S104 - inside the container; published by the engine
            "port": f"${{PORT:-{DEFAULT_PORT}}}",
            "timeout": format_duration(g.timeout),
            "max_body": g.max_body,
            "max_header": g.max_header,
        },
        "functions": {name: function},
        "topics": {
            t: {"retention": format_duration(m.topics[t].retention)}
            for t in sorted(topics)
            if t in m.topics
        },
    }


def function_context(project: Project, name: str, f: Function, base: str, into: Path) -> Path:
    """Stage the context of a function's image: shoal, the handler's folder, its manifest."""
    folder = _fresh(into)
    copy_site(folder / "site")
    app = folder / "app"
    app.mkdir()
    top = Path(f.handler_file).parts[0]
    source = project.root / top
    if source.is_dir():
        shutil.copytree(source, app / top, ignore=_SKIP)
    else:
        shutil.copy2(source, app / top)
    (app / "shoal.yaml").write_text(dump_yaml(function_manifest(project, name, f)))
    lines = [f"FROM {base}", f"COPY site/ {SITE}/"]
    if ZONEINFO.is_dir():
        # Schedules name IANA time zones; the Debian base image has no tzdata.
        shutil.copytree(ZONEINFO, folder / "zoneinfo", symlinks=True)
        lines.append("COPY zoneinfo/ /usr/share/zoneinfo/")
    lines += [
        f"COPY app/ {APP_ROOT}/",
        f"ENV PYTHONPATH={SITE} PORT={DEFAULT_PORT}",
        f"WORKDIR {APP_ROOT}",
        f"EXPOSE {DEFAULT_PORT}",
        'CMD ["python3", "-m", "shoal", "up", "-f", "' + APP_ROOT + '/shoal.yaml"]',
    ]
    (folder / "Dockerfile").write_text("\n".join(lines) + "\n")
    return folder


__all__ = [
    "function_context",
    "function_manifest",
    "generated_context",
    "runtime_distributions",
    "unit_context",
]
