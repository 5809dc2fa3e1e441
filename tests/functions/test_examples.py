"""examples/shop's functions, unchanged, through a pool with the events AWS would send them."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from shoal.functions import shapes
from shoal.functions.shapes import QueueMessage
from tests.functions.conftest import SHOP, PoolFactory, ok_value

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(10)]


def post(body: bytes, content_type: str = "application/json", query: str = "") -> dict[str, object]:
    return shapes.http_event(
        method="POST",
        raw_path="/thumbnail",
        raw_query=query,
        headers=[("Content-Type", content_type), ("Host", "localhost:8000")],
        body=body,
        request_id="gw-1",
        now=0.0,
        route_key="POST /thumbnail",
    )


async def test_thumbnail_answers_http_events(make_pool: PoolFactory) -> None:
    pool = await make_pool(SHOP / "thumbnail.py", timeout=10.0, max_instances=20)
    first = await pool.invoke(post(b'{"width": 4000, "height": 3000, "max": 256}'))
    response = shapes.http_response(first.payload)
    assert response.status == 200
    assert ("content-type", "application/json") in response.headers
    answer = json.loads(response.body)
    assert answer["thumbnail"] == {"width": 256, "height": 192}
    assert answer["resize"]["filter"] == "lanczos3"
    assert answer["request_id"] == first.request_id
    assert answer["cold"] is True and first.cold  # its first invocation in this instance
    second = await pool.invoke(post(b'{"width": 100, "height": 50}'))
    assert json.loads(shapes.http_response(second.payload).body)["cold"] is False
    binary = await pool.invoke(post(b'{"width": 640, "height": 480}', "application/octet-stream"))
    assert json.loads(shapes.http_response(binary.payload).body)["thumbnail"]["width"] == 128


async def test_thumbnail_query_string_and_bad_input(make_pool: PoolFactory) -> None:
    pool = await make_pool(SHOP / "thumbnail.py")
    by_query = await pool.invoke(post(b"", query="width=50&height=100&max=10"))
    assert json.loads(shapes.http_response(by_query.payload).body)["thumbnail"] == {
        "width": 5,
        "height": 10,
    }
    bad = shapes.http_response((await pool.invoke(post(b'{"width": -1}'))).payload)
    assert bad.status == 400
    assert "width must be" in json.loads(bad.body)["error"]
    encoded = post(base64.b64encode(b"{not json"), "application/octet-stream")
    encoded["body"] = base64.b64encode(b"{not json").decode()
    assert shapes.http_response((await pool.invoke(encoded)).payload).status == 400


async def test_notify_takes_sqs_batches_and_schedules(
    make_pool: PoolFactory, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox.jsonl"
    pool = await make_pool(SHOP / "notify.py", env={"NOTIFY_OUTBOX": str(outbox)}, timeout=30.0)
    order = {"id": 7, "items": [{"sku": "mug", "qty": 2}], "total_cents": 1800}
    batch = shapes.sqs_event(
        [
            QueueMessage(message_id="m-1", body=json.dumps(order), sent_at=1.0),
            QueueMessage(message_id="m-2", body="not an order", sent_at=1.0),
        ],
        queue="orders.created",
    )
    result = await pool.invoke(batch)
    assert ok_value(result) == {"batchItemFailures": [{"itemIdentifier": "m-2"}]}
    assert shapes.failed_message_ids(result.value(), ["m-1", "m-2"]) == {"m-2"}
    (sent,) = [json.loads(line) for line in outbox.read_text().splitlines()]
    assert sent["order_id"] == 7 and sent["message_id"] == "m-1"
    tick = shapes.scheduled_event(rule="notify-rate", event_id="e-1", now=0.0)
    assert ok_value(await pool.invoke(tick)) == {"ok": True}
    unsupported = await pool.invoke({"hello": "world"})
    assert unsupported.status == "error"
    assert unsupported.value()["errorType"] == "ValueError"
