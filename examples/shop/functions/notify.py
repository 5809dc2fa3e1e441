"""notify: an AWS Lambda handler that confirms new orders, run by shoal as a function.

It is invoked two ways, with the event shapes AWS uses, so it would run unchanged on Lambda:

* by the ``orders.created`` topic, with an SQS-shaped batch ``{"Records": [{"messageId": ...,
  "body": "<order as JSON>", ...}]}``. Each order gets a confirmation "sent" by appending one JSON
  line to the outbox file ``$NOTIFY_OUTBOX`` (default ``outbox.jsonl`` in the working directory).
  Records that cannot be handled are returned as ``{"batchItemFailures": [{"itemIdentifier":
  messageId}]}`` so only they are retried (and, after the retries, dead-lettered);
* by the ``rate(5 minutes)`` schedule, with an EventBridge "Scheduled Event": it logs a heartbeat
  and returns ``{"ok": true}``.
"""

import json
import os
from datetime import UTC, datetime
from typing import Any


class InvalidOrderError(ValueError):
    """A record body that is not an order."""


def parse_order(body: Any) -> dict[str, Any]:
    """The order in an SQS record body: a JSON object with an id, items and a total."""
    try:
        order = json.loads(body)
    except (TypeError, json.JSONDecodeError) as exc:
        raise InvalidOrderError(f"body is not JSON: {exc}") from exc
    if not isinstance(order, dict):
        raise InvalidOrderError("body is not a JSON object")
    if "id" not in order or not isinstance(order.get("items"), list):
        raise InvalidOrderError("body has no order id or items")
    if not isinstance(order.get("total_cents"), int):
        raise InvalidOrderError("body has no total_cents")
    return order


def confirmation(order: dict[str, Any], message_id: str) -> dict[str, Any]:
    """The notification for one order, as it is written to the outbox."""
    count = sum(item.get("qty", 0) for item in order["items"] if isinstance(item, dict))
    total = order["total_cents"] / 100
    return {
        "message_id": message_id,
        "order_id": order["id"],
        "to": order.get("customer") or "customer@example.com",
        "text": f"Order #{order['id']} confirmed: {count} item(s), {total:.2f} EUR.",
        "sent_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def handle_records(records: list[dict[str, Any]]) -> dict[str, Any]:
    outbox = os.environ.get("NOTIFY_OUTBOX", "outbox.jsonl")
    failures = []
    with open(outbox, "a", encoding="utf-8") as out:
        for record in records:
            message_id = record.get("messageId", "")
            try:
                note = confirmation(parse_order(record.get("body")), message_id)
                out.write(json.dumps(note) + "\n")
                out.flush()
            except (InvalidOrderError, OSError) as exc:
                print(f"notify: message {message_id} failed: {exc}")
                failures.append({"itemIdentifier": message_id})
            else:
                print(f"notify: sent confirmation of order {note['order_id']} to {note['to']}")
    return {"batchItemFailures": failures}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if isinstance(event.get("Records"), list):
        return handle_records(event["Records"])
    if event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event":
        rule = ", ".join(event.get("resources") or []) or "schedule"
        print(f"notify: heartbeat at {event.get('time')} from {rule}")
        return {"ok": True}
    raise ValueError("unsupported event: expected SQS records or an EventBridge Scheduled Event")
