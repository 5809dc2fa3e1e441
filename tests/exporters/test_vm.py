"""The VM export of examples/shop: golden files; user-data checked by ``cloud-init schema``
(cloud-init's own schema, offline) and units by ``systemd-analyze verify``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from shoal.exporters.documents import Export, render
from shoal.exporters.vm import export_vm
from shoal.manifest import Manifest
from tests.exporters.conftest import check_golden


def write(export: Export, folder: Path) -> list[Path]:
    paths = []
    for doc in export.documents:
        path = folder / doc.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(doc))
        paths.append(path)
    return paths


def tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"no {name} on this machine (Debian package {package})")
    return found


def test_golden(shop: Manifest) -> None:
    check_golden(export_vm(shop), "vm")


@pytest.mark.parametrize("which", ["shop", "full"])
def test_user_data_is_valid_cloud_config(
    which: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    cloud_init = tool("cloud-init", "cloud-init")
    files = [
        p
        for p in write(export_vm(request.getfixturevalue(which)), tmp_path)
        if p.name == "user-data"
    ]
    assert files
    for path in files:
        done = subprocess.run(
            [cloud_init, "schema", "--config-file", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_cloud_init_refuses_a_broken_user_data(shop: Manifest, tmp_path: Path) -> None:
    cloud_init = tool("cloud-init", "cloud-init")
    text = render(next(d for d in export_vm(shop).documents if d.name.endswith("user-data")))
    path = tmp_path / "user-data"
    path.write_text(text.replace("packages:", "packages: 7\nx_packages:"))
    done = subprocess.run(
        [cloud_init, "schema", "--config-file", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0


@pytest.mark.parametrize("which", ["shop", "full"])
def test_units_verify(which: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    analyze = tool("systemd-analyze", "systemd")
    units = [
        p
        for p in write(export_vm(request.getfixturevalue(which)), tmp_path)
        if p.suffix in (".service", ".timer")
    ]
    flat = tmp_path / "units"
    flat.mkdir()
    for unit in units:
        shutil.copy(unit, flat / unit.name)
    done = subprocess.run(
        [analyze, "verify", "--man=no", *sorted(str(p) for p in flat.iterdir())],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    problems = [line for line in done.stderr.splitlines() if str(flat) in line]
    assert done.returncode == 0 and not problems, done.stderr


def test_shop_mapping(shop: Manifest) -> None:
    export = export_vm(shop)
    docs = {d.name: render(d) for d in export.documents}
    unit = docs["catalog/shop-catalog.service"]
    assert "ExecStart=python3 app.py" in unit and "Restart=always" in unit
    assert "MemoryMax=128M" in unit and "CPUQuota=50%" in unit
    assert 'Environment="LOG_LEVEL=info"' in unit
    assert "OnCalendar=*-*-* 2:0:00 UTC" in docs["nightly-report/shop-nightly-report.timer"]
    assert docs["orders/user-data"].startswith("#cloud-config\n")
    assert 'source      = "./orders/"' in docs["orders/orders.pkr.hcl"]
    gaps = {g.path for g in export.gaps}
    assert {"functions.thumbnail", "services.catalog.health", "services.catalog.replicas"} <= gaps
