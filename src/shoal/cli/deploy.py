"""``shoal deploy``: the exported documents applied with the target engine's own client.

shoal deploy --target swarm            build the images, docker stack deploy (or update)
shoal deploy --target swarm --remove   docker stack rm, waiting until it is gone
shoal deploy --target k8s [--dry-run]  server-side apply to the kubeconfig's context
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table

from shoal.cli.common import manifest_option, settings_of, stderr, stdout
from shoal.cli.export import gap_table
from shoal.errors import RuntimeNotAvailable, UsageError
from shoal.exporters.naming import Tag
from shoal.manifest import Project, load_manifest

if TYPE_CHECKING:
    from shoal.deploying.swarm import TaskView


@click.command("deploy")
@manifest_option
@click.option(
    "-t", "--target", type=click.Choice(["swarm", "k8s"]), required=True, help="swarm or k8s."
)
@click.option("--dry-run", is_flag=True, help="Print what would be sent; change nothing.")
@click.option("--remove", is_flag=True, help="swarm: remove the stack instead.")
@click.option(
    "--build/--no-build",
    default=None,
    help="Build the images first (default: yes for swarm; no for k8s, which pulls by --tag). "
    "swarm --no-build uses the tags of the last build.",
)
@click.option("--tag", default="latest", show_default=True, help="Image tag when not building.")
@click.option("--ingress/--httproute", "ingress", default=True, help="k8s: how routes are sent.")
@click.option("-n", "--namespace", default=None, help="k8s: namespace (default: the context's).")
@click.option("--context", default=None, help="k8s: kubeconfig context (default: the current).")
@click.option("--kubeconfig", default=None, help="k8s: kubeconfig file (default: $KUBECONFIG).")
@click.pass_context
def deploy(
    ctx: click.Context,
    *,
    file: str | None,
    target: str,
    dry_run: bool,
    remove: bool,
    build: bool | None,
    tag: str,
    ingress: bool,
    namespace: str | None,
    context: str | None,
    kubeconfig: str | None,
) -> None:
    """Deploy the manifest to Docker Swarm or Kubernetes, and list what the target cannot say.

    Swarm: the stack is named after the app; ports are published in host mode, one per task.
    Kubernetes: every object is applied with server-side apply (field manager "shoal").
    """
    project = load_manifest(file)
    settings = settings_of(ctx)
    out, err = stdout(settings), stderr(settings)
    app = project.manifest.name
    if target == "swarm":
        if remove and dry_run:
            out.print(f"would run: docker stack rm {app}")
            return
        if dry_run:
            from shoal.deploying.building import last_tags  # noqa: PLC0415
            from shoal.exporters.documents import render  # noqa: PLC0415
            from shoal.exporters.swarm import export_swarm  # noqa: PLC0415

            result = export_swarm(project.manifest, tag=last_tags(project) or tag)
            click.echo(f"# would run: docker stack deploy --compose-file stack.yaml {app}")
            click.echo(render(result.documents[0]), nl=False)
            err.print(gap_table(result))
            return
        swarm = _swarm_module()
        if remove:
            with err.status(f"removing stack {app}"):
                swarm.remove_stack(app)
            out.print(f"removed stack {app}")
            return
        tags: Tag = tag
        from shoal.deploying.building import build_images, last_tags  # noqa: PLC0415

        if build is not False:
            with err.status("building images") as status:
                tags = build_images(project, lambda line: status.update(line[:100]))
        else:
            tags = last_tags(project) or tag  # what the last `shoal build --export` made
        with err.status(f"deploying stack {app}"):
            marks = swarm.update_marks(app)  # to tell this deploy's updates from earlier ones
            result = swarm.deploy_stack(project, tag=tags)
        with err.status("waiting for every task to run its new spec"):
            settled = swarm.wait_converged(app, marks=marks)
        out.print(f"deployed stack [bold]{app}[/bold] ({swarm.stack_file(project)})")
        out.print(_tasks_table([t for t in swarm.tasks(app) if t.state == "running"]))
        if not settled:
            err.print(
                f"[yellow]warning:[/yellow] not every task runs yet; see docker stack ps {app}"
            )
        out.print(gap_table(result))
        return
    if remove:
        raise UsageError(
            "--remove is for --target swarm; on Kubernetes use kubectl delete -l "
            f"app.kubernetes.io/part-of={app}"
        )
    _deploy_k8s(
        project,
        out,
        err,
        dry_run=dry_run,
        build=build,
        tag=tag,
        ingress=ingress,
        namespace=namespace,
        context=context,
        kubeconfig=kubeconfig,
    )


def _swarm_module() -> ModuleType:
    try:
        from shoal.deploying import swarm  # noqa: PLC0415 - docker only when deploying
    except ImportError as exc:
        raise RuntimeNotAvailable(
            "swarm", f"the Docker SDK is missing ({exc.name})", extra="docker"
        ) from exc
    return swarm


def _tasks_table(views: Sequence[TaskView]) -> Table:
    table = Table(title="tasks (reach them on 127.0.0.1)", title_justify="left")
    for column in ("service", "slot", "state", "host ports"):
        table.add_column(column)
    for view in views:
        ports = ", ".join(f"127.0.0.1:{p}" for p in view.ports) or "-"
        table.add_row(view.service, str(view.slot), view.state, ports)
    return table


def _deploy_k8s(
    project: Project,
    out: Console,
    err: Console,
    *,
    dry_run: bool,
    build: bool | None,
    tag: str,
    ingress: bool,
    namespace: str | None,
    context: str | None,
    kubeconfig: str | None,
) -> None:
    from shoal.deploying import kubernetes as k8s  # noqa: PLC0415 - the client only when used
    from shoal.exporters.kubernetes import export_kubernetes  # noqa: PLC0415

    kubeconfig = kubeconfig or os.environ.get("KUBECONFIG")
    tags: Tag = tag
    if build:
        from shoal.deploying.building import build_images  # noqa: PLC0415

        with err.status("building images") as status:
            tags = build_images(project, lambda line: status.update(line[:100]))
    result = export_kubernetes(
        project.manifest, routing="ingress" if ingress else "httproute", tag=tags
    )
    namespace = namespace or k8s.current_namespace(context, kubeconfig)
    requests = k8s.apply_requests(result, namespace)
    if dry_run:
        click.echo(k8s.dry_run_text(requests), nl=False)
        err.print(f"dry run: {len(requests)} objects would be applied to namespace {namespace}")
        err.print(gap_table(result))
        return
    with err.status(f"applying {len(requests)} objects to namespace {namespace}"):
        lines = k8s.apply(requests, context=context, kubeconfig=kubeconfig)
    for line in lines:
        out.print(line)
    out.print(gap_table(result))


__all__ = ["deploy"]
