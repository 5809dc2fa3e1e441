"""From a manifest to what the supervisor wants: desired services and instance specs (pure).

A service's *revision* hashes every setting that needs a new process to change (command, env,
image, workdir, port, resources, grace) plus a restart generation that ``shoal restart`` bumps;
replicas, routes, health, restart policy and update settings are applied without a restart.
A changed revision means a rolling update.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from shoal.manifest import Job, Project, Service
from shoal.runtimes.base import InstanceSpec, Limits
from shoal.supervisor.model import DesiredService

_REVISION_FIELDS = {
    "runtime",
    "command",
    "image",
    "build",
    "workdir",
    "env",
    "port",
    "resources",
    "stop_grace_period",
}


def service_revision(service: Service, generation: int = 0) -> str:
    """12 hex digits naming the settings a running instance was started with."""
    data = service.model_dump(mode="json", include=_REVISION_FIELDS)
    data["generation"] = generation
    blob = json.dumps(data, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def replicas_of(service: Service) -> int:
    """Replicas to run. Autoscaled services start at their minimum, possibly zero: the gateway
    holds the first request and asks for a replica."""
    if service.autoscale is not None:
        return service.autoscale.min
    return service.replicas


def desired_services(
    project: Project,
    scale: Mapping[str, int] | None = None,
    generations: Mapping[str, int] | None = None,
) -> dict[str, DesiredService]:
    """Every service of the manifest (and every job a service waits for) as the planner wants it."""
    m = project.manifest
    scale = scale or {}
    generations = generations or {}
    out: dict[str, DesiredService] = {}
    for name, service in m.services.items():
        out[name] = DesiredService(
            name=name,
            revision=service_revision(service, generations.get(name, 0)),
            replicas=scale.get(name, replicas_of(service)),
            restart=service.restart,
            has_health=service.health is not None,
            depends_on=dict(service.depends_on),
            update=service.update,
        )
    needed_jobs = {t for s in m.services.values() for t in s.depends_on if t in m.jobs}
    for name in sorted(needed_jobs):
        as_service = _job_as_service(m.jobs[name])
        out[name] = DesiredService(
            name=name,
            revision=service_revision(as_service, generations.get(name, 0)),
            replicas=1,
            restart=as_service.restart,
            has_health=False,
            one_shot=True,
        )
    return out


def service_of(project: Project, name: str) -> Service | None:
    """The service settings behind a desired name (a job run as a dependency included)."""
    m = project.manifest
    if name in m.services:
        return m.services[name]
    job = m.jobs.get(name)
    return _job_as_service(job) if job is not None else None


def _job_as_service(job: Job) -> Service:
    """A job that a service waits for runs like a one-shot service (restarted on failure)."""
    return Service.model_validate(
        {
            "runtime": job.runtime,
            "command": job.command,
            "image": job.image,
            "build": job.build,
            "workdir": job.workdir,
            "env": job.env,
            "resources": job.resources.model_dump(),
            "restart": {"policy": "on-failure", "max_retries": job.retries},
        }
    )


def instance_spec(
    project: Project,
    name: str,
    service: Service,
    *,
    ordinal: int,
    revision: str,
    host_port: int | None,
    log_path: Path,
    state: Path | None = None,
) -> InstanceSpec:
    """What a runtime needs to start instance ``ordinal`` of ``name``.

    A process listens on its host port directly (``PORT``); a container or VM listens on
    ``port`` inside (default 8080) and is published on the host port.
    """
    inside = service.port if service.runtime != "process" else host_port
    if service.runtime != "process" and inside is None:
        inside = 8080
    env = {
        **service.env,
        "SHOAL_APP": project.manifest.name,
        "SHOAL_SERVICE": name,
        "SHOAL_INSTANCE": str(ordinal),
    }
    if state is not None:  # identifies the instance even before its pid is recorded
        env["SHOAL_STATE"] = str(state)
    if inside is not None:
        env["PORT"] = str(inside)
    workdir: Path | None = project.resolve(service.workdir) if service.workdir else project.root
    if service.runtime == "container":  # a path inside the image; unset: the image's WORKDIR
        workdir = Path(service.workdir) if service.workdir else None
    return InstanceSpec(
        app=project.manifest.name,
        kind="job" if name in project.manifest.jobs else "service",
        name=name,
        ordinal=ordinal,
        revision=revision,
        command=tuple(service.command) if service.command else None,
        env=env,
        workdir=workdir,
        port=inside,
        host_port=host_port,
        limits=Limits(cpus=service.resources.cpus, memory_bytes=service.resources.memory),
        stop_grace=service.stop_grace_period,
        log_path=log_path,
        image=service.image,
        build=project.resolve(service.build) if service.build else None,
    )


__all__ = ["desired_services", "instance_spec", "replicas_of", "service_of", "service_revision"]
