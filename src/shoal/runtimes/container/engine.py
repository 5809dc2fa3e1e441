"""The boundary to the Docker Engine: connecting, and turning its failures into shoal's errors.

Everything in :mod:`shoal.runtimes.container` talks to the engine through a client made by
:func:`connect` and wraps each call in :func:`engine_call`, so a caller only ever sees
:class:`~shoal.errors.EngineUnavailable` (no engine at that address),
:class:`~shoal.errors.EngineError` (the engine said no, with its HTTP status and words) or
:class:`~shoal.errors.ImageError`, never a ``docker`` or ``requests`` exception.

The SDK is blocking: the runtime calls it from threads (``asyncio.to_thread``); the image
functions are plain blocking functions meant for a CLI or a thread.

Labels tie every container and image shoal makes to what made it (:data:`LABEL_APP`...), so
adoption and clean-up find them by label, never by name.
"""

from __future__ import annotations

import contextlib
import os
import socket
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

import docker
import docker.errors
import requests.exceptions

from shoal.errors import EngineError, EngineUnavailable

DEFAULT_URL = "unix:///var/run/docker.sock"
"""Where the engine is looked for when ``DOCKER_HOST`` is not set."""
CONNECT_TIMEOUT = 60.0
"""Seconds an engine call may take before it fails (stop and build add their own time)."""
POOL_SIZE = 64
"""HTTP connections kept per client: every running container holds one for its log stream."""

LABEL_APP = "io.shoal.app"
LABEL_SERVICE = "io.shoal.service"
LABEL_INSTANCE = "io.shoal.instance"
LABEL_REVISION = "io.shoal.revision"
LABEL_STATE = "io.shoal.state"  # the project's .shoal folder: two checkouts never mix
LABEL_KIND = "io.shoal.kind"
LABEL_CONTENT = "io.shoal.content"  # on images: the content hash their tag was derived from

Client = Any
"""A ``docker.DockerClient`` (the SDK ships no type information)."""


def engine_url(environ: Mapping[str, str] | None = None) -> str:
    """The engine's address: ``DOCKER_HOST`` if set, else the standard socket."""
    env = os.environ if environ is None else environ
    return env.get("DOCKER_HOST") or DEFAULT_URL


def connect(url: str | None = None, *, timeout: float = CONNECT_TIMEOUT) -> Client:
    """A client for the engine at ``url`` (default :func:`engine_url`) that has answered a ping.

    Raises :class:`EngineUnavailable` when nothing (or not an engine) answers there.
    """
    url = url or engine_url()
    _knock(url, timeout)
    try:
        client = docker.DockerClient(base_url=url, timeout=int(timeout), max_pool_size=POOL_SIZE)
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise EngineUnavailable(url, _first_line(exc)) from exc
    try:
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        client.close()
        raise EngineUnavailable(url, _first_line(exc)) from exc
    return client


def _knock(url: str, timeout: float) -> None:
    """Open and close a plain connection to ``url`` first: the SDK, failing to connect while it
    asks the engine's API version, leaves its socket open; this says why, and closes its own."""
    parsed = urllib.parse.urlsplit(url)
    try:
        if parsed.scheme in ("unix", "http+unix"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(parsed.path)
        elif parsed.scheme in ("tcp", "http", "https") and parsed.hostname:
            port = parsed.port or (2376 if parsed.scheme == "https" else 2375)
            socket.create_connection((parsed.hostname, port), timeout=timeout).close()
    except OSError as exc:
        raise EngineUnavailable(url, exc.strerror or str(exc)) from exc


def reachable(url: str | None = None) -> str | None:
    """None when an engine answers at ``url``; else why not (for skips and ``images ls``)."""
    try:
        client = connect(url, timeout=5)
    except EngineUnavailable as exc:
        return str(exc)
    client.close()
    return None


@contextlib.contextmanager
def engine_call(operation: str, url: str = "") -> Iterator[None]:
    """Run one engine call, wrapping its failures (``operation`` says what was attempted)."""
    try:
        yield
    except docker.errors.APIError as exc:
        raise EngineError(operation, _explain(exc), status=exc.status_code) from exc
    except requests.exceptions.ConnectionError as exc:
        raise EngineUnavailable(url or engine_url(), _first_line(exc)) from exc
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise EngineError(operation, _first_line(exc)) from exc


def is_not_found(exc: BaseException) -> bool:
    """True for the engine's 404 (no such container or image), however it was wrapped."""
    if isinstance(exc, EngineError):
        return exc.status == 404
    return isinstance(exc, docker.errors.NotFound)


def _explain(exc: docker.errors.APIError) -> str:
    explanation = exc.explanation
    if isinstance(explanation, bytes):
        explanation = explanation.decode(errors="replace")
    return str(explanation or exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


__all__ = [
    "DEFAULT_URL",
    "LABEL_APP",
    "LABEL_CONTENT",
    "LABEL_INSTANCE",
    "LABEL_KIND",
    "LABEL_REVISION",
    "LABEL_SERVICE",
    "LABEL_STATE",
    "Client",
    "connect",
    "engine_call",
    "engine_url",
    "is_not_found",
    "reachable",
]
