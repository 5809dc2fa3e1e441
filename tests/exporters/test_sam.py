"""The SAM export of examples/shop: golden template, transformed by aws-sam-translator (as
CloudFormation does) and linted by cfn-lint (no errors), in both service modes."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from shoal.exporters.documents import render
from shoal.exporters.sam import Services, export_sam
from shoal.manifest import Manifest
from tests.exporters.conftest import check_golden

POLICIES = {
    "AWSLambdaBasicExecutionRole": (
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
    ),
    "AWSLambdaSQSQueueExecutionRole": (
        "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole"
    ),
    "AWSLambdaRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaRole",
}


def template(manifest: Manifest, services: Services = "report") -> dict[str, Any]:
    data = yaml.safe_load(render(export_sam(manifest, services=services).documents[0]))
    assert isinstance(data, dict)
    return data


def transform(sam: dict[str, Any]) -> dict[str, Any]:
    """What CloudFormation's SAM transform makes of the template, after ``sam package`` (which
    uploads each CodeUri folder and writes its S3 address in its place)."""
    pytest.importorskip("samtranslator")
    import boto3  # type: ignore[import-untyped]
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    packaged = copy.deepcopy(sam)
    for name, resource in packaged["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = f"s3://bucket/{name}.zip"
    translator = Translator(
        managed_policy_map=None,
        sam_parser=Parser(),
        boto_session=boto3.session.Session(region_name="us-east-1"),
    )
    out = translator.translate(
        sam_template=packaged,
        parameter_values={"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012"},
        get_managed_policy_map=lambda: POLICIES,
    )
    assert isinstance(out, dict)
    return out


def lint(sam: dict[str, Any], tmp_path: Path) -> list[str]:
    pytest.importorskip("cfnlint")
    from cfnlint.api import lint_all

    path = tmp_path / "template.yaml"
    path.write_text(yaml.safe_dump(sam))
    matches = lint_all(path.read_text())
    return [f"{m.rule.id} {m.message}" for m in matches if m.rule.id.startswith("E")]


def test_golden(shop: Manifest) -> None:
    check_golden(export_sam(shop), "sam")


def test_golden_fargate(shop: Manifest) -> None:
    check_golden(export_sam(shop, services="fargate"), "sam-fargate")


@pytest.mark.parametrize("services", ["report", "fargate"])
@pytest.mark.parametrize("which", ["shop", "full"])
def test_transforms_and_lints(
    which: str, services: Services, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    sam = template(request.getfixturevalue(which), services)
    cfn = transform(sam)
    kinds = {r["Type"] for r in cfn["Resources"].values()}
    assert "AWS::Lambda::Function" in kinds and "AWS::Lambda::EventSourceMapping" in kinds
    assert "AWS::Scheduler::Schedule" in kinds and "AWS::ApiGatewayV2::Api" in kinds
    if services == "fargate":
        assert "AWS::ECS::Service" in kinds
    assert lint(sam, tmp_path) == []


def test_lint_finds_errors(shop: Manifest, tmp_path: Path) -> None:
    sam = template(shop)
    sam["Resources"]["Thumbnail"]["Properties"]["MemorySize"] = "lots"
    assert lint(sam, tmp_path)


def test_shop_mapping(shop: Manifest) -> None:
    sam = template(shop)
    thumb = sam["Resources"]["Thumbnail"]["Properties"]
    assert thumb["Handler"] == "thumbnail.handler" and thumb["CodeUri"] == "functions/"
    assert thumb["MemorySize"] == 128 and thumb["Timeout"] == 10
    assert thumb["ReservedConcurrentExecutions"] == 20
    assert thumb["Events"]["Http0Post"]["Properties"] == {"Path": "/thumbnail", "Method": "POST"}
    notify = sam["Resources"]["Notify"]["Properties"]
    assert notify["Events"]["Schedule1"]["Properties"]["ScheduleExpression"] == "rate(5 minutes)"
    assert notify["EventInvokeConfig"] == {"MaximumRetryAttempts": 2}
    queue = sam["Resources"]["OrdersCreatedQueue"]["Properties"]
    assert queue["RedrivePolicy"]["maxReceiveCount"] == 3
    assert queue["MessageRetentionPeriod"] == 7 * 86400
    gaps = {g.path for g in export_sam(shop).gaps}
    assert {"services.catalog", "services.orders", "jobs.nightly-report"} <= gaps
