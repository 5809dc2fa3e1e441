"""The container a service or job becomes on an orchestrator, and the settings every target
reads alike: image, command, working directory, environment. Pure.

Used by the Kubernetes and Swarm exporters (and SAM's Fargate services): each asks for a
:class:`ContainerSpec` and writes it in its own dialect. The ledger learns here which of those
settings were mapped and which are gaps (an ``image`` run with a host ``workdir``, a ``vm``
runtime that becomes a container).
"""

from __future__ import annotations

from dataclasses import dataclass

from shoal.exporters.documents import Ledger
from shoal.exporters.naming import APP_ROOT, DEFAULT_PORT, Tag, image_name
from shoal.manifest.schema import Job, Manifest, Service


@dataclass(frozen=True)
class ContainerSpec:
    """What to run: image, argv (None: the image's own), working directory, environment."""

    image: str
    command: tuple[str, ...] | None
    workdir: str | None
    env: tuple[tuple[str, str], ...]
    port: int | None


def container_spec(
    app: str, path: str, name: str, unit: Service | Job, *, tag: Tag, ledger: Ledger
) -> ContainerSpec:
    """The container for the service or job at ``path`` (``services.catalog``)."""
    if unit.runtime == "vm":
        ledger.gap(
            f"{path}.runtime",
            "vm",
            "the target runs containers, not virtual machines",
            "the same command in the image `shoal build` makes",
        )
    else:
        ledger.map(path, "runtime")
    built = unit.image is None
    image = image_name(app, name, unit.image, tag)
    ledger.map(path, "image", "build", "command")
    workdir: str | None = None
    if unit.workdir is not None:
        if built:
            workdir = APP_ROOT
            ledger.map(path, "workdir")
        else:
            ledger.gap(
                f"{path}.workdir",
                unit.workdir,
                "a folder of this machine means nothing inside a given image",
                "the image's own working directory",
            )
    else:
        ledger.map(path, "workdir")
        workdir = APP_ROOT if built else None
    env = dict(unit.env)
    port: int | None = None
    if isinstance(unit, Service):
        port = unit.port or DEFAULT_PORT
        env.setdefault("PORT", str(port))
        # Reached from outside its container: listen on every interface of the container.
        env.setdefault("HOST", "0.0.0.0")  # noqa: S104
        # The loader already left out services whose profiles are not active.
        ledger.map(path, "port", "profiles")
    ledger.map(path, "env")
    command = tuple(unit.command) if unit.command else None
    return ContainerSpec(image, command, workdir, tuple(env.items()), port)


def local_addresses(manifest: Manifest, ledger: Ledger) -> None:
    """Report environment values that point at shoal's gateway on this machine.

    Locally a service often reaches another through the gateway (``http://127.0.0.1:8000/x``);
    on another engine that address is the container or VM itself. The value is exported as
    written, and the gap says so.
    """
    port = manifest.gateway.port
    needles = (f"127.0.0.1:{port}", f"localhost:{port}")
    units: list[tuple[str, dict[str, str]]] = [
        *((f"services.{n}", s.env) for n, s in manifest.services.items()),
        *((f"functions.{n}", f.env) for n, f in manifest.functions.items()),
        *((f"jobs.{n}", j.env) for n, j in manifest.jobs.items()),
    ]
    for path, env in units:
        for key, value in env.items():
            if any(needle in value for needle in needles):
                ledger.gap(
                    f"{path}.env.{key}",
                    value,
                    "it points at shoal's gateway on this machine",
                    "exported as written: point it at the target's address for that route",
                )


__all__ = ["ContainerSpec", "container_spec", "local_addresses"]
