"""AWS's shapes, table-driven against AWS's documentation (pure: no processes).

Sources: "Working with AWS Lambda proxy integrations for HTTP APIs" (API Gateway developer
guide: the payload format 2.0 event and "Lambda function response for format 2.0"), "AWS
Lambda context object in Python", "Using Lambda with Amazon SQS", EventBridge "Scheduled
Event", and REPORT lines as Lambda writes them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any

import pytest

from shoal.functions import context, shapes
from shoal.functions.shapes import HttpResponse, QueueMessage

NOW = 1583348638.390  # the timeEpoch of AWS's example event, 2020-03-04T19:03:58.390Z


# ---------------------------------------------------------------- the 2.0 event


def aws_example_request() -> dict[str, Any]:
    """The request behind AWS's documented 2.0 example event (same path, query, cookies)."""
    return shapes.http_event(
        method="POST",
        raw_path="/my/path",
        raw_query="parameter1=value1&parameter1=value2&parameter2=value",
        headers=[
            ("Header1", "value1"),
            ("Header2", "value1"),
            ("Header2", "value2"),
            ("Cookie", "cookie1; cookie2"),
            ("Host", "id.execute-api.us-east-1.amazonaws.com"),
            ("User-Agent", "agent"),
            ("Content-Type", "text/plain"),
        ],
        body=b"Hello from Lambda",
        source_ip="IP",
        request_id="id",
        now=NOW,
    )


def test_http_event_has_the_documented_top_level_shape() -> None:
    event = aws_example_request()
    assert event["version"] == "2.0"
    assert event["routeKey"] == "$default"
    assert event["rawPath"] == "/my/path"
    assert event["rawQueryString"] == "parameter1=value1&parameter1=value2&parameter2=value"
    assert event["cookies"] == ["cookie1", "cookie2"]
    assert event["queryStringParameters"] == {"parameter1": "value1,value2", "parameter2": "value"}
    assert event["body"] == "Hello from Lambda"
    assert event["isBase64Encoded"] is False
    assert "pathParameters" not in event


def test_http_event_headers_are_lowercased_joined_and_cookies_moved_out() -> None:
    headers = aws_example_request()["headers"]
    assert headers["header1"] == "value1"
    assert headers["header2"] == "value1,value2"
    assert "cookie" not in headers
    assert all(name == name.lower() for name in headers)


def test_http_event_request_context_matches_the_documented_fields() -> None:
    ctx = aws_example_request()["requestContext"]
    assert ctx["http"] == {
        "method": "POST",
        "path": "/my/path",
        "protocol": "HTTP/1.1",
        "sourceIp": "IP",
        "userAgent": "agent",
    }
    assert ctx["domainName"] == "id.execute-api.us-east-1.amazonaws.com"
    assert ctx["domainPrefix"] == "id"
    assert ctx["requestId"] == "id"
    assert ctx["routeKey"] == "$default"
    assert ctx["stage"] == "$default"
    assert ctx["timeEpoch"] == 1583348638390
    assert ctx["time"] == time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(NOW))
    assert ctx["accountId"] == context.ACCOUNT


@pytest.mark.parametrize(
    ("content_type", "body", "encoded"),
    [
        ("application/json", b'{"a": 1}', False),
        ("text/html; charset=utf-8", "<p>é</p>".encode(), False),
        ("application/vnd.api+json", b"{}", False),
        ("application/xml", b"<a/>", False),
        ("image/png", b"\x89PNG\r\n", True),
        ("application/octet-stream", b"abc", True),
        ("application/x-www-form-urlencoded", b"a=1&b=2", True),  # HTTP APIs encode forms
        (None, b"abc", True),
        ("text/plain", b"\xff\xfe not utf-8", True),
    ],
)
def test_http_event_base64_encodes_what_is_not_text(
    content_type: str | None, body: bytes, encoded: bool
) -> None:
    headers = [("Content-Type", content_type)] if content_type else []
    event = shapes.http_event(
        method="post", raw_path="/", headers=headers, body=body, request_id="r", now=NOW
    )
    assert event["isBase64Encoded"] is encoded
    assert event["requestContext"]["http"]["method"] == "POST"
    sent = base64.b64decode(event["body"]) if encoded else event["body"].encode()
    assert sent == body


def test_http_event_without_body_or_query_omits_them() -> None:
    event = shapes.http_event(method="GET", raw_path="/x", request_id="r", now=NOW)
    assert "body" not in event
    assert "queryStringParameters" not in event
    assert "cookies" not in event
    assert event["rawQueryString"] == ""
    assert event["isBase64Encoded"] is False


def test_http_event_path_parameters_and_route_key() -> None:
    event = shapes.http_event(
        method="GET",
        raw_path="/thumbnail/7",
        request_id="r",
        now=NOW,
        route_key="GET /thumbnail/{id}",
        path_parameters={"id": "7"},
    )
    assert event["routeKey"] == event["requestContext"]["routeKey"] == "GET /thumbnail/{id}"
    assert event["pathParameters"] == {"id": "7"}


# ---------------------------------------------------------------- the 2.0 response

JSON = ("content-type", "application/json")

RESPONSES: list[tuple[str, Any, HttpResponse]] = [
    # the two examples of "Lambda function response for format 2.0"
    ("documented string", "Hello from Lambda!", HttpResponse(200, (JSON,), b"Hello from Lambda!")),
    (
        "documented dict",
        {"message": "Hello from Lambda!"},
        HttpResponse(200, (JSON,), b'{"message": "Hello from Lambda!"}'),
    ),
    # the customised format
    (
        "custom",
        {
            "cookies": ["cookie1", "cookie2"],
            "isBase64Encoded": False,
            "statusCode": 201,
            "headers": {"headerName": "headerValue"},
            "body": "Hello from Lambda!",
        },
        HttpResponse(
            201,
            (
                ("headerName", "headerValue"),
                ("set-cookie", "cookie1"),
                ("set-cookie", "cookie2"),
                JSON,
            ),
            b"Hello from Lambda!",
        ),
    ),
    (
        "base64 body",
        {
            "statusCode": 200,
            "headers": {"Content-Type": "image/png"},
            "isBase64Encoded": True,
            "body": base64.b64encode(b"\x89PNG").decode(),
        },
        HttpResponse(200, (("Content-Type", "image/png"),), b"\x89PNG"),
    ),
    ("status only", {"statusCode": 204}, HttpResponse(204, (JSON,), b"")),
    ("status as text", {"statusCode": "404", "body": "no"}, HttpResponse(404, (JSON,), b"no")),
    ("list", [1, 2], HttpResponse(200, (JSON,), b"[1, 2]")),
    ("number", 42, HttpResponse(200, (JSON,), b"42")),
    ("null", None, HttpResponse(200, (JSON,), b"null")),
    ("true", True, HttpResponse(200, (JSON,), b"true")),
    ("empty dict", {}, HttpResponse(200, (JSON,), b"{}")),
    # responses API Gateway cannot read: 500 {"message":"Internal Server Error"}
    ("bad status", {"statusCode": "teapot"}, HttpResponse(500, (JSON,), shapes.INTERNAL_ERROR)),
    ("status out of range", {"statusCode": 42}, HttpResponse(500, (JSON,), shapes.INTERNAL_ERROR)),
    (
        "headers not a map",
        {"statusCode": 200, "headers": ["x"]},
        HttpResponse(500, (JSON,), shapes.INTERNAL_ERROR),
    ),
    (
        "bad base64",
        {"statusCode": 200, "isBase64Encoded": True, "body": "***"},
        HttpResponse(500, (JSON,), shapes.INTERNAL_ERROR),
    ),
]


@pytest.mark.parametrize(
    ("output", "expected"), [(o, e) for _, o, e in RESPONSES], ids=[n for n, _, _ in RESPONSES]
)
def test_http_response_maps_like_api_gateway(output: Any, expected: HttpResponse) -> None:
    assert shapes.http_response(json.dumps(output).encode()) == expected


def test_http_response_keeps_the_functions_own_json_text() -> None:
    payload = b'{"b": 1, "a": [1,2]}'
    assert shapes.http_response(payload).body == payload


def test_http_response_of_a_payload_that_is_not_json_is_an_internal_error() -> None:
    assert shapes.http_response(b"{not json").status == 500


def test_gateway_error_is_a_message_object() -> None:
    response = shapes.gateway_error(429, "Too Many Requests")
    assert response.status == 429
    assert json.loads(response.body) == {"message": "Too Many Requests"}


# ---------------------------------------------------------------- errors, context


def test_error_shape_is_the_python_runtimes() -> None:
    def handler() -> None:
        raise KeyError("missing")

    try:
        handler()
    except KeyError as exc:
        shape = context.error_shape(exc, "req-1")
    assert shape["errorType"] == "KeyError"
    assert shape["errorMessage"] == "'missing'"
    assert shape["requestId"] == "req-1"
    assert isinstance(shape["stackTrace"], list)
    assert shape["stackTrace"][-1].startswith('  File "')
    assert "in handler\n" in shape["stackTrace"][-1]
    assert "^" not in "".join(shape["stackTrace"])


def test_error_shape_leaves_out_the_runtimes_frames() -> None:
    try:
        raise RuntimeError("x")
    except RuntimeError as exc:
        shape = context.error_shape(exc, skip_files=(__file__,))
    assert shape["stackTrace"] == []


def test_context_names_follow_lambdas() -> None:
    ctx = context.LambdaContext(
        "rid", function_name="thumbnail", memory_mb=128, log_stream="s", deadline=0.0
    )
    assert ctx.aws_request_id == "rid"
    assert ctx.function_version == "$LATEST"
    assert ctx.invoked_function_arn == "arn:aws:lambda:local:000000000000:function:thumbnail"
    assert ctx.log_group_name == "/aws/lambda/thumbnail"
    assert ctx.memory_limit_in_mb == 128
    assert ctx.get_remaining_time_in_millis() == 0
    assert ctx.identity is None and ctx.client_context is None


def test_context_remaining_time_counts_down() -> None:
    ctx = context.LambdaContext(
        "rid", function_name="f", memory_mb=128, log_stream="s", deadline=time.monotonic() + 3
    )
    assert 2900 < ctx.get_remaining_time_in_millis() <= 3000


def test_log_stream_name_is_dated_and_versioned() -> None:
    assert context.log_stream_name(NOW, "abc") == "2020/03/04/[$LATEST]abc"


def test_lambda_environment() -> None:
    env = context.lambda_environment(name="f", handler="h.handler", memory_mb=256, task_root="/t")
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "f"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["_HANDLER"] == "h.handler"
    assert env["LAMBDA_TASK_ROOT"] == "/t"


# ---------------------------------------------------------------- schedules and queues


def test_scheduled_event_is_eventbridges() -> None:
    event = shapes.scheduled_event(rule="notify-schedule-0", event_id="e1", now=NOW)
    assert event == {
        "version": "0",
        "id": "e1",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": "2020-03-04T19:03:58Z",
        "region": "local",
        "resources": ["arn:aws:events:local:000000000000:rule/notify-schedule-0"],
        "detail": {},
    }


def test_sqs_event_records_carry_the_documented_fields() -> None:
    message = QueueMessage(message_id="m1", body="test", sent_at=NOW, receive_count=2)
    (record,) = shapes.sqs_event([message], queue="orders.created")["Records"]
    assert set(record) == {
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "messageAttributes",
        "md5OfBody",
        "eventSource",
        "eventSourceARN",
        "awsRegion",
    }
    assert record["messageId"] == "m1"
    assert record["body"] == "test"
    assert record["md5OfBody"] == hashlib.md5(b"test", usedforsecurity=False).hexdigest()
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == "arn:aws:sqs:local:000000000000:orders.created"
    assert record["attributes"]["ApproximateReceiveCount"] == "2"
    assert record["attributes"]["SentTimestamp"] == "1583348638390"


@pytest.mark.parametrize(
    ("result", "failed"),
    [
        (None, set()),
        ({}, set()),
        ({"batchItemFailures": []}, set()),
        ({"batchItemFailures": [{"itemIdentifier": "b"}]}, {"b"}),
        ({"batchItemFailures": [{"itemIdentifier": "zz"}]}, {"a", "b"}),  # unknown id: all
        ({"batchItemFailures": [{"itemIdentifier": None}]}, {"a", "b"}),
        ({"batchItemFailures": "b"}, {"a", "b"}),
        ("fine", set()),
    ],
)
def test_failed_message_ids_reads_partial_batch_responses(result: Any, failed: set[str]) -> None:
    assert shapes.failed_message_ids(result, ["a", "b"]) == failed


# ---------------------------------------------------------------- REPORT


@pytest.mark.parametrize(
    ("duration", "init", "billed"),
    [(0.01, None, 1), (1.0, None, 1), (1.2, None, 2), (31414.74, 548.72, 31964), (2.5, 0.4, 3)],
)
def test_billed_duration_rounds_up_and_bills_init(
    duration: float, init: float | None, billed: int
) -> None:
    assert shapes.billed_ms(duration, init) == billed


def test_report_line_cold_and_warm() -> None:
    cold = shapes.report_line(
        request_id="r1", duration_ms=1.234, memory_mb=128, max_memory_bytes=30 << 20, init_ms=4.56
    )
    assert cold == (
        "REPORT RequestId: r1\tDuration: 1.23 ms\tBilled Duration: 6 ms\t"
        "Memory Size: 128 MB\tMax Memory Used: 30 MB\tInit Duration: 4.56 ms"
    )
    warm = shapes.report_line(
        request_id="r2", duration_ms=0.5, memory_mb=128, max_memory_bytes=None
    )
    assert warm.endswith("Max Memory Used: ? MB")
    assert "Init Duration" not in warm
