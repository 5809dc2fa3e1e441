"""The control API over a real socket: authentication, errors, the OpenAPI document.

The daemon's real ControlPlane is exercised end to end in tests/daemon; here a small in-memory
one lets each error path be reached on purpose.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from shoal.api.models import (
    DeadLetter,
    InstanceRow,
    InvokeResult,
    JobRow,
    JobRunRow,
    LogLine,
    RunStarted,
    Status,
    TopicRow,
)
from shoal.api.routes import ROUTES, build_app, openapi_document
from shoal.errors import ManifestError, Problem, ShuttingDown, UnknownName, UsageError

TOKEN = "t0ken"


class Plane:
    def __init__(self) -> None:
        self.scaled: dict[str, int] = {}
        self.closing = False

    def status(self) -> Status:
        return Status(app="a", manifest="m", version="v", pid=1, started_at=0.0, services=[])

    def instances(self) -> list[InstanceRow]:
        return []

    def read_logs(
        self, sources: list[str] | None, since: float | None, tail: int | None
    ) -> list[LogLine]:
        return [LogLine(source="web#0", time=1.0, text=f"{sources} {since} {tail}")]

    async def follow_logs(self, sources: list[str] | None) -> AsyncIterator[LogLine]:
        yield LogLine(source="web#0", time=2.0, text="live")

    def scale(self, name: str, replicas: int) -> str | None:
        if self.closing:
            raise ShuttingDown("stopping")
        if name != "web":
            raise UnknownName(f"no service named {name!r}")
        self.scaled[name] = replicas
        return "autoscaling paused" if replicas == 0 else None

    def restart(self, name: str) -> None:
        raise RuntimeError("a bug")

    async def invoke(self, name: str, event: Any) -> InvokeResult:
        if name != "fn":
            raise UnknownName(f"no function named {name!r}")
        return InvokeResult(
            function=name, request_id="r1", ok=True, status="ok", payload=event, report="REPORT"
        )

    def apply(self) -> dict[str, str]:
        raise ManifestError([Problem("shoal.yaml", 3, 1, "name", "bad")])

    def request_shutdown(self) -> None:
        self.closing = True

    def metrics(self) -> str:
        return "shoal_up 1\n"

    async def invoke_async(self, name: str, event: Any) -> int:
        return 7

    async def publish(self, topic: str, payload: bytes) -> list[int]:
        if topic != "orders":
            raise UnknownName(f"no topic named {topic!r}")
        if not payload.startswith(b"{"):
            raise UsageError("the event is not JSON")
        return [1]

    async def publish_batch(self, topic: str, payload: bytes) -> list[int]:
        return [1, 2]

    async def topics(self) -> list[TopicRow]:
        return []

    async def dead_letters(self, topic: str) -> list[DeadLetter]:
        return []

    async def redrive(self, topic: str) -> int:
        return 0

    def jobs(self) -> list[JobRow]:
        return []

    def job_runs(self, name: str, limit: int) -> list[JobRunRow]:
        return []

    def run_job(self, name: str) -> RunStarted:
        if name == "busy":
            return RunStarted(job=name, run=None, message="skipped: run #1 still running")
        return RunStarted(job=name, run=3, message="started")


@pytest_asyncio.fixture
async def server() -> AsyncIterator[tuple[str, Plane]]:
    plane = Plane()
    runner = web.AppRunner(build_app(plane, TOKEN))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", plane
    finally:
        await runner.cleanup()


AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.asyncio
async def test_every_route_needs_the_token(server: tuple[str, Plane]) -> None:
    url, _ = server
    async with aiohttp.ClientSession() as http:
        for route in ROUTES:
            path = route.path.replace("{name}", "web")
            async with http.request(route.method, url + path) as r:
                assert r.status == 401, route.path
                assert (await r.json())["error"] == "unauthorized"
            async with http.request(
                route.method, url + path, headers={"Authorization": "Bearer x"}
            ) as r:
                assert r.status == 401


@pytest.mark.asyncio
async def test_errors_are_json_with_the_right_status(server: tuple[str, Plane]) -> None:
    url, plane = server
    async with aiohttp.ClientSession(headers=AUTH) as http:
        async with http.post(f"{url}/v1/services/web/scale", json={"replicas": 3}) as r:
            assert r.status == 200 and plane.scaled == {"web": 3}
            assert (await r.json())["note"] is None
        async with http.post(f"{url}/v1/services/web/scale", json={"replicas": 0}) as r:
            assert (await r.json()) == {"name": "web", "replicas": 0, "note": "autoscaling paused"}
        async with http.post(f"{url}/v1/services/nope/scale", json={"replicas": 3}) as r:
            assert r.status == 404 and (await r.json())["error"] == "not_found"
        for body in (b"{", b'{"replicas": "x"}', b'{"replicas": 2, "extra": 1}', b"[]"):
            async with http.post(f"{url}/v1/services/web/scale", data=body) as r:
                assert r.status == 400, body
        async with http.post(f"{url}/v1/apply") as r:
            data = await r.json()
            assert r.status == 422 and data["problems"] == ["shoal.yaml:3:1: name: bad"]
        async with http.post(f"{url}/v1/services/web/restart") as r:
            assert r.status == 500 and (await r.json())["error"] == "internal_error"
        async with http.post(f"{url}/v1/functions/fn/invoke", json={"a": 1}) as r:
            assert r.status == 200 and (await r.json())["payload"] == {"a": 1}
        async with http.post(f"{url}/v1/functions/fn/invoke", data=b"{nope") as r:
            assert r.status == 400
        async with http.post(f"{url}/v1/functions/other/invoke", json={}) as r:
            assert r.status == 404
        async with http.get(f"{url}/v1/logs?since=abc") as r:
            assert r.status == 400
        async with http.get(f"{url}/v1/nothing") as r:
            assert r.status == 404
        async with http.post(f"{url}/v1/shutdown") as r:
            assert r.status == 202
        async with http.post(f"{url}/v1/services/web/scale", json={"replicas": 1}) as r:
            assert r.status == 409


@pytest.mark.asyncio
async def test_logs_stream_as_ndjson(server: tuple[str, Plane]) -> None:
    url, _ = server
    async with (
        aiohttp.ClientSession(headers=AUTH) as http,
        http.get(f"{url}/v1/logs?source=web&tail=5&follow=true") as r,
    ):
        lines = [json.loads(line) for line in (await r.text()).splitlines()]
    assert [line["text"] for line in lines] == ["['web'] None 5", "live"]


def test_openapi_document_describes_every_route() -> None:
    doc = openapi_document()
    assert doc["openapi"] == "3.1.0"
    for route in ROUTES:
        assert route.method.lower() in doc["paths"][route.path]
    text = json.dumps(doc)
    assert "#/$defs/" not in text
    for ref in {part.split('"')[0] for part in text.split('"$ref": "')[1:]}:
        assert ref.rsplit("/", 1)[-1] in doc["components"]["schemas"], ref


@pytest.mark.asyncio
async def test_publish_answers_202_and_maps_errors(server: tuple[str, Plane]) -> None:
    url, _ = server
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.post(f"{url}/v1/topics/orders/events", data=b'{"a": 1}') as r:
            assert r.status == 202 and await r.json() == {"ids": [1]}
        async with session.post(f"{url}/v1/topics/orders/events", data=b"nope") as r:
            assert r.status == 400
        async with session.post(f"{url}/v1/topics/nope/events", data=b"{}") as r:
            assert r.status == 404
        async with session.post(f"{url}/v1/functions/fn/invoke-async", data=b"{}") as r:
            assert r.status == 202 and await r.json() == {"ids": [7]}
        async with session.post(f"{url}/v1/jobs/busy/run") as r:
            assert r.status == 409 and "still running" in (await r.json())["message"]
        async with session.post(f"{url}/v1/jobs/report/run") as r:
            assert r.status == 202 and (await r.json())["run"] == 3
