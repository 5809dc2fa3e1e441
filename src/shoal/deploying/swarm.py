"""Deploying to Docker Swarm: the stack file from :func:`~shoal.exporters.export_swarm`, applied
with ``docker stack deploy`` (the engine's own client: the Docker SDK has no stacks), then
watched through the Docker SDK: tasks, their state and the host ports they were given.

Ports are published in host mode (the ingress routing mesh needs IPVS, which this kernel may
lack), so each task has a port of its own on the node; :func:`tasks` lists them and clients
reach them on 127.0.0.1. Swarm itself is left as found: deploying refuses to run on an engine
that is not a swarm manager rather than initialising one.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker.errors

from shoal.deploying.commands import run
from shoal.errors import DeployError
from shoal.exporters.documents import Export, render
from shoal.exporters.naming import Tag
from shoal.exporters.swarm import export_swarm
from shoal.manifest import Project
from shoal.runtimes.container import connect
from shoal.runtimes.container.engine import Client, engine_call

NAMESPACE_LABEL = "com.docker.stack.namespace"


@dataclass(frozen=True)
class TaskView:
    """One task of the stack: service, slot, state and the host ports it publishes."""

    service: str
    slot: int
    state: str
    ports: tuple[int, ...]


def _docker() -> str:
    found = shutil.which("docker")
    if found is None:
        raise DeployError("swarm", "no docker command (install the docker.io package)")
    return found


def swarm_state(client: Client) -> str:
    """``active``, ``inactive``, ``pending``...: this engine's swarm state; raise if no manager."""
    info = client.info()
    swarm = info.get("Swarm") or {}
    return str(swarm.get("LocalNodeState", "inactive"))


def _check_manager(client: Client) -> None:
    swarm = client.info().get("Swarm") or {}
    if swarm.get("LocalNodeState") != "active":
        raise DeployError(
            "swarm",
            "this Docker Engine is not in a swarm; start one with "
            "`docker swarm init --advertise-addr 127.0.0.1`",
        )
    if not swarm.get("ControlAvailable"):
        raise DeployError("swarm", "this node is a worker; deploy from a swarm manager")


def stack_file(project: Project) -> Path:
    return project.root / ".shoal" / "deploy" / "swarm" / "stack.yaml"


def deploy_stack(project: Project, *, tag: Tag = "latest", url: str | None = None) -> Export:
    """Write the stack file and deploy (or update) the stack named after the app."""
    client = connect(url)
    try:
        _check_manager(client)
    finally:
        client.close()
    result = export_swarm(project.manifest, tag=tag)
    path = stack_file(project)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(result.documents[0]))
    run(
        [
            _docker(),
            "stack",
            "deploy",
            "--compose-file",
            str(path),
            "--resolve-image",
            "never",
            "--prune",
            "--detach=true",
            project.manifest.name,
        ]
    )
    return result


def remove_stack(app: str, *, timeout: float = 60.0, url: str | None = None) -> None:
    """Remove the stack and wait until its services, tasks and networks are gone."""
    run([_docker(), "stack", "rm", app])
    client = connect(url)
    try:
        deadline = time.monotonic() + timeout
        label = {"label": f"{NAMESPACE_LABEL}={app}"}
        while time.monotonic() < deadline:
            # The low-level calls list in one request (the high-level ones inspect each
            # container, which may be gone by then).
            left = (
                client.api.services(filters=label)
                or client.api.containers(all=True, filters=label)
                or client.api.networks(filters=label)
            )
            if not left:
                return
            time.sleep(0.5)
        raise DeployError("swarm", f"stack {app} still has resources after {timeout:g}s")
    finally:
        client.close()


def tasks(app: str, *, url: str | None = None) -> list[TaskView]:
    """The stack's tasks that should be running, with their host ports."""
    client = connect(url)
    try:
        out = []
        for service in client.services.list(filters={"label": f"{NAMESPACE_LABEL}={app}"}):
            name = service.name.removeprefix(f"{app}_")
            for task in service.tasks(filters={"desired-state": "running"}):
                status = task.get("Status", {})
                ports = _ipv4_ports(client, status)
                out.append(
                    TaskView(name, int(task.get("Slot", 0)), status.get("State", "?"), ports)
                )
        return sorted(out, key=lambda t: (t.service, t.slot))
    finally:
        client.close()


def _ipv4_ports(client: Client, status: dict[str, Any]) -> tuple[int, ...]:
    """The host ports a task publishes on IPv4 (what 127.0.0.1 reaches).

    The task's ``PortStatus`` lists one port per address family without saying which is
    which, and the IPv4 and IPv6 ports differ; the container on this node says.
    """
    container = (status.get("ContainerStatus") or {}).get("ContainerID")
    if container:
        try:
            info = client.api.inspect_container(container)
        except docker.errors.NotFound:
            return ()
        bindings = (info.get("NetworkSettings") or {}).get("Ports") or {}
        return tuple(
            sorted(
                int(b["HostPort"])
                for entries in bindings.values()
                for b in entries or []
                if b.get("HostIp") in ("0.0.0.0", "") and b.get("HostPort")  # noqa: S104
            )
        )
    published = (status.get("PortStatus") or {}).get("Ports") or []
    return tuple(sorted({int(p["PublishedPort"]) for p in published if p.get("PublishedPort")}))


_UPDATING = ("updating", "rollback_started")
_FAILED = ("paused", "rollback_paused", "rollback_completed")


def update_marks(app: str, *, url: str | None = None) -> dict[str, str]:
    """When each service of the stack last began an update (``""``: never), to tell an update
    a deploy starts from an earlier one: take them before deploying, give them to
    :func:`converged`."""
    client = connect(url)
    try:
        return {
            s["Spec"]["Name"]: (s.get("UpdateStatus") or {}).get("StartedAt", "")
            for s in _stack_services(client, app, url)
        }
    finally:
        client.close()


def _stack_services(client: Client, app: str, url: str | None) -> list[dict[str, Any]]:
    """The engine's inspect of each service of the stack."""
    with engine_call(f"list the services of stack {app}", url or ""):
        services: list[dict[str, Any]] = client.api.services(
            filters={"label": f"{NAMESPACE_LABEL}={app}"}
        )
    return services


def settled(
    service: dict[str, Any], tasks: list[dict[str, Any]], marks: dict[str, str] | None
) -> bool:
    """Whether ``service`` (the engine's inspect) runs its desired replicas of its current
    spec, given all its ``tasks``.

    A task counts when it runs with the service's container spec: right after a deploy the
    old tasks still run the same count with the old spec. With ``marks`` (from
    :func:`update_marks`), an update begun since then that failed (paused, or rolled back to
    the spec before) raises :class:`DeployError` with the failed task's reason.
    """
    spec = service["Spec"]
    name = spec["Name"]
    update = service.get("UpdateStatus") or {}
    state = update.get("State", "")
    if state in _UPDATING:
        return False
    if state in _FAILED:
        if marks is not None and update.get("StartedAt", "") != marks.get(name):
            failed = sorted(
                (
                    t
                    for t in tasks
                    if (t.get("Status") or {}).get("State") in ("failed", "rejected")
                ),
                key=lambda t: str(t.get("UpdatedAt", "")),
            )
            why = (
                f"; its last failed task: {failed[-1]['Status'].get('Err', '?')}" if failed else ""
            )
            if state == "rollback_completed":
                outcome = "rolled back"
            else:
                outcome = f"paused ({update.get('Message', state)})"
            raise DeployError(
                "swarm",
                f"the update of {name} failed and was {outcome}{why}; "
                f"see docker service ps --no-trunc {name}",
            )
        if state != "rollback_completed":  # a paused update has not converged
            return False
    want = int(((spec.get("Mode") or {}).get("Replicated") or {}).get("Replicas", 1))
    current = spec["TaskTemplate"].get("ContainerSpec")
    running = [
        t
        for t in tasks
        if t.get("DesiredState") == "running"
        and (t.get("Status") or {}).get("State") == "running"
        and (t.get("Spec") or {}).get("ContainerSpec") == current
    ]
    return len(running) == want


def converged(app: str, *, marks: dict[str, str] | None = None, url: str | None = None) -> bool:
    """Whether every service of the stack runs its desired replicas of its current spec (see
    :func:`settled`; ``marks`` makes a failed update raise)."""
    client = connect(url)
    try:
        services = _stack_services(client, app, url)
        with engine_call(f"list the tasks of stack {app}", url or ""):
            return bool(services) and all(
                settled(s, client.api.tasks(filters={"service": s["ID"]}), marks) for s in services
            )
    finally:
        client.close()


def wait_converged(
    app: str, *, timeout: float = 90.0, marks: dict[str, str] | None = None, url: str | None = None
) -> bool:
    """Wait until :func:`converged` (True), or ``timeout`` seconds (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if converged(app, marks=marks, url=url):
            return True
        time.sleep(1.0)
    return False


def scale(app: str, service: str, replicas: int, *, url: str | None = None) -> None:
    """Set a service's replica count, and nothing else: the tasks running stay as they are.

    The stored spec goes back exactly as read, with only ``Mode.Replicated.Replicas`` changed,
    as ``docker service scale`` does. The Docker SDK's ``Service.scale`` re-reads the spec with
    the engine's defaults filled in and sends that back: Swarm sees a changed task template and
    replaces every running task, a rolling restart of the whole service on each scale.
    """
    client = connect(url)
    try:
        name = f"{app}_{service}"
        found = [
            s for s in client.api.services(filters={"name": name}) if s["Spec"]["Name"] == name
        ]
        if not found:
            raise DeployError("swarm", f"no service {service} in stack {app}")
        spec = found[0]["Spec"]
        mode = spec.get("Mode") or {}
        if "Replicated" not in mode:
            raise DeployError("swarm", f"{name} is not a replicated service: it cannot be scaled")
        with engine_call(f"scale {name}", url or ""):
            client.api.update_service(
                found[0]["ID"],
                found[0]["Version"]["Index"],
                task_template=spec["TaskTemplate"],
                name=spec["Name"],
                labels=spec.get("Labels") or {},
                mode={"Replicated": {**mode["Replicated"], "Replicas": replicas}},
                update_config=spec.get("UpdateConfig"),
                rollback_config=spec.get("RollbackConfig"),
                endpoint_spec=spec.get("EndpointSpec"),
            )
    finally:
        client.close()


__all__ = [
    "NAMESPACE_LABEL",
    "TaskView",
    "converged",
    "deploy_stack",
    "remove_stack",
    "scale",
    "settled",
    "stack_file",
    "swarm_state",
    "tasks",
    "update_marks",
    "wait_converged",
]
