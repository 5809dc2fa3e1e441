"""A small synchronous client of the control API, for the CLI and scripts (stdlib only).

It finds the daemon through ``.shoal/api-url`` and ``.shoal/token`` (:mod:`shoal.api.endpoint`)
and turns error answers into :class:`~shoal.errors.ApiError`, a dead daemon into
:class:`~shoal.errors.DaemonNotRunning`.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shoal.api.endpoint import Endpoint, discover
from shoal.api.models import (
    ApplyResult,
    DeadLetter,
    InstanceRow,
    InvokeResult,
    JobRow,
    JobRunRow,
    LogLine,
    Published,
    Redriven,
    RunStarted,
    ScaleResult,
    Status,
    TopicRow,
)
from shoal.errors import ApiError, DaemonNotRunning


class Client:
    """Calls on one daemon's control API."""

    def __init__(self, endpoint: Endpoint, timeout: float | None = 30.0) -> None:
        self.endpoint = endpoint
        parsed = urllib.parse.urlsplit(endpoint.url)
        if parsed.hostname != "127.0.0.1":
            raise DaemonNotRunning(f"refusing to call {endpoint.url}: the API is on 127.0.0.1 only")
        self._host = parsed.hostname
        self._port = parsed.port or 80
        self._timeout = timeout

    @classmethod
    def for_state(cls, state: Path, timeout: float | None = 30.0) -> Client:
        return cls(discover(state), timeout)

    def _open(
        self, method: str, path: str, body: Any = None
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send a request; the caller closes the connection (every call uses a fresh one)."""
        conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        headers = {
            "Authorization": f"Bearer {self.endpoint.token}",
            "Accept": "application/json",
            "Connection": "close",
        }
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
        except (ConnectionRefusedError, ConnectionResetError) as exc:
            conn.close()
            raise DaemonNotRunning(
                f"the shoal daemon at {self.endpoint.url} does not answer ({exc.strerror}); "
                "it may have stopped: run `shoal up`"
            ) from exc
        except OSError as exc:
            conn.close()
            raise DaemonNotRunning(f"cannot reach {self.endpoint.url}: {exc}") from exc
        if response.status >= 400:
            raw = response.read()
            conn.close()
            try:
                data = json.loads(raw)
                message = data.get("message", raw.decode(errors="replace"))
                problems = data.get("problems") or []
            except (ValueError, AttributeError):
                message, problems = raw.decode(errors="replace"), []
            full = "\n".join([message, *problems]) if problems else message
            raise ApiError(response.status, full)
        return conn, response

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        conn, response = self._open(method, path, body)
        try:
            return json.loads(response.read())
        finally:
            response.close()
            conn.close()

    def status(self) -> Status:
        return Status.model_validate(self._call("GET", "/v1/status"))

    def instances(self) -> list[InstanceRow]:
        return [InstanceRow.model_validate(r) for r in self._call("GET", "/v1/instances")]

    def scale(self, name: str, replicas: int) -> ScaleResult:
        path = f"/v1/services/{urllib.parse.quote(name)}/scale"
        return ScaleResult.model_validate(self._call("POST", path, {"replicas": replicas}))

    def invoke(self, name: str, event: Any) -> InvokeResult:
        path = f"/v1/functions/{urllib.parse.quote(name)}/invoke"
        return InvokeResult.model_validate(self._call("POST", path, event))

    def invoke_async(self, name: str, event: Any) -> Published:
        path = f"/v1/functions/{urllib.parse.quote(name)}/invoke-async"
        return Published.model_validate(self._call("POST", path, event))

    def publish(self, topic: str, event: Any) -> Published:
        path = f"/v1/topics/{urllib.parse.quote(topic, safe='')}/events"
        return Published.model_validate(self._call("POST", path, event))

    def publish_batch(self, topic: str, events: list[Any]) -> Published:
        path = f"/v1/topics/{urllib.parse.quote(topic, safe='')}/batch"
        return Published.model_validate(self._call("POST", path, events))

    def topics(self) -> list[TopicRow]:
        return [TopicRow.model_validate(r) for r in self._call("GET", "/v1/topics")]

    def dead_letters(self, topic: str) -> list[DeadLetter]:
        path = f"/v1/topics/{urllib.parse.quote(topic, safe='')}/dead-letters"
        return [DeadLetter.model_validate(r) for r in self._call("GET", path)]

    def redrive(self, topic: str) -> Redriven:
        path = f"/v1/topics/{urllib.parse.quote(topic, safe='')}/redrive"
        return Redriven.model_validate(self._call("POST", path))

    def jobs(self) -> list[JobRow]:
        return [JobRow.model_validate(r) for r in self._call("GET", "/v1/jobs")]

    def job_runs(self, name: str, limit: int = 20) -> list[JobRunRow]:
        path = f"/v1/jobs/{urllib.parse.quote(name)}/runs?limit={limit}"
        return [JobRunRow.model_validate(r) for r in self._call("GET", path)]

    def run_job(self, name: str) -> RunStarted:
        return RunStarted.model_validate(
            self._call("POST", f"/v1/jobs/{urllib.parse.quote(name)}/run")
        )

    def restart(self, name: str) -> None:
        self._call("POST", f"/v1/services/{urllib.parse.quote(name)}/restart")

    def apply(self) -> ApplyResult:
        return ApplyResult.model_validate(self._call("POST", "/v1/apply"))

    def shutdown(self) -> None:
        self._call("POST", "/v1/shutdown")

    def logs(
        self,
        sources: list[str] | None = None,
        since: float | None = None,
        tail: int | None = None,
        follow: bool = False,
    ) -> Iterator[LogLine]:
        query: list[tuple[str, str]] = [("source", s) for s in sources or []]
        if since is not None:
            query.append(("since", repr(since)))
        if tail is not None:
            query.append(("tail", str(tail)))
        if follow:
            query.append(("follow", "true"))
        path = "/v1/logs" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        conn, response = self._open("GET", path)
        try:
            for raw in response:
                if raw.strip():
                    yield LogLine.model_validate_json(raw)
        finally:
            response.close()
            conn.close()


__all__ = ["Client"]
