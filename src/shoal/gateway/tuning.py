"""How the gateway behaves beyond what the manifest says (STYLE.md habit 5: settings, not manifest).

The manifest's ``gateway:`` block (:class:`shoal.manifest.Gateway`) gives the port, the upstream
timeout and the size limits; :class:`Tuning` holds the rest, each field with its unit and default.
The daemon builds one from its settings; tests shrink the times.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Tuning:
    """Gateway knobs that are shoal's business, not the application's."""

    keepalive_timeout: float = 60.0
    """Seconds an idle client connection is kept open (also the limit for a stalled request)."""
    upstream_idle_timeout: float = 30.0
    """Seconds a pooled upstream connection may sit idle before it is closed."""
    max_idle_per_endpoint: int = 128
    """Idle keep-alive connections kept per upstream endpoint; more are closed on release."""
    hold_queue: int = 256
    """Requests held per service while it has no ready endpoint and ``on_demand`` is set."""
    hold_timeout: float = 10.0
    """Seconds a held request waits for an endpoint before it is answered 503."""
    retry_after: int = 1
    """``Retry-After`` seconds sent with a 503."""
    eject_for: float = 10.0
    """Seconds an endpoint that refused a connection stays out of rotation (unless refreshed)."""
    stop_grace: float = 10.0
    """Seconds :meth:`Gateway.stop` lets in-flight requests finish before closing them."""
    buffer_limit: int = 256 << 10
    """Bytes buffered towards one side before reading from the other side pauses."""
    backlog: int = 1024
    """Listen backlog of the gateway's socket."""


__all__ = ["Tuning"]
