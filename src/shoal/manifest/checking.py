"""Cross-checks: problems that only show when the whole manifest is read together.

Last step of the loading flow, run on a manifest that passed schema validation: references
between parts (``depends_on``, topics, dead letters), dependency cycles, clashing routes, names
and ports, and that files the manifest names exist (workdirs, build folders, handler modules
and the function inside them, found by parsing, never by importing user code).

Pure apart from the ``files`` object it is given, so tests can check it against a dict.
"""

from __future__ import annotations

import ast
import difflib
import zoneinfo
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Protocol

from shoal.manifest.reading import Path
from shoal.manifest.schema import Manifest


@dataclass(frozen=True)
class Finding:
    """A problem found by a cross-check; ``at_key`` points at the key rather than its value.

    ``file``/``line`` are set when the problem lies in another file (a handler's syntax error).
    """

    path: Path
    message: str
    hint: str = ""
    at_key: bool = False
    file: str | None = None
    line: int = 0
    column: int = 0


class Files(Protocol):
    """What the checks need of the file system, relative to the manifest's folder."""

    def is_dir(self, relative: str) -> bool: ...
    def is_file(self, relative: str) -> bool: ...
    def read_text(self, relative: str) -> str | None: ...
    def display(self, relative: str) -> str: ...


class DiskFiles:
    """The real file system, below the manifest's folder."""

    def __init__(self, base: FsPath) -> None:
        self.base = base

    def is_dir(self, relative: str) -> bool:
        return (self.base / relative).is_dir()

    def is_file(self, relative: str) -> bool:
        return (self.base / relative).is_file()

    def read_text(self, relative: str) -> str | None:
        try:
            return (self.base / relative).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def display(self, relative: str) -> str:
        return str(self.base / relative)


def suggest(word: str, choices: Iterable[str]) -> str:
    """``did you mean 'port'?`` when a close match exists, else empty."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else ""


def check(manifest: Manifest, files: Files) -> list[Finding]:
    """Every cross-reference problem in ``manifest``."""
    return [
        *_unique_names(manifest),
        *_dependencies(manifest),
        *_cycles(manifest),
        *_routes(manifest),
        *_ports(manifest),
        *_topics(manifest),
        *_timezones(manifest),
        *_autoscaling(manifest),
        *_folders(manifest, files),
        *_handlers(manifest, files),
    ]


def _unique_names(m: Manifest) -> Iterator[Finding]:
    seen: dict[str, str] = {}
    for kind, names in (("services", m.services), ("functions", m.functions), ("jobs", m.jobs)):
        for name in names:
            if name in seen:
                yield Finding(
                    (kind, name),
                    f"the name {name!r} is already used by {seen[name]}.{name}",
                    "service, function and job names share one namespace (shoal logs NAME)",
                    at_key=True,
                )
            else:
                seen[name] = kind


def _dependencies(m: Manifest) -> Iterator[Finding]:
    targets = set(m.services) | set(m.jobs)
    for name, service in m.services.items():
        for target, condition in service.depends_on.items():
            here: Path = ("services", name, "depends_on", target)
            if target == name:
                yield Finding(here, "a service cannot depend on itself", at_key=True)
            elif target not in targets:
                hint = suggest(target, targets) or "depends_on names services or jobs"
                yield Finding(here, f"{target!r} is not a service or job", hint, at_key=True)
            elif condition == "healthy" and target in m.services:
                if m.services[target].health is None:
                    yield Finding(
                        here,
                        f"{target!r} has no health check, so it can never be healthy",
                        f"add a health check to {target} or use 'started'",
                    )
            elif condition == "healthy" and target in m.jobs:
                yield Finding(here, "a job is never healthy", "use 'completed' for a job")


def _cycles(m: Manifest) -> Iterator[Finding]:
    graph = {name: [t for t in s.depends_on if t in m.services] for name, s in m.services.items()}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    reported: set[frozenset[str]] = set()

    def visit(node: str, trail: list[str]) -> Iterator[Finding]:
        state[node] = 1
        for nxt in graph[node]:
            if nxt == node:
                continue  # reported by _dependencies
            if state.get(nxt) == 1:
                loop = [*trail[trail.index(nxt) :], nxt]
                if frozenset(loop) not in reported:
                    reported.add(frozenset(loop))
                    yield Finding(
                        ("services", node, "depends_on", nxt),
                        "dependency cycle: " + " -> ".join(loop),
                        "remove one of these depends_on entries",
                        at_key=True,
                    )
            elif nxt not in state:
                yield from visit(nxt, [*trail, nxt])
        state[node] = 2

    for name in graph:
        if name not in state:
            yield from visit(name, [name])


_ALL_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))


def _routes(m: Manifest) -> Iterator[Finding]:
    """Two targets claiming the same host + path prefix for a common method is ambiguous.

    Nested prefixes (``/api`` and ``/api/thumbnail``) are fine: the longest prefix wins.
    """
    claims: list[tuple[str | None, str, frozenset[str], str, Path]] = []
    for name, service in m.services.items():
        for i, route in enumerate(service.routes):
            claims.append(
                (route.host, route.path, _ALL_METHODS, name, ("services", name, "routes", i))
            )
    for name, function in m.functions.items():
        for i, trigger in enumerate(function.triggers):
            if trigger.http is not None:
                here: Path = ("functions", name, "triggers", i, "http", "path")
                http = trigger.http
                claims.append((http.host, http.path, http.method_set(), name, here))
    taken: dict[tuple[str | None, str], list[tuple[frozenset[str], str]]] = {}
    for host, path, methods, owner, here in claims:
        key = (host.lower() if host else None, path.rstrip("/") or "/")
        for other_methods, other in taken.get(key, []):
            common = methods & other_methods
            if common:
                shown = "all methods" if common == _ALL_METHODS else ", ".join(sorted(common))
                yield Finding(
                    here,
                    f"route {path!r} ({shown}) is already taken by {other}",
                    "give each route its own path, host or methods",
                )
                break  # one line per clashing route, even if several others hold it
        taken.setdefault(key, []).append((methods, owner))


def _ports(m: Manifest) -> Iterator[Finding]:
    used: dict[int, str] = {m.gateway.port: "the gateway"}
    for name, service in m.services.items():
        if service.runtime != "process" or service.port is None:
            continue
        here: Path = ("services", name, "port")
        most = service.autoscale.max if service.autoscale else service.replicas
        if most > 1:
            yield Finding(
                here,
                f"{most} replicas cannot all listen on port {service.port}",
                "drop port: and have the app listen on $PORT (each replica gets its own)",
            )
        if service.port in used:
            yield Finding(here, f"port {service.port} is already used by {used[service.port]}")
        else:
            used[service.port] = f"service {name}"


def _topics(m: Manifest) -> Iterator[Finding]:
    declared = set(m.topics)
    for name, function in m.functions.items():
        for i, trigger in enumerate(function.triggers):
            event = trigger.event
            if event is None:
                continue
            here: Path = ("functions", name, "triggers", i, "event")
            if event.topic not in declared:
                yield Finding(
                    (*here, "topic"),
                    f"topic {event.topic!r} is not declared",
                    suggest(event.topic, declared) or f"add it under topics: ({event.topic}: {{}})",
                )
            if event.dead_letter is not None:
                if event.dead_letter == event.topic:
                    yield Finding(
                        (*here, "dead_letter"),
                        "the dead-letter topic is the topic itself",
                        "failed messages would loop; name another topic",
                    )
                elif event.dead_letter not in declared:
                    yield Finding(
                        (*here, "dead_letter"),
                        f"dead-letter topic {event.dead_letter!r} is not declared",
                        suggest(event.dead_letter, declared - {event.topic})
                        or f"add it under topics: ({event.dead_letter}: {{}})",
                    )


def _zone_ok(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _timezones(m: Manifest) -> Iterator[Finding]:
    for name, job in m.jobs.items():
        if not _zone_ok(job.timezone):
            yield Finding(
                ("jobs", name, "timezone"),
                f"{job.timezone!r} is not a known time zone",
                "use an IANA name like UTC or Europe/Berlin",
            )
    for name, function in m.functions.items():
        for i, trigger in enumerate(function.triggers):
            if trigger.schedule is not None and not _zone_ok(trigger.schedule.timezone):
                yield Finding(
                    ("functions", name, "triggers", i, "schedule", "timezone"),
                    f"{trigger.schedule.timezone!r} is not a known time zone",
                    "use an IANA name like UTC or Europe/Berlin",
                )


def _autoscaling(m: Manifest) -> Iterator[Finding]:
    for name, service in m.services.items():
        if service.autoscale is not None and not service.routes:
            yield Finding(
                ("services", name, "autoscale"),
                "autoscale follows requests through the gateway, but the service has no routes",
                "add routes, or use a fixed replicas count",
            )


def _folders(m: Manifest, files: Files) -> Iterator[Finding]:
    parts = [("services", n, s.runtime, s.workdir, s.build) for n, s in m.services.items()]
    parts += [("jobs", n, j.runtime, j.workdir, j.build) for n, j in m.jobs.items()]
    for kind, name, runtime, workdir, build in parts:
        if workdir is not None and runtime == "process" and not files.is_dir(workdir):
            yield Finding(
                (kind, name, "workdir"),
                f"folder {files.display(workdir)!r} does not exist",
                "workdir is relative to the manifest's folder",
            )
        if build is not None:
            if not files.is_dir(build):
                yield Finding(
                    (kind, name, "build"),
                    f"folder {files.display(build)!r} does not exist",
                    "build is relative to the manifest's folder",
                )
            elif runtime == "container" and not files.is_file(f"{build}/Dockerfile"):
                yield Finding(
                    (kind, name, "build"),
                    f"{files.display(build)!r} has no Dockerfile",
                    "a container build folder needs a Dockerfile",
                )


def _handlers(m: Manifest, files: Files) -> Iterator[Finding]:
    for name, function in m.functions.items():
        here: Path = ("functions", name, "handler")
        source = files.read_text(function.handler_file)
        if source is None:
            yield Finding(
                here,
                f"handler file {files.display(function.handler_file)!r} does not exist",
                "handler paths are relative to the manifest's folder",
            )
            continue
        try:
            tree = ast.parse(source, filename=function.handler_file)
        except (SyntaxError, ValueError) as exc:
            line = getattr(exc, "lineno", 0) or 0
            yield Finding(
                here,
                f"handler file has a syntax error: {getattr(exc, 'msg', exc)}",
                file=files.display(function.handler_file),
                line=line,
                column=getattr(exc, "offset", 0) or 0,
            )
            continue
        defined = _top_level_names(tree)
        if function.handler_function not in defined:
            yield Finding(
                here,
                f"{function.handler_file} defines no {function.handler_function!r}",
                suggest(function.handler_function, defined)
                or "define def handler(event, context) at the module's top level",
            )


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign | ast.AugAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


__all__ = ["DiskFiles", "Files", "Finding", "check", "suggest"]
