"""The Kubernetes + Knative export of examples/shop: golden files, validated with
kubernetes-validate (core kinds, offline schemas) and the Knative CRDs' openAPIV3Schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from shoal.exporters.documents import Export, render
from shoal.exporters.kubernetes import export_kubernetes
from shoal.manifest import Manifest
from tests.exporters.conftest import check_golden

KNATIVE = Path(__file__).parent / "data" / "knative"
K8S_VERSION = "1.33.0"
CORE = {"apps/v1", "v1", "batch/v1", "autoscaling/v2", "networking.k8s.io/v1"}


def objects(export: Export) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for doc in export.documents:
        out.extend(d for d in yaml.safe_load_all(render(doc)) if d)
    return out


def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    schemas = {}
    for path in KNATIVE.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = version["schema"]["openAPIV3Schema"]
            schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def _validate_core(obj: dict[str, Any]) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def _validate_knative(obj: dict[str, Any], schemas: dict[tuple[str, str], Any]) -> None:
    import jsonschema

    schema = schemas[(obj["apiVersion"], obj["kind"])]
    jsonschema.validate(obj, schema)


def test_golden_ingress(shop: Manifest) -> None:
    check_golden(export_kubernetes(shop), "k8s")


def test_golden_httproute(shop: Manifest) -> None:
    export = export_kubernetes(shop, routing="httproute")
    routes = [d for d in export.documents if d.name == "routes.yaml"]
    check_golden(Export("k8s", tuple(routes), ()), "k8s-httproute")


@pytest.mark.parametrize("which", ["shop", "full"])
def test_every_object_validates(which: str, request: pytest.FixtureRequest) -> None:
    manifest: Manifest = request.getfixturevalue(which)
    schemas = _crd_schemas()
    kinds = set()
    for obj in objects(export_kubernetes(manifest)):
        kinds.add(obj["kind"])
        if obj["apiVersion"] in CORE:
            _validate_core(obj)
        else:
            _validate_knative(obj, schemas)
    if which == "full":
        assert {
            "Deployment",
            "Service",
            "HorizontalPodAutoscaler",
            "Ingress",
            "CronJob",
            "PingSource",
            "Broker",
            "Trigger",
        } <= kinds


def test_a_broken_object_fails_validation(shop: Manifest) -> None:
    """The validators do look: a Deployment with a string replica count is refused."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    deployment = next(o for o in objects(export_kubernetes(shop)) if o["kind"] == "Deployment")
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    import jsonschema

    ksvc = next(
        o
        for o in objects(export_kubernetes(shop))
        if o["kind"] == "Service" and o["apiVersion"].startswith("serving")
    )
    ksvc["spec"]["template"]["spec"]["containerConcurrency"] = "one"
    with pytest.raises(jsonschema.ValidationError):
        _validate_knative(ksvc, _crd_schemas())


def test_shop_mapping(shop: Manifest) -> None:
    objs = objects(export_kubernetes(shop))
    by = {(o["kind"], o["metadata"]["name"]): o for o in objs}
    catalog = by[("Deployment", "catalog")]["spec"]
    assert catalog["replicas"] == 2
    c = catalog["template"]["spec"]["containers"][0]
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": 8080}
    assert c["resources"]["limits"] == {"cpu": "500m", "memory": "128Mi"}
    assert c["command"] == ["python3", "app.py"]
    assert catalog["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    ingress = by[("Ingress", "shop")]["spec"]["rules"][0]["http"]["paths"]
    assert [p["path"] for p in ingress] == ["/catalog", "/orders"]
    cron = by[("CronJob", "nightly-report")]["spec"]
    assert cron["schedule"] == "0 2 * * *" and cron["concurrencyPolicy"] == "Forbid"
    thumb = by[("Service", "thumbnail")]["spec"]["template"]
    assert thumb["metadata"]["annotations"]["autoscaling.knative.dev/max-scale"] == "20"
    assert thumb["spec"]["timeoutSeconds"] == 10 and thumb["spec"]["containerConcurrency"] == 1
    trigger = by[("Trigger", "notify-orders-created")]["spec"]
    assert trigger["delivery"]["retry"] == 2
    assert trigger["delivery"]["deadLetterSink"]["ref"]["name"] == "orders-failed"
    assert by[("PingSource", "notify-schedule-1")]["spec"]["schedule"] == "*/5 * * * *"


def test_gaps_name_what_kubernetes_cannot_say(full: Manifest) -> None:
    gaps = {g.path: g for g in export_kubernetes(full).gaps}
    assert "services.web.autoscale.min" in gaps  # no scale to zero with an HPA
    assert "services.web.restart.backoff" in gaps
    assert "services.web.restart.policy" in gaps
    assert "services.web.routes.0.strip_prefix" in gaps
    assert "services.api.runtime" in gaps
    assert "functions.resize.triggers.1.schedule" in gaps  # disabled: no PingSource
    assert "services.web.routes.0.strip_prefix" not in {
        g.path for g in export_kubernetes(full, routing="httproute").gaps
    }
