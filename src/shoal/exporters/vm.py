"""VM images: per service a systemd unit that runs it, cloud-init user-data that installs and
starts that unit on first boot, and a Packer template that bakes the service's folder into an
image (DESIGN.md §1: "one service per virtual machine"). Jobs become a oneshot unit and a timer.
Pure: the exporter sees only the manifest, so the service's files reach the VM through the
Packer build (copied to ``/opt/APP/NAME``); the user-data is the boot-time part (user, unit,
environment, start) and works on that image.

Files per service, in ``NAME/``: ``APP-NAME.service``, ``user-data`` and ``NAME.pkr.hcl``
(run ``packer build`` from the manifest's folder: the template copies ``workdir`` from there).
"""

from __future__ import annotations

import json
import re
from typing import Any

from shoal.exporters.containers import local_addresses
from shoal.exporters.documents import Document, Export, Ledger, dump_yaml, finish
from shoal.exporters.naming import DEFAULT_PORT, mebibytes
from shoal.exporters.scheduling import on_calendar
from shoal.manifest.schema import Job, Manifest, Service
from shoal.manifest.units import format_duration, format_size

_RESTART = {"always": "always", "on-failure": "on-failure", "never": "no"}
_PLAIN = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")


def _word(arg: str) -> str:
    """One ExecStart word, quoted the way systemd.service(5) reads it."""
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if _PLAIN.fullmatch(arg):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _env_line(key: str, value: str) -> str:
    text = f"{key}={value}".replace("%", "%%").replace("\\", "\\\\").replace('"', '\\"')
    return f'Environment="{text}"'


def _seconds(value: float) -> str:
    ms = round(value * 1000)
    return f"{ms}ms" if ms % 1000 else f"{ms // 1000}s"


def _unit_name(app: str, name: str) -> str:
    return f"{app}-{name}"


def _exec(
    app: str, path: str, name: str, unit: Service | Job, *, port: int | None, ledger: Ledger
) -> tuple[list[str], list[str]]:
    """ExecStart's argv and the Debian packages the VM needs for it."""
    ledger.map(path, "runtime", "command", "image", "build", "workdir")
    if unit.image is not None or (unit.runtime == "container" and unit.command is None):
        image = unit.image or f"{app}/{name}:latest"
        argv = ["/usr/bin/docker", "run", "--rm", "--name", _unit_name(app, name)]
        for key in unit.env:
            argv += ["--env", key]
        if port is not None:
            argv += ["--publish", f"{port}:{port}", "--env", "PORT"]
        argv.append(image)
        argv += list(unit.command or [])
        return argv, ["docker.io"]
    return list(unit.command or []), ["python3"]


def _service_unit(
    app: str, name: str, unit: Service | Job, *, oneshot: bool, ledger: Ledger
) -> tuple[str, list[str]]:
    kind = "jobs" if oneshot else "services"
    path = f"{kind}.{name}"
    port = (unit.port or DEFAULT_PORT) if isinstance(unit, Service) else None
    argv, packages = _exec(app, path, name, unit, port=port, ledger=ledger)
    env = dict(unit.env)
    if port is not None:
        env.setdefault("PORT", str(port))
        env.setdefault("HOST", "0.0.0.0")  # noqa: S104 - reached by a load balancer
        ledger.map(path, "port", "profiles")
    ledger.map(path, "env")
    head = [
        "[Unit]",
        f"Description={app} {name} (exported by shoal)",
        "Wants=network-online.target",
        "After=network-online.target",
    ]
    body = [
        "[Service]",
        f"Type={'oneshot' if oneshot else 'simple'}",
        f"User={app}",
        f"WorkingDirectory=/opt/{app}/{name}",
    ]
    if "docker.io" in packages:
        body.append("SupplementaryGroups=docker")
    body += [_env_line(k, v) for k, v in env.items()]
    body.append("ExecStart=" + " ".join(_word(a) for a in argv))
    if isinstance(unit, Service):
        r = unit.restart
        body.append(f"Restart={_RESTART[r.policy]}")
        body.append(f"RestartSec={_seconds(r.backoff.initial)}")
        ledger.map(f"{path}.restart", "policy")
        ledger.map(f"{path}.restart.backoff", "initial")
        ledger.gap(
            f"{path}.restart.backoff",
            f"x{r.backoff.factor:g} up to {format_duration(r.backoff.max)}, reset after "
            f"{format_duration(r.backoff.reset_after)}",
            "systemd 252 (Debian 12) restarts after a fixed RestartSec",
            f"RestartSec={_seconds(r.backoff.initial)}",
        )
        if r.max_retries is not None:
            head.append(f"StartLimitBurst={r.max_retries + 1}")
            head.append(f"StartLimitIntervalSec={_seconds(r.backoff.reset_after)}")
        ledger.map(f"{path}.restart", "max_retries")
        body.append(f"TimeoutStopSec={_seconds(unit.stop_grace_period)}")
        ledger.map(path, "stop_grace_period")
    else:
        if unit.timeout is not None:
            body.append(f"TimeoutStartSec={_seconds(unit.timeout)}")
        ledger.map(path, "timeout")
    if unit.resources.memory is not None:
        body.append(f"MemoryMax={mebibytes(unit.resources.memory)}M")
    if unit.resources.cpus is not None:
        body.append(f"CPUQuota={round(unit.resources.cpus * 100)}%")
    ledger.map(f"{path}.resources", "cpus", "memory")
    tail = ["[Install]", "WantedBy=multi-user.target"] if not oneshot else []
    text = "\n".join(head) + "\n\n" + "\n".join(body) + "\n"
    if tail:
        text += "\n" + "\n".join(tail) + "\n"
    return text, packages


def _user_data(app: str, units: dict[str, str], packages: list[str], start: list[str]) -> str:
    config: dict[str, Any] = {
        "users": ["default", {"name": app, "system": True, "shell": "/usr/sbin/nologin"}],
        "packages": sorted(set(packages)),
        "write_files": [
            {"path": f"/etc/systemd/system/{file}", "permissions": "0644", "content": text}
            for file, text in units.items()
        ],
        "runcmd": [
            ["mkdir", "-p", *[f"/opt/{app}/{n}" for n in start]],
            ["chown", "-R", f"{app}:{app}", f"/opt/{app}"],
            ["systemctl", "daemon-reload"],
            *[["systemctl", "enable", "--now", unit] for unit in _start_units(units)],
        ],
    }
    return "#cloud-config\n" + dump_yaml(config)


def _start_units(units: dict[str, str]) -> list[str]:
    timers = [u for u in units if u.endswith(".timer")]
    return timers or [u for u in units if u.endswith(".service")]


def _packer(
    app: str, name: str, unit: Service | Job, unit_files: list[str], packages: list[str]
) -> str:
    cpus = max(1, round(unit.resources.cpus or 1))
    memory = max(512, mebibytes(unit.resources.memory or (512 << 20)))
    folder = unit.workdir or unit.build or "."
    q = json.dumps
    uploads = "\n".join(
        f'  provisioner "file" {{\n    source      = "${{path.root}}/{f}"\n'
        f'    destination = "/tmp/{f}"\n  }}\n'
        for f in unit_files
    )
    installs = ",\n".join(
        f"      {q(f'sudo install -m 0644 /tmp/{f} /etc/systemd/system/{f}')}" for f in unit_files
    )
    return f"""packer {{
  required_plugins {{
    qemu = {{
      source  = "github.com/hashicorp/qemu"
      version = ">= 1.1.0"
    }}
  }}
}}

variable "base_image" {{
  type        = string
  description = "A Debian 12 cloud image (qcow2) to start from"
  default     = "debian-12-genericcloud-amd64.qcow2"
}}

variable "ssh_username" {{
  type    = string
  default = "debian"
}}

variable "ssh_private_key_file" {{
  type = string
}}

source "qemu" "{name}" {{
  disk_image           = true
  iso_url              = var.base_image
  iso_checksum         = "none"
  format               = "qcow2"
  headless             = true
  cpus                 = {cpus}
  memory               = {memory}
  vm_name              = "{app}-{name}.qcow2"
  output_directory     = "output-{app}-{name}"
  ssh_username         = var.ssh_username
  ssh_private_key_file = var.ssh_private_key_file
  shutdown_command     = "sudo shutdown -P now"
}}

build {{
  sources = ["source.qemu.{name}"]

  provisioner "file" {{
    source      = {q(folder.rstrip("/") + "/")}
    destination = "/tmp/app"
  }}
{uploads}
  provisioner "shell" {{
    inline = [
      "sudo apt-get update",
      {q("sudo apt-get install -y " + " ".join(sorted(set(packages))))},
      {q(f"sudo useradd --system --shell /usr/sbin/nologin {app} || true")},
      {q(f"sudo mkdir -p /opt/{app} && sudo mv /tmp/app /opt/{app}/{name}")},
      {q(f"sudo chown -R {app}:{app} /opt/{app}/{name}")},
{installs},
      "sudo systemctl daemon-reload",
      {q("sudo systemctl enable " + " ".join(_start_units(dict.fromkeys(unit_files, ""))))},
    ]
  }}
}}
"""


def _service_documents(app: str, name: str, s: Service, ledger: Ledger) -> list[Document]:
    path = f"services.{name}"
    text, packages = _service_unit(app, name, s, oneshot=False, ledger=ledger)
    unit = f"{_unit_name(app, name)}.service"
    if s.health is not None:
        ledger.gap(
            f"{path}.health",
            s.health.http or s.health.exec or "tcp",
            "systemd has no readiness probe",
            "a load balancer's health check, per VM",
        )
    else:
        ledger.map(path, "health")
    scale = (
        f"autoscale {s.autoscale.min}-{s.autoscale.max}"
        if s.autoscale
        else f"{s.replicas} replica(s)"
    )
    ledger.gap(
        f"{path}.replicas" if s.autoscale is None else f"{path}.autoscale",
        scale,
        "one VM runs one instance",
        "start as many VMs from the image (an instance group)",
    )
    ledger.map(path, "replicas", "autoscale")
    for i, route in enumerate(s.routes):
        ledger.gap(
            f"{path}.routes.{i}",
            route.path,
            "a VM has no gateway",
            f"the VM answers on port {s.port or DEFAULT_PORT}; route with a load balancer",
        )
    ledger.map(path, "routes")
    ledger.gap(
        f"{path}.update",
        f"surge {s.update.max_surge}, unavailable "
        f"{s.update.max_unavailable}, drain {format_duration(s.update.drain)}",
        "rolling VMs is the instance group's job",
        "",
    )
    if s.depends_on:
        ledger.gap(f"{path}.depends_on", dict(s.depends_on), "VMs boot independently")
    else:
        ledger.map(path, "depends_on")
    return [
        Document(f"{name}/{unit}", text),
        Document(f"{name}/user-data", _user_data(app, {unit: text}, packages, [name])),
        Document(f"{name}/{name}.pkr.hcl", _packer(app, name, s, [unit], packages)),
    ]


def _job_documents(app: str, name: str, j: Job, ledger: Ledger) -> list[Document]:
    path = f"jobs.{name}"
    text, packages = _service_unit(app, name, j, oneshot=True, ledger=ledger)
    service = f"{_unit_name(app, name)}.service"
    timer = f"{_unit_name(app, name)}.timer"
    units = {service: text}
    ledger.map(path, "timezone", "history")
    if j.schedule is None:
        ledger.map(path, "schedule")
    else:
        when, note = on_calendar(j.schedule)
        if when is None:
            ledger.gap(f"{path}.schedule", j.schedule, note, "no timer: start it by hand")
        else:
            trigger = (
                f"OnUnitActiveSec={when.removeprefix('rate:')}s\nOnBootSec=0"
                if when.startswith("rate:")
                else f"OnCalendar={when} {j.timezone}"
            )
            units[timer] = (
                f"[Unit]\nDescription={app} {name} schedule (exported by shoal)\n\n"
                f"[Timer]\n{trigger}\nPersistent=true\n\n"
                "[Install]\nWantedBy=timers.target\n"
            )
            ledger.map(path, "schedule")
    if j.concurrency_policy == "replace":
        ledger.gap(
            f"{path}.concurrency_policy",
            "replace",
            "a timer never starts a unit that is still running",
            "forbid",
        )
    # A timer skips a run while the last one still runs: forbid; allow is not possible.
    elif j.concurrency_policy == "allow":
        ledger.gap(
            f"{path}.concurrency_policy",
            "allow",
            "a timer never starts a unit that is still running",
            "forbid",
        )
    else:
        ledger.map(path, "concurrency_policy")
    if j.retries:
        ledger.gap(f"{path}.retries", j.retries, "a oneshot unit is not retried by a timer")
    else:
        ledger.map(path, "retries")
    if j.starting_deadline is not None:
        ledger.gap(
            f"{path}.starting_deadline",
            format_duration(j.starting_deadline),
            "Persistent=true runs a missed time at the next boot, however late",
        )
    else:
        ledger.map(path, "starting_deadline")
    docs = [Document(f"{name}/{f}", t) for f, t in units.items()]
    docs.append(Document(f"{name}/user-data", _user_data(app, units, packages, [name])))
    docs.append(Document(f"{name}/{name}.pkr.hcl", _packer(app, name, j, list(units), packages)))
    return docs


def export_vm(manifest: Manifest) -> Export:
    """Units, user-data and Packer templates per service and job; gaps for the rest."""
    ledger = Ledger()
    app = manifest.name
    ledger.map("name")
    local_addresses(manifest, ledger)
    docs: list[Document] = []
    for name, s in manifest.services.items():
        docs.extend(_service_documents(app, name, s, ledger))
    for name, j in manifest.jobs.items():
        docs.extend(_job_documents(app, name, j, ledger))
    for name, f in manifest.functions.items():
        ledger.gap(
            f"functions.{name}",
            f.handler,
            "a function is not a VM of its own",
            "not exported (use --target sam or k8s, or run it under shoal in a VM)",
        )
    for topic in manifest.topics:
        ledger.gap(f"topics.{topic}", topic, "VMs have no event bus", "not exported")
    g = manifest.gateway
    ledger.gap(
        "gateway",
        f"{g.host}:{g.port}, timeout {format_duration(g.timeout)}, body {format_size(g.max_body)}",
        "a VM has no gateway",
        "a load balancer in front",
    )
    return finish("vm", docs, ledger)


__all__ = ["export_vm"]
