"""``shoal.events.publish(topic, data)``: publish from inside a function or a service.

The smallest client of the daemon's events endpoint (stdlib only, imported in microseconds): it
finds the daemon through the variables shoal sets for functions (``SHOAL_EVENTS_URL``,
``SHOAL_TOKEN``), or else through ``SHOAL_STATE`` (services get it), whose ``events-url`` and
``token`` files the daemon writes. A publish returns once the event is durable (the endpoint
answers 202 only then).

    from shoal.events import publish
    publish("orders.created", {"id": 42})
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from shoal.errors import ApiError, DaemonNotRunning

TIMEOUT_S = 10.0


def _endpoint() -> tuple[str, str]:
    """The events endpoint (``shoal.api.ingest``; the control API of an older daemon) and
    the token."""
    url = os.environ.get("SHOAL_EVENTS_URL") or os.environ.get("SHOAL_API_URL")
    token = os.environ.get("SHOAL_TOKEN")
    if url and token:
        return url, token
    state = os.environ.get("SHOAL_STATE")
    if state:
        folder = Path(state)
        try:
            token = (folder / "token").read_text().strip()
            for name in ("events-url", "api-url"):
                with contextlib.suppress(FileNotFoundError):
                    return (folder / name).read_text().strip(), token
            raise FileNotFoundError(f"{folder / 'api-url'}: no such file")
        except OSError as exc:
            raise DaemonNotRunning(f"no shoal daemon answers for {state}: {exc}") from exc
    raise DaemonNotRunning(
        "shoal.events.publish needs SHOAL_EVENTS_URL or SHOAL_API_URL, and SHOAL_TOKEN (or "
        "SHOAL_STATE): "
        "it works inside functions and services that shoal runs"
    )


def _post(topic: str, suffix: str, body: Any) -> list[int]:
    # On first use only: http.client pulls in the email package (~tens of ms), and importing
    # shoal.events must cost a function's init nothing.
    import http.client  # noqa: PLC0415
    import urllib.parse  # noqa: PLC0415

    url, token = _endpoint()
    parsed = urllib.parse.urlsplit(url)
    if parsed.hostname != "127.0.0.1":
        raise DaemonNotRunning(f"refusing to publish to {url}: the API is on 127.0.0.1 only")
    path = f"/v1/topics/{urllib.parse.quote(topic, safe='')}/{suffix}"
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port or 80, timeout=TIMEOUT_S)
    try:
        conn.request(
            "POST",
            path,
            body=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        raw = response.read()
    except OSError as exc:
        raise DaemonNotRunning(f"cannot reach the shoal daemon at {url}: {exc}") from exc
    finally:
        conn.close()
    if response.status != 202:
        try:
            message = json.loads(raw).get("message", "")
        except (ValueError, AttributeError):
            message = raw.decode(errors="replace")
        raise ApiError(response.status, f"publishing to {topic!r}: {message}")
    ids: list[int] = json.loads(raw)["ids"]
    return ids


def publish(topic: str, data: Any) -> int:
    """Publish ``data`` (anything JSON can carry) on ``topic``; the message id once durable."""
    return _post(topic, "events", data)[0]


def publish_batch(topic: str, events: list[Any]) -> list[int]:
    """Publish several events in one request and one transaction (at most 1,000); their ids."""
    return _post(topic, "batch", list(events))


__all__ = ["publish", "publish_batch"]
