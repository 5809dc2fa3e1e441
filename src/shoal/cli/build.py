"""``shoal build [SERVICE...]``: make what services need before they start (VM, container images).

One builder per runtime in :data:`BUILDERS` (a runtime without one has nothing to build); each
takes the project, the names of its services and a progress callback, and returns one line per
service saying what it built or found. ``shoal up`` does the same through the runtimes'
``prepare``, so ``build`` only moves the wait (and its progress) to a moment of your choosing.
"""

from __future__ import annotations

import asyncio
import difflib
from collections.abc import Awaitable, Callable

import click

from shoal.cli.common import manifest_option, settings_of, stderr, stdout
from shoal.errors import UnknownName, UsageError
from shoal.manifest import Project, load_manifest

Progress = Callable[[str], None]
Builder = Callable[[Project, list[str], Progress], Awaitable[list[str]]]


async def build_vm(project: Project, names: list[str], progress: Progress) -> list[str]:
    """Bake each VM service's image (kernel, base root filesystem and service disk)."""
    from shoal.runtimes.vm import Baker, hosting  # noqa: PLC0415 - only when a VM is built
    from shoal.runtimes.vm.running import inputs_of_service  # noqa: PLC0415

    hosting.require("qemu-system-x86_64")
    baker = Baker()
    lines = []
    for name in names:
        inputs = inputs_of_service(project, name, project.manifest.services[name])
        fresh = baker.is_fresh(inputs)
        image = await baker.bake(inputs, progress)
        state = "up to date" if fresh else "baked"
        lines.append(f"{name}: VM image {image.key} {state} ({image.service.name})")
    return lines


async def build_container(project: Project, names: list[str], progress: Progress) -> list[str]:
    """Build each container service's image from its ``build:`` folder (content-tagged)."""
    from shoal.deploying.building import build_images  # noqa: PLC0415 - docker only when used

    wanted = [n for n in names if project.manifest.services[n].build is not None]
    tags = await asyncio.to_thread(build_images, project, progress, names=wanted, functions=False)
    app = project.manifest.name
    lines = [f"{name}: image shoal/{app}-{name}:{tags[name]}" for name in wanted]
    lines += [f"{n}: runs its image, nothing to build" for n in names if n not in wanted]
    return lines


async def build_for_export(project: Project, progress: Progress) -> list[str]:
    """The images the export targets run: every service, job and function (content-tagged)."""
    from shoal.deploying.building import build_images  # noqa: PLC0415 - docker only when used

    tags = await asyncio.to_thread(build_images, project, progress)
    app = project.manifest.name
    return [f"{key}: image shoal/{app}-{key}:{tag}" for key, tag in tags.items()]


BUILDERS: dict[str, Builder] = {"vm": build_vm, "container": build_container}
"""Runtime name -> the builder of its services."""


def select(project: Project, wanted: tuple[str, ...]) -> dict[str, list[str]]:
    """Service names by runtime: those named (every one when none is), in manifest order."""
    services = project.manifest.services
    for name in wanted:
        if name not in services:
            close = difflib.get_close_matches(name, services, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UnknownName(f"no service named {name!r}{hint}")
    by_runtime: dict[str, list[str]] = {}
    for name, service in services.items():
        if not wanted or name in wanted:
            by_runtime.setdefault(service.runtime, []).append(name)
    return by_runtime


async def build_all(project: Project, wanted: tuple[str, ...], progress: Progress) -> list[str]:
    lines: list[str] = []
    for runtime, names in select(project, wanted).items():
        builder = BUILDERS.get(runtime)
        if builder is None:
            lines.extend(f"{name}: nothing to build ({runtime})" for name in names)
            continue
        lines.extend(await builder(project, names, progress))
    return lines


@click.command()
@click.argument("services", nargs=-1)
@manifest_option
@click.option(
    "--export",
    "for_export",
    is_flag=True,
    help="Build the images `shoal export`/`deploy` targets run instead: one per service and "
    "job (process ones packaged on the Debian + Python base) and one per function.",
)
@click.pass_context
def build(
    ctx: click.Context, services: tuple[str, ...], file: str | None, for_export: bool
) -> None:
    """Build what SERVICES need before they start (all services when none is named).

    VM services: bake the image (kernel, base root filesystem, service disk), cached by
    content: a second build of unchanged inputs does nothing. Container services: build the
    image of their ``build:`` folder, tagged by its content.
    """
    settings = settings_of(ctx)
    err = stderr(settings)
    project = load_manifest(file, profiles=["*"])
    say: Progress = lambda line: err.print(line, markup=False)  # noqa: E731
    if for_export:
        if services:
            raise UsageError("--export builds every image the targets run; name no service")
        lines = asyncio.run(build_for_export(project, say))
    else:
        lines = asyncio.run(build_all(project, services, say))
    out = stdout(settings)
    for line in lines:
        out.print(line, markup=False)


__all__ = [
    "BUILDERS",
    "build",
    "build_all",
    "build_container",
    "build_for_export",
    "build_vm",
    "select",
]
