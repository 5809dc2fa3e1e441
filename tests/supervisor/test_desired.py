"""From manifest to desired services and instance specs (pure)."""

from __future__ import annotations

from pathlib import Path

from shoal.manifest import parse_manifest
from shoal.manifest.checking import DiskFiles
from shoal.manifest.loading import Project
from shoal.supervisor.desired import desired_services, instance_spec, service_revision


def project_of(text: str, root: Path) -> Project:
    manifest = parse_manifest(text, "shoal.yaml", {}, DiskFiles(root))
    return Project(manifest=manifest, file=root / "shoal.yaml", root=root)


BASE = """
name: demo
services:
  web:
    command: [python3, app.py]
    env: {A: "1"}
    replicas: 2
    routes: [/web]
    depends_on: [setup]
jobs:
  setup: {command: [python3, migrate.py], retries: 3}
"""


def test_revision_changes_only_with_settings_that_need_a_restart(tmp_path: Path) -> None:
    web = project_of(BASE, tmp_path).manifest.services["web"]
    same = project_of(BASE.replace("replicas: 2", "replicas: 5").replace("/web", "/w2"), tmp_path)
    assert service_revision(same.manifest.services["web"]) == service_revision(web)
    changed = project_of(BASE.replace('A: "1"', 'A: "2"'), tmp_path).manifest.services["web"]
    assert service_revision(changed) != service_revision(web)
    assert service_revision(web, generation=1) != service_revision(web)


def test_desired_services_include_jobs_that_services_wait_for(tmp_path: Path) -> None:
    desired = desired_services(project_of(BASE, tmp_path), scale={"web": 3})
    assert desired["web"].replicas == 3
    assert desired["web"].depends_on == {"setup": "started"}
    assert desired["setup"].one_shot
    assert desired["setup"].restart.policy == "on-failure"
    assert desired["setup"].restart.max_retries == 3


def test_instance_spec_gives_each_replica_its_port_and_identity(tmp_path: Path) -> None:
    project = project_of(BASE, tmp_path)
    web = project.manifest.services["web"]
    spec = instance_spec(
        project, "web", web, ordinal=1, revision="abc", host_port=4321, log_path=tmp_path / "l"
    )
    assert spec.env["PORT"] == "4321" and spec.port == 4321 and spec.host_port == 4321
    assert spec.env["SHOAL_SERVICE"] == "web" and spec.env["SHOAL_INSTANCE"] == "1"
    assert spec.env["A"] == "1"
    assert spec.command == ("python3", "app.py")
    assert spec.workdir == tmp_path
    assert spec.label == "web#1"
