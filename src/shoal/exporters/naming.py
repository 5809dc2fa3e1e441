"""Names and numbers every exporter shares: DNS-1123 names, image names, whole seconds.

Manifest names of services, functions and jobs are already DNS labels (the schema checks it);
topics may hold ``.`` and ``_`` and upper case, so they are folded here. Images: a service or
job that names an ``image`` runs it; every other one (a ``build`` folder, or a process/vm
command) runs the image ``shoal build`` makes, named ``shoal/APP-NAME:TAG``, and each function
runs ``shoal/APP-fn-NAME:TAG``: shoal's function runtime with the handler, serving HTTP on
``$PORT``.
Pure.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping

DEFAULT_PORT = 8080
"""The port a service without ``port:`` (and every function image) listens on: shoal passes
it as ``$PORT``, as it does locally."""

APP_ROOT = "/app"
"""Where ``shoal build`` puts a service's folder inside its image (the working directory)."""

_NOT_DNS = re.compile(r"[^a-z0-9-]+")


def dns_label(name: str, limit: int = 63) -> str:
    """``orders.created`` -> ``orders-created``: lowercase, ``[a-z0-9-]``, at most ``limit``."""
    label = _NOT_DNS.sub("-", name.lower()).strip("-") or "x"
    if not label[0].isalpha():
        label = "x-" + label
    if len(label) > limit:
        digest = hashlib.sha256(name.encode()).hexdigest()[:6]
        label = label[: limit - 7].rstrip("-") + "-" + digest
    return label


def labels(app: str, name: str) -> dict[str, str]:
    """The Kubernetes labels of every object shoal exports (``shoal deploy`` finds them so)."""
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/part-of": app,
        "app.kubernetes.io/managed-by": "shoal",
    }


def metadata(app: str, name: str) -> dict[str, object]:
    """A Kubernetes object's metadata: its name and :func:`labels`."""
    return {"name": name, "labels": labels(app, name)}


def logical_id(*parts: str) -> str:
    """A CloudFormation logical ID: ``orders.created`` + ``Queue`` -> ``OrdersCreatedQueue``."""
    words = re.split(r"[^A-Za-z0-9]+", " ".join(parts))
    return "".join(w[:1].upper() + w[1:] for w in words if w)


Tag = str | Mapping[str, str]
"""One tag for every image shoal builds, or one per image key (``catalog``, ``fn-thumbnail``),
as ``shoal build`` reports its content tags; a key missing from the mapping gets ``latest``."""


def _tag_of(tag: Tag, key: str) -> str:
    return tag if isinstance(tag, str) else tag.get(key, "latest")


def image_name(app: str, name: str, image: str | None, tag: Tag) -> str:
    """The image a service or job runs: its own ``image``, else ``shoal/APP-NAME:TAG``, the
    repository ``shoal build`` (and the container runtime) tags its build with."""
    return image if image else f"shoal/{app}-{name}:{_tag_of(tag, name)}"


def function_image(app: str, name: str, tag: Tag) -> str:
    """The image ``shoal build`` makes for a function: ``shoal/APP-fn-NAME:TAG``."""
    return f"shoal/{app}-fn-{name}:{_tag_of(tag, 'fn-' + name)}"


def whole_seconds(seconds: float, minimum: int = 1) -> int:
    """Seconds rounded up to a whole number, at least ``minimum`` (what most targets take)."""
    return max(minimum, math.ceil(seconds - 1e-9))


def is_whole(seconds: float, minimum: int = 1) -> bool:
    """Whether :func:`whole_seconds` keeps the value as it is."""
    return whole_seconds(seconds, minimum) == seconds


def mebibytes(size: int) -> int:
    """Bytes to MiB, rounded up."""
    return max(1, math.ceil(size / (1 << 20)))


def iso_duration(seconds: float) -> str:
    """ISO 8601 duration, as Knative's delivery spec takes it: 0.1 -> ``PT0.1S``."""
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return f"PT{text}S"


__all__ = [
    "APP_ROOT",
    "DEFAULT_PORT",
    "Tag",
    "dns_label",
    "function_image",
    "image_name",
    "is_whole",
    "iso_duration",
    "labels",
    "logical_id",
    "mebibytes",
    "metadata",
    "whole_seconds",
]
