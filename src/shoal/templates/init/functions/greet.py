"""greet: the starter function, an AWS Lambda handler run by shoal in a warm pool.

``GET /greet?name=Ada`` through the gateway arrives as an API Gateway HTTP API event (payload
format 2.0); the name comes from ``queryStringParameters`` and defaults to "world". The same file
runs unchanged on AWS Lambda.
"""

import json
from typing import Any

MAX_NAME = 100  # characters


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    params = event.get("queryStringParameters") or {}
    name = str(params.get("name") or "world").strip()[:MAX_NAME] or "world"
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"message": f"Hello, {name}!", "request_id": context.aws_request_id}),
    }
