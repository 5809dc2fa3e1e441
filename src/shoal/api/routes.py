"""The control API: routes, authentication, errors, and the OpenAPI document built from them.

Every call needs ``Authorization: Bearer <token>`` (the token is in ``.shoal/token``, 0600).
The server binds 127.0.0.1 only. Errors are JSON (:class:`~shoal.api.models.ErrorBody`) with a
4xx status for a bad request, never a traceback.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pydantic
from aiohttp import web

from shoal import __version__
from shoal.api.control import ControlPlane
from shoal.api.models import (
    Accepted,
    ApplyResult,
    DeadLetter,
    ErrorBody,
    InstanceRow,
    InvokeResult,
    JobRow,
    JobRunRow,
    LogLine,
    Published,
    Redriven,
    RunStarted,
    ScaleRequest,
    ScaleResult,
    Status,
    TopicRow,
)
from shoal.errors import ManifestError, ShoalError, ShuttingDown, UnknownName, UsageError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CONTROL = web.AppKey("control", ControlPlane)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    summary: str
    handler: Handler
    request: type[pydantic.BaseModel] | None = None
    response: type[pydantic.BaseModel] | None = None
    list_response: bool = False
    status: int = 200
    params: tuple[tuple[str, str, str], ...] = ()  # (name, in, description)


def _json(model: pydantic.BaseModel | list[Any], status: int = 200) -> web.Response:
    if isinstance(model, list):
        body = json.dumps([m.model_dump(mode="json") for m in model])
    else:
        body = model.model_dump_json()
    return web.Response(text=body, status=status, content_type="application/json")


def _error(
    status: int, error: str, message: str, problems: list[str] | None = None
) -> web.Response:
    return _json(ErrorBody(error=error, message=message, problems=problems or []), status)


async def _body(request: web.Request, model: type[pydantic.BaseModel]) -> Any:
    try:
        raw = await request.read()
        return model.model_validate_json(raw or b"{}")
    except pydantic.ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise web.HTTPBadRequest(
            text=ErrorBody(
                error="invalid_request", message=f"{where}: {first['msg']}"
            ).model_dump_json(),
            content_type="application/json",
        ) from None


def _control(request: web.Request) -> ControlPlane:
    return request.app[CONTROL]


async def status(request: web.Request) -> web.StreamResponse:
    return _json(_control(request).status())


async def instances(request: web.Request) -> web.StreamResponse:
    return _json(_control(request).instances())


async def logs(request: web.Request) -> web.StreamResponse:
    control = _control(request)
    sources = request.query.getall("source", []) or None
    try:
        since = float(request.query["since"]) if "since" in request.query else None
        tail = int(request.query["tail"]) if "tail" in request.query else None
    except ValueError:
        return _error(400, "invalid_request", "since must be epoch seconds and tail a whole number")
    follow = request.query.get("follow", "false").lower() in ("1", "true", "yes")
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    for line in control.read_logs(sources, since, tail):
        await response.write(line.model_dump_json().encode() + b"\n")
    if follow:
        async for line in control.follow_logs(sources):
            await response.write(line.model_dump_json().encode() + b"\n")
    await response.write_eof()
    return response


async def scale(request: web.Request) -> web.StreamResponse:
    body: ScaleRequest = await _body(request, ScaleRequest)
    name = request.match_info["name"]
    note = _control(request).scale(name, body.replicas)
    return _json(ScaleResult(name=name, replicas=body.replicas, note=note))


async def invoke(request: web.Request) -> web.StreamResponse:
    raw = await request.read()
    try:
        event = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return _error(400, "invalid_request", "the body must be the event, as JSON")
    result = await _control(request).invoke(request.match_info["name"], event)
    return _json(result)


async def invoke_async(request: web.Request) -> web.StreamResponse:
    raw = await request.read()
    try:
        event = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return _error(400, "invalid_request", "the body must be the event, as JSON")
    message_id = await _control(request).invoke_async(request.match_info["name"], event)
    return _json(Published(ids=[message_id]), 202)


async def publish(request: web.Request) -> web.StreamResponse:
    ids = await _control(request).publish(request.match_info["name"], await request.read())
    return web.Response(
        text=f'{{"ids":{json.dumps(ids)}}}', status=202, content_type="application/json"
    )


async def publish_batch(request: web.Request) -> web.StreamResponse:
    ids = await _control(request).publish_batch(request.match_info["name"], await request.read())
    return web.Response(
        text=f'{{"ids":{json.dumps(ids)}}}', status=202, content_type="application/json"
    )


async def topics(request: web.Request) -> web.StreamResponse:
    return _json(await _control(request).topics())


async def dead_letters(request: web.Request) -> web.StreamResponse:
    return _json(await _control(request).dead_letters(request.match_info["name"]))


async def redrive(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    return _json(Redriven(topic=name, count=await _control(request).redrive(name)))


async def jobs(request: web.Request) -> web.StreamResponse:
    return _json(_control(request).jobs())


async def job_runs(request: web.Request) -> web.StreamResponse:
    try:
        limit = int(request.query.get("limit", "20"))
    except ValueError:
        return _error(400, "invalid_request", "limit must be a whole number")
    return _json(_control(request).job_runs(request.match_info["name"], limit))


async def run_job(request: web.Request) -> web.StreamResponse:
    result = _control(request).run_job(request.match_info["name"])
    return _json(result, 202 if result.run is not None else 409)


async def restart(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    _control(request).restart(name)
    return _json(Accepted(message=f"rolling restart of {name} started"), 202)


async def apply(request: web.Request) -> web.StreamResponse:
    return _json(ApplyResult(changes=_control(request).apply()))


async def shutdown(request: web.Request) -> web.StreamResponse:
    _control(request).request_shutdown()
    return _json(Accepted(message="stopping every instance, then the daemon"), 202)


async def metrics(request: web.Request) -> web.StreamResponse:
    return web.Response(
        text=_control(request).metrics(),
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


async def openapi(request: web.Request) -> web.StreamResponse:
    return web.json_response(openapi_document())


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/v1/status",
        "The app, the daemon and each service's readiness.",
        status,
        response=Status,
    ),
    Route(
        "GET",
        "/v1/instances",
        "Every instance (what `shoal ps` shows).",
        instances,
        response=InstanceRow,
        list_response=True,
    ),
    Route(
        "GET",
        "/v1/logs",
        "Log lines as newline-delimited JSON; follow=true streams.",
        logs,
        response=LogLine,
        list_response=True,
        params=(
            ("source", "query", "Instance (catalog#1) or name (catalog); repeatable."),
            ("since", "query", "Only lines after this time (epoch seconds)."),
            ("tail", "query", "Only the last N lines."),
            ("follow", "query", "Keep the stream open for new lines."),
        ),
    ),
    Route(
        "POST",
        "/v1/services/{name}/scale",
        "Set a service's replica count.",
        scale,
        request=ScaleRequest,
        response=ScaleResult,
    ),
    Route(
        "POST",
        "/v1/services/{name}/restart",
        "Rolling restart of one service.",
        restart,
        response=Accepted,
        status=202,
    ),
    Route(
        "POST",
        "/v1/apply",
        "Re-read the manifest and roll only what changed.",
        apply,
        response=ApplyResult,
    ),
    Route(
        "POST",
        "/v1/shutdown",
        "Stop every instance, then the daemon.",
        shutdown,
        response=Accepted,
        status=202,
    ),
    Route(
        "POST",
        "/v1/functions/{name}/invoke",
        "Invoke a function with the request body as its event.",
        invoke,
        response=InvokeResult,
    ),
    Route(
        "POST",
        "/v1/functions/{name}/invoke-async",
        "Queue an asynchronous invocation (Lambda's Event type: 2 retries, then a dead letter).",
        invoke_async,
        response=Published,
        status=202,
    ),
    Route(
        "POST",
        "/v1/topics/{name}/events",
        "Publish the body (JSON) on a topic; answered once the event is durable.",
        publish,
        response=Published,
        status=202,
    ),
    Route(
        "POST",
        "/v1/topics/{name}/batch",
        "Publish a JSON array of events (at most 1,000) in one transaction; answered once durable.",
        publish_batch,
        response=Published,
        status=202,
    ),
    Route(
        "GET",
        "/v1/topics",
        "Every topic: subscribers, depth, lag, dead letters.",
        topics,
        response=TopicRow,
        list_response=True,
    ),
    Route(
        "GET",
        "/v1/topics/{name}/dead-letters",
        "Messages of a topic that failed every retry, with their errors.",
        dead_letters,
        response=DeadLetter,
        list_response=True,
    ),
    Route(
        "POST",
        "/v1/topics/{name}/redrive",
        "Send a topic's dead letters back to it.",
        redrive,
        response=Redriven,
    ),
    Route(
        "GET",
        "/v1/jobs",
        "Every job: schedule, next run, last run.",
        jobs,
        response=JobRow,
        list_response=True,
    ),
    Route(
        "GET",
        "/v1/jobs/{name}/runs",
        "The kept history of a job's runs, newest first.",
        job_runs,
        response=JobRunRow,
        list_response=True,
        params=(("limit", "query", "How many runs (default 20)."),),
    ),
    Route(
        "POST",
        "/v1/jobs/{name}/run",
        "Start a run of a job now (409 when its policy forbids it).",
        run_job,
        response=RunStarted,
        status=202,
    ),
    Route("GET", "/metrics", "Prometheus metrics: gateway routes, instances.", metrics),
    Route("GET", "/v1/openapi.json", "This document.", openapi),
)


def openapi_document() -> dict[str, Any]:
    """OpenAPI 3.1 for the routes above, schemas from the pydantic models."""
    schemas: dict[str, Any] = {"ErrorBody": ErrorBody.model_json_schema()}
    paths: dict[str, Any] = {}
    for route in ROUTES:
        op: dict[str, Any] = {"summary": route.summary, "security": [{"bearer": []}]}
        params = [
            {
                "name": n,
                "in": where,
                "description": d,
                "required": False,
                "schema": {"type": "string"},
            }
            for n, where, d in route.params
        ]
        if "{name}" in route.path:
            params.append(
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
            )
        if params:
            op["parameters"] = params
        if route.request is not None:
            schemas[route.request.__name__] = route.request.model_json_schema()
            ref = {"$ref": f"#/components/schemas/{route.request.__name__}"}
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref}}}
        ok: dict[str, Any] = {"description": "OK"}
        if route.response is not None:
            schemas[route.response.__name__] = route.response.model_json_schema()
            ref = {"$ref": f"#/components/schemas/{route.response.__name__}"}
            schema = {"type": "array", "items": ref} if route.list_response else ref
            kind = "application/x-ndjson" if route.handler is logs else "application/json"
            ok["content"] = {kind: {"schema": schema}}
        err = {
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        }
        op["responses"] = {
            str(route.status): ok,
            "400": {"description": "Bad request", **err},
            "401": {"description": "Missing or wrong token", **err},
            "404": {"description": "No such service", **err},
        }
        if route.handler is apply:
            op["responses"]["422"] = {"description": "The manifest has problems", **err}
        paths.setdefault(route.path, {})[route.method.lower()] = op
    for schema in list(schemas.values()):
        for name, nested in schema.pop("$defs", {}).items():
            schemas.setdefault(name, nested)
    document = {
        "openapi": "3.1.0",
        "info": {"title": "shoal control API", "version": __version__},
        "servers": [{"url": "http://127.0.0.1"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
    fixed: dict[str, Any] = json.loads(
        json.dumps(document).replace("#/$defs/", "#/components/schemas/")
    )
    return fixed


def _auth_middleware(token: str) -> Any:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return _error(401, "unauthorized", "missing or wrong token (see .shoal/token)")
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.content_type == "application/json":
                raise
            return _error(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
        except ManifestError as exc:
            return _error(
                422,
                "invalid_manifest",
                str(exc).splitlines()[0],
                [p.render() for p in exc.problems],
            )
        except ShuttingDown as exc:
            return _error(409, "shutting_down", str(exc))
        except UnknownName as exc:
            return _error(404, "not_found", str(exc))
        except UsageError as exc:
            return _error(400, "invalid_request", str(exc))
        except ShoalError as exc:
            return _error(500, type(exc).__name__, str(exc))
        except Exception:  # a bug: answer 500 in JSON, keep serving, keep the traceback
            log.exception("%s %s failed", request.method, request.path)
            return _error(500, "internal_error", "internal error (a bug: see the daemon's log)")

    return middleware


def build_app(control: ControlPlane, token: str) -> web.Application:
    """The aiohttp application for ``control``, guarded by ``token``."""
    app = web.Application(middlewares=[_auth_middleware(token)], client_max_size=1 << 20)
    app[CONTROL] = control
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
    return app


__all__ = ["CONTROL", "ROUTES", "Route", "build_app", "openapi_document"]
