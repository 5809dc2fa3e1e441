"""The gateway: the HTTP data plane in front of every service and function (DESIGN.md §3).

    client ─▶ proxy (ClientConnection: parse, limits) ─▶ routing (RouteTable.match: pure)
           ─▶ exchange ─▶ balancing (Backend.pick: least outstanding) ─▶ upstreams (pools)
           ◀─ exchange ◀─ upstreams (UpstreamConnection: parse the response) ◀─ replica

routing      manifest routes and function triggers -> RouteTable; path normalisation (pure)
balancing    endpoints of a service: least outstanding, ejection, draining, held requests
upstreams    keep-alive connection pools to replicas; the response side of the proxy
proxy        the asyncio Protocol of client connections (the hot path)
exchange     one request/response across both sides; retries, errors, endings
invoking     the hook function routes go through (503 until a function runtime plugs in)
metrics      per-route counters, latency histogram, in-flight; Prometheus text; access log
autoscaling  Knative-style stable/panic decision on in-flight samples (pure)
messages     prebuilt status lines, error bodies, header tables
tuning       knobs that are shoal's business, not the manifest's
server       Gateway: start/stop, set_endpoints, drain, set_routes, metrics
"""

from shoal.gateway.autoscaling import Decision, ScalerState, decide
from shoal.gateway.invoking import FunctionHook, FunctionRequest, FunctionResponse, unavailable
from shoal.gateway.metrics import AccessSink
from shoal.gateway.routing import RouteError, RouteTable, Rule, compile_routes, normalise_path
from shoal.gateway.server import Gateway, OnDemand
from shoal.gateway.tuning import Tuning

__all__ = [
    "AccessSink",
    "Decision",
    "FunctionHook",
    "FunctionRequest",
    "FunctionResponse",
    "Gateway",
    "OnDemand",
    "RouteError",
    "RouteTable",
    "Rule",
    "ScalerState",
    "Tuning",
    "compile_routes",
    "decide",
    "normalise_path",
    "unavailable",
]
