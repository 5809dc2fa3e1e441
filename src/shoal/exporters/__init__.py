"""Exporters: the manifest for engines beyond one machine, as pure functions (DESIGN.md §3).

Each target is ``export_TARGET(manifest, ...) -> Export``: the documents to write and every
setting the target cannot express (a gap), never dropping one silently. ``shoal export`` writes
the documents and prints the gaps; ``shoal.deploying`` applies them.

documents   Export, Document, Gap, Ledger: the common result, and rendering to YAML
naming      DNS-1123 names, image names, whole seconds, Kubernetes labels
scheduling  schedule expressions in each target's dialect (5-field cron, EventBridge, systemd)
containers  the container a service or job becomes (image, command, env, port)
kubernetes  Deployment, Service, HPA, Ingress / HTTPRoute, CronJob
knative     Knative Service, PingSource, Broker, Trigger
swarm       a stack file (Compose format with deploy:), ports in host mode
sam         AWS SAM: functions, HttpApi / ScheduleV2 / SQS events, queues; Fargate services
vm          per service: systemd unit, cloud-init user-data, Packer template; jobs as timers
"""

from shoal.exporters.documents import Document, Export, Gap, Ledger, render
from shoal.exporters.kubernetes import export_kubernetes
from shoal.exporters.sam import export_sam
from shoal.exporters.swarm import export_swarm
from shoal.exporters.vm import export_vm

__all__ = [
    "Document",
    "Export",
    "Gap",
    "Ledger",
    "export_kubernetes",
    "export_sam",
    "export_swarm",
    "export_vm",
    "render",
]
