"""Function routes: 503 until a runtime plugs in; the hook's contract once one does."""

from __future__ import annotations

import asyncio

import pytest

from shoal.gateway import FunctionRequest, FunctionResponse
from tests.gateway.conftest import RigFactory
from tests.gateway.wire import Client, get

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(5)]

FUNCTIONS = {
    "thumb": {
        "handler": "f.py:handler",
        "triggers": [{"http": {"path": "/thumb", "methods": ["POST", "GET"]}}],
    },
    "lister": {"handler": "f.py:handler", "triggers": [{"http": {"path": "/items"}}]},
}


async def test_function_routes_answer_503_until_functions_exist(make_rig: RigFactory) -> None:
    rig = await make_rig(functions=FUNCTIONS)
    r = await get(rig.port, "/thumb/x")
    assert r.status == 503
    assert r.json() == {"message": "functions are not available yet"}
    client = await Client.open(rig.port)
    r = await client.request("POST", "/items", body=b"{}")
    assert r.status == 503
    assert r.header("connection") is None  # an answer like any other: the connection stays
    assert (await client.request("GET", "/items")).status == 503
    await client.close()


async def test_methods_of_a_trigger_are_enforced(make_rig: RigFactory) -> None:
    rig = await make_rig(functions=FUNCTIONS)
    client = await Client.open(rig.port)
    r = await client.request("DELETE", "/thumb")
    assert r.status == 405
    assert r.header("allow") == "GET, POST"
    await client.close()


async def test_a_synchronous_hook_gets_the_whole_request(make_rig: RigFactory) -> None:
    calls: list[FunctionRequest] = []

    def hook(request: FunctionRequest) -> FunctionResponse:
        calls.append(request)
        body = b"made " + request.body
        return FunctionResponse(201, [("X-Fn", request.function), ("Connection", "x")], body)

    rig = await make_rig(functions=FUNCTIONS, function_hook=hook)
    client = await Client.open(rig.port)
    r = await client.request(
        "POST",
        "/thumb/a%7Eb?size=2",
        headers={"X-Request-Id": "rid-1", "Connection": "keep-alive"},
        body=b"picture",
    )
    assert r.status == 201
    assert r.body == b"made picture"
    assert r.header("x-fn") == "thumb"
    assert r.header("content-length") == "12"
    assert r.header("connection") is None  # the function does not choose the framing
    (call,) = calls
    assert (call.method, call.path, call.query) == ("POST", "/thumb/a~b", "size=2")
    assert call.request_id == "rid-1"
    assert call.client_ip == "127.0.0.1"
    assert ("Host", "test.local") in call.headers
    assert not any(name.lower() == "connection" for name, _ in call.headers)
    r = await client.request("HEAD", "/thumb")
    assert r.status == 405  # HEAD is not among the trigger's methods
    await client.close()


async def test_an_async_hook_and_its_failures(make_rig: RigFactory) -> None:
    async def hook(request: FunctionRequest) -> FunctionResponse:
        await asyncio.sleep(0.01)
        if request.path == "/items/boom":
            raise RuntimeError("boom")
        if request.path == "/items/bad":
            return FunctionResponse(200, [("Bad\nName", "x")], b"")
        return FunctionResponse(200, [("Content-Type", "text/plain")], request.path.encode())

    rig = await make_rig(functions=FUNCTIONS, function_hook=hook)
    assert (await get(rig.port, "/items/ok")).body == b"/items/ok"
    assert (await get(rig.port, "/items/boom")).status == 502
    assert (await get(rig.port, "/items/bad")).status == 502


async def test_a_slow_function_is_504_and_its_task_cancelled(make_rig: RigFactory) -> None:
    cancelled = asyncio.Event()

    async def hook(request: FunctionRequest) -> FunctionResponse:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return FunctionResponse()

    rig = await make_rig(functions=FUNCTIONS, function_hook=hook, gateway={"timeout": "200ms"})
    r = await get(rig.port, "/items")
    assert r.status == 504
    await asyncio.wait_for(cancelled.wait(), 1.0)


async def test_function_bodies_respect_max_body(make_rig: RigFactory) -> None:
    rig = await make_rig(
        functions=FUNCTIONS,
        function_hook=lambda request: FunctionResponse(200, [], b"%d" % len(request.body)),
        gateway={"max_body": "1K"},
    )
    client = await Client.open(rig.port)
    r = await client.request("POST", "/thumb", body=b"x" * 1000)
    assert r.body == b"1000"
    r = await client.request(
        "POST", "/thumb", headers={"Transfer-Encoding": "chunked"}, body=b"800\r\n" + b"y" * 2048
    )
    assert r.status == 413
    await client.close()
