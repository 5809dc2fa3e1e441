"""Deploying to Kubernetes: every exported object applied with server-side apply (``PATCH``
with ``application/apply-patch+yaml``, ``fieldManager=shoal``, ``force=true``) through the
official kubernetes client, to the current kubeconfig context (or the one named).

:func:`apply_requests` builds the requests (pure, the same for ``--dry-run``, which prints them
instead of sending); :func:`apply` sends them in order (namespaced objects, into one namespace).
Images must be where the cluster pulls from: ``shoal build`` tags them locally, pushing them to
a registry is the user's step (no registry is assumed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from shoal.errors import DeployError, RuntimeNotAvailable
from shoal.exporters.documents import Export, render

FIELD_MANAGER = "shoal"
APPLY_TYPE = "application/apply-patch+yaml"
_PLURALS = {
    "Ingress": "ingresses",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "HTTPRoute": "httproutes",
}
_ORDER = ("Broker", "Service", "Deployment", "HorizontalPodAutoscaler", "Ingress", "HTTPRoute")


@dataclass(frozen=True)
class ApplyRequest:
    """One server-side apply: ``PATCH path?query`` with the object as the body."""

    kind: str
    name: str
    path: str
    query: tuple[tuple[str, str], ...]
    body: dict[str, Any]

    @property
    def url(self) -> str:
        return self.path + "?" + "&".join(f"{k}={v}" for k, v in self.query)

    def describe(self) -> str:
        return f"PATCH {self.url}  ({self.kind} {self.name}, {APPLY_TYPE})"


def objects(export: Export) -> list[dict[str, Any]]:
    """Every object of the export, in file order."""
    out: list[dict[str, Any]] = []
    for doc in export.documents:
        out.extend(d for d in yaml.safe_load_all(render(doc)) if isinstance(d, dict))
    return out


def resource_path(obj: dict[str, Any], namespace: str) -> str:
    """``/apis/apps/v1/namespaces/NS/deployments/NAME`` for an object."""
    version = obj["apiVersion"]
    kind = obj["kind"]
    base = f"/api/{version}" if "/" not in version else f"/apis/{version}"
    plural = _PLURALS.get(kind, kind.lower() + "s")
    return f"{base}/namespaces/{namespace}/{plural}/{obj['metadata']['name']}"


def apply_requests(export: Export, namespace: str, *, force: bool = True) -> list[ApplyRequest]:
    """The requests that apply ``export`` in ``namespace`` (brokers and services first)."""
    query = (("fieldManager", FIELD_MANAGER), ("force", "true" if force else "false"))
    items = objects(export)
    rank = {kind: i for i, kind in enumerate(_ORDER)}
    items.sort(key=lambda o: rank.get(o["kind"], len(_ORDER)))
    out = []
    for obj in items:
        body = {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}
        path = resource_path(obj, namespace)
        out.append(ApplyRequest(obj["kind"], obj["metadata"]["name"], path, query, body))
    return out


def dry_run_text(requests: list[ApplyRequest]) -> str:
    """What ``--dry-run`` prints: each request line, then its body as YAML."""
    parts = []
    for request in requests:
        body = yaml.safe_dump(request.body, sort_keys=False)
        parts.append(f"# {request.describe()}\n---\n{body}")
    return "".join(parts)


def _client(context: str | None, kubeconfig: str | None) -> Any:
    try:
        from kubernetes import client, config  # noqa: PLC0415 - an optional dependency
    except ImportError as exc:
        raise RuntimeNotAvailable(
            "k8s", "the kubernetes client is missing", extra="kubernetes"
        ) from exc
    try:
        configuration = client.Configuration()
        load: Any = config.load_kube_config
        load(config_file=kubeconfig, context=context, client_configuration=configuration)
    except (config.ConfigException, OSError) as exc:
        raise DeployError("k8s", f"no usable kubeconfig: {exc}") from exc
    return client.ApiClient(configuration)


def current_namespace(context: str | None = None, kubeconfig: str | None = None) -> str:
    """The namespace of the kubeconfig context (``default`` when it names none or none exists)."""
    try:
        from kubernetes import config  # noqa: PLC0415 - an optional dependency

        listing: Any = config.list_kube_config_contexts
        contexts, active = listing(config_file=kubeconfig)
        if context is not None:
            active = next((c for c in contexts if c["name"] == context), active)
        return str((active or {}).get("context", {}).get("namespace") or "default")
    except Exception:  # no kubeconfig at all (or the client is missing): the default
        return "default"


def apply(
    requests: list[ApplyRequest],
    *,
    context: str | None = None,
    kubeconfig: str | None = None,
    timeout: float = 30.0,
) -> list[str]:
    """Send every request; one line per object applied. Raise DeployError on the first refusal."""
    api = _client(context, kubeconfig)
    done = []
    try:
        for request in requests:
            method, url, headers, body, _ = api.param_serialize(
                method="PATCH",
                resource_path=request.path,
                query_params=list(request.query),
                header_params={"Content-Type": APPLY_TYPE, "Accept": "application/json"},
                body=request.body,
                auth_settings=["BearerToken"],
            )
            try:
                response = api.call_api(
                    method, url, header_params=headers, body=body, _request_timeout=timeout
                )
                response.read()
            except Exception as exc:  # urllib3 and the client raise many kinds
                raise DeployError("k8s", f"{request.describe()}: {_reason(exc)}") from exc
            if response.status >= 400:
                raise DeployError(
                    "k8s", f"{request.describe()}: HTTP {response.status} {_message(response.data)}"
                )
            done.append(f"{request.kind.lower()}/{request.name} applied")
    finally:
        api.close()
    return done


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]


def _message(data: bytes | None) -> str:
    if not data:
        return ""
    try:
        status = yaml.safe_load(data)
    except yaml.YAMLError:
        return data[:300].decode(errors="replace")
    if isinstance(status, dict) and "message" in status:
        return str(status["message"])
    return data[:300].decode(errors="replace")


__all__ = [
    "APPLY_TYPE",
    "FIELD_MANAGER",
    "ApplyRequest",
    "apply",
    "apply_requests",
    "current_namespace",
    "dry_run_text",
    "objects",
    "resource_path",
]
