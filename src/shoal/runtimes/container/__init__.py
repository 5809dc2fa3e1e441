"""The ``container`` runtime: services as Docker Engine containers, and the images they run.

    engine         connecting to the engine; its failures as shoal's errors; labels
    images         content-tagged builds from Dockerfile folders (no rebuild when unchanged)
    bootstrapping  base images without a registry: Debian + Python (mmdebstrap), busybox
    running        :class:`ContainerRuntime`, the driver behind the runtime protocol

The image functions are public for ``shoal images``, ``shoal build`` and the exporters:
:func:`build_image`, :func:`bootstrap_base`, :func:`busybox_image`, :func:`list_images`.
"""

from __future__ import annotations

from shoal.runtimes.container.bootstrapping import (
    BASE_REPOSITORY,
    BUSYBOX_REPOSITORY,
    bootstrap_base,
    busybox_image,
)
from shoal.runtimes.container.engine import connect, engine_url, reachable
from shoal.runtimes.container.images import (
    ImageInfo,
    build_image,
    content_hash,
    image_exists,
    list_images,
)
from shoal.runtimes.container.running import ContainerRuntime

__all__ = [
    "BASE_REPOSITORY",
    "BUSYBOX_REPOSITORY",
    "ContainerRuntime",
    "ImageInfo",
    "bootstrap_base",
    "build_image",
    "busybox_image",
    "connect",
    "content_hash",
    "engine_url",
    "image_exists",
    "list_images",
    "reachable",
]
