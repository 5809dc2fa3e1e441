"""The export targets by name, and the one call ``shoal export`` and ``shoal deploy`` make.

``export(manifest, "k8s", routing="httproute")`` picks the exporter and passes it only the
options it takes. Pure.
"""

from __future__ import annotations

from typing import Literal

from shoal.exporters.documents import Export
from shoal.exporters.kubernetes import Routing, export_kubernetes
from shoal.exporters.naming import Tag
from shoal.exporters.sam import Services, export_sam
from shoal.exporters.swarm import export_swarm
from shoal.exporters.vm import export_vm
from shoal.manifest.schema import Manifest

Target = Literal["k8s", "swarm", "sam", "vm"]
TARGETS: dict[Target, str] = {
    "k8s": "Kubernetes + Knative (Deployment, Service, HPA, Ingress/HTTPRoute, CronJob, "
    "Knative Service, PingSource, Broker, Trigger)",
    "swarm": "Docker Swarm stack file (Compose format with deploy:)",
    "sam": "AWS SAM template (Lambda functions, SQS queues; services as Fargate or reported)",
    "vm": "VM images: systemd unit, cloud-init user-data and Packer template per service",
}


def export(
    manifest: Manifest,
    target: Target,
    *,
    routing: Routing = "ingress",
    services: Services = "report",
    tag: Tag = "latest",
) -> Export:
    """The documents of ``manifest`` for ``target`` and what the target cannot express."""
    if target == "k8s":
        return export_kubernetes(manifest, routing=routing, tag=tag)
    if target == "swarm":
        return export_swarm(manifest, tag=tag)
    if target == "sam":
        return export_sam(manifest, services=services, tag=tag)
    return export_vm(manifest)


__all__ = ["TARGETS", "Target", "export"]
