"""The ``container`` runtime: each instance is one Docker Engine container.

The supervisor's executor calls it through the :class:`~shoal.runtimes.base.Runtime` protocol,
exactly as it calls the process runtime; health probes, backoff, rolling updates and scaling
are the supervisor's, so a container behaves like a process does.

- **prepare** (before the supervisor starts): connect (a clear
  :class:`~shoal.errors.EngineUnavailable` if no engine answers), build every ``build:`` folder
  and check every ``image:``, with progress.
- **start**: the image (built now if ``prepare`` did not, or if the folder changed), then one
  thread call creates and starts the container with the settings of
  :mod:`~shoal.runtimes.container.shaping`. The handle keeps the container id in
  ``runtime_ref`` and its main process in ``pid``; a :class:`Follower` streams its output into
  the log file and resolves its exit, then removes the container.
- **stop**: the engine's stop (SIGTERM, SIGKILL after the grace period), then the exit.
- **adopt**: after a daemon restart, the container id from the store is inspected and its
  labels checked; a running one is followed again (its output since the log file was last
  written is appended), an exited one is removed.
- **sweep**: containers labelled with an instance identity no record claims are removed.
- **close**: stop following; containers keep running for the next daemon to adopt.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from shoal.errors import EngineError, ImageError
from shoal.runtimes.base import Exit, Handle, InstanceSpec, Stats
from shoal.runtimes.container.engine import Client, connect, engine_call, engine_url
from shoal.runtimes.container.following import GONE, Follower
from shoal.runtimes.container.images import (
    Progress,
    build_image,
    default_repository,
    image_exists,
)
from shoal.runtimes.container.shaping import (
    container_name,
    create_options,
    matches,
    stop_seconds,
    sweep_filters,
)

logger = logging.getLogger(__name__)

RECENT_EXITS = 256
"""How many finished instances' exits are remembered for a late ``stop`` or ``wait``."""
THREADS = 32
"""Engine calls at once (each stop holds one for up to its grace period)."""
STOP_MARGIN = 10.0
"""Seconds past the grace period to wait for the engine to report a stopped container."""

_PROTOCOL_NAME = "container"
T = TypeVar("T")


class ContainerRuntime:
    """Runs instances as containers; see the module docstring for the whole life cycle."""

    name = _PROTOCOL_NAME

    def __init__(self, *, url: str | None = None, clock: Callable[[], float] = time.time) -> None:
        """``url``: the engine's address (default ``DOCKER_HOST`` or the standard socket);
        ``clock``: wall clock for ``Handle.started_at``."""
        self.url = url or engine_url()
        self._clock = clock
        self._client: Client | None = None
        self._connecting: asyncio.Lock | None = None
        self._followers: dict[str, Follower] = {}
        self._recent: OrderedDict[str, Exit] = OrderedDict()
        self._present: set[str] = set()  # images known to be on the engine
        self._building: dict[Path, asyncio.Lock] = {}
        self._pool: ThreadPoolExecutor | None = None

    async def _blocking(self, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run a blocking SDK call in this runtime's own threads: a slow stop or build never
        starves the loop's default executor (health probes and the rest of shoal use it)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(THREADS, thread_name_prefix="shoal.runtimes.container")
        call = functools.partial(function, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    # ------------------------------------------------------------------ the engine

    async def engine(self) -> Client:
        """The connected client (connecting on first use; :class:`EngineUnavailable` if none)."""
        if self._client is None:
            if self._connecting is None:
                self._connecting = asyncio.Lock()
            async with self._connecting:
                if self._client is None:
                    self._client = await self._blocking(connect, self.url)
        return self._client

    # ------------------------------------------------------------------ images

    async def prepare(self, project: Any, services: list[str], progress: Progress) -> None:
        """Connect, then build or check each service's image before anything starts."""
        await self.engine()
        for name in services:
            service = project.manifest.services[name]
            if service.build:
                repository = repository_of(project.manifest.name, name)
                await self._build(
                    project.resolve(service.build), repository, _prefixed(name, progress)
                )
            elif service.image:
                await self._ensure(service.image, _prefixed(name, progress))

    async def image_for(self, spec: InstanceSpec, progress: Progress) -> str:
        """The image an instance runs: built from ``spec.build`` (if changed), or ``spec.image``."""
        if spec.build is not None:
            return await self._build(spec.build, repository_of(spec.app, spec.name), progress)
        if spec.image is None:
            raise ImageError(spec.label, "a container service needs an image or a build folder")
        await self._ensure(spec.image, progress)
        return spec.image

    async def _build(self, folder: Path, repository: str, progress: Progress) -> str:
        lock = self._building.setdefault(folder, asyncio.Lock())
        async with lock:  # replicas starting together build once
            client = await self.engine()
            tag = await self._blocking(
                build_image, folder, progress, repository=repository, client=client
            )
        self._present.add(tag)
        return tag

    async def _ensure(self, image: str, progress: Progress) -> None:
        """Check ``image`` is on the engine; pull it if not (a registry may be reachable)."""
        if image in self._present:
            return
        client = await self.engine()
        if not await self._blocking(image_exists, client, image):
            progress(f"pulling {image}")
            try:
                with engine_call(f"pull {image}", self.url):
                    await self._blocking(client.api.pull, image)
            except EngineError as exc:
                raise ImageError(
                    image,
                    f"not on this Docker Engine and could not be pulled ({exc.explanation}); "
                    "build it, or use build: with a Dockerfile folder "
                    "(`shoal images bootstrap` makes a Debian + Python base without a registry)",
                ) from exc
        self._present.add(image)

    # ------------------------------------------------------------------ the protocol

    async def start(self, spec: InstanceSpec) -> Handle:
        image = await self.image_for(spec, _appending(spec.log_path))
        client = await self.engine()
        container_id, pid = await self._blocking(self._create_and_start, client, spec, image)
        handle = Handle(
            spec=spec,
            pid=pid,
            host_port=spec.host_port,
            runtime_ref=container_id,
            started_at=self._clock(),
        )
        logger.debug("[%s] started container %s (%s)", spec.label, container_id[:12], image)
        self._follow(client, handle, since=None)
        return handle

    def _create_and_start(self, client: Client, spec: InstanceSpec, image: str) -> tuple[str, int]:
        options = create_options(spec, image)
        options["host_config"] = client.api.create_host_config(**options["host_config"])
        with engine_call(f"create a container for {spec.label}", self.url):
            created = client.api.create_container(name=container_name(spec), **options)
        container_id = str(created["Id"])
        try:
            with engine_call(f"start the container of {spec.label}", self.url):
                client.api.start(container_id)
                state = client.api.inspect_container(container_id)["State"]
        except BaseException:
            with engine_call(f"remove the container of {spec.label}", self.url):
                client.api.remove_container(container_id, force=True)
            raise
        return container_id, int(state.get("Pid") or 0)

    async def wait(self, handle: Handle) -> Exit:
        follower = await self._find_or_adopt(handle)
        if follower is None:
            return self._recent.get(str(handle.runtime_ref), GONE)
        return await asyncio.shield(follower.exit)

    async def stop(self, handle: Handle, grace: float) -> Exit:
        follower = await self._find_or_adopt(handle)
        if follower is None:
            return self._recent.get(str(handle.runtime_ref), GONE)
        if not follower.exit.done():
            client = await self.engine()
            try:
                with engine_call(f"stop the container of {handle.spec.label}", self.url):
                    await self._blocking(
                        client.api.stop, follower.container_id, timeout=stop_seconds(grace)
                    )
            except EngineError as exc:
                if exc.status not in (304, 404, 409):  # already stopped, gone, being removed
                    raise
        return await asyncio.wait_for(asyncio.shield(follower.exit), grace + STOP_MARGIN)

    async def signal(self, handle: Handle, signum: int) -> None:
        follower = await self._find_or_adopt(handle)
        if follower is None or follower.exit.done():
            return
        client = await self.engine()
        try:
            with engine_call(f"signal the container of {handle.spec.label}", self.url):
                await self._blocking(client.api.kill, follower.container_id, signal=signum)
        except EngineError as exc:
            if exc.status not in (404, 409):  # gone, or not running any more
                raise

    async def adopt(self, handle: Handle) -> Handle | None:
        follower = self._find(handle)
        if follower is not None:
            known = follower.handle.spec
            same = (known.name, known.ordinal) == (handle.spec.name, handle.spec.ordinal)
            return follower.handle if same else None
        if not handle.runtime_ref:
            return None
        client = await self.engine()
        label = handle.spec.label
        try:
            with engine_call(f"inspect the container of {label}", self.url):
                found = await self._blocking(client.api.inspect_container, handle.runtime_ref)
        except EngineError as exc:
            if exc.status == 404:
                logger.info("[%s] not adopted: container %s is gone", label, handle.runtime_ref)
                return None
            raise
        if not matches(found.get("Config", {}).get("Labels"), handle.spec):
            logger.info("[%s] not adopted: container %s is another's", label, handle.runtime_ref)
            return None
        state = found.get("State", {})
        if not state.get("Running"):
            logger.info("[%s] not adopted: container %s has exited", label, handle.runtime_ref)
            await self._blocking(_remove_quietly, client, str(found["Id"]))
            return None
        adopted = Handle(
            spec=handle.spec,
            pid=int(state.get("Pid") or 0) or handle.pid,
            host_port=handle.host_port,
            runtime_ref=str(found["Id"]),
            started_at=handle.started_at,
        )
        self._follow(client, adopted, since=_last_written(handle.spec.log_path, handle.started_at))
        logger.info("[%s] adopted container %s", label, adopted.runtime_ref)
        return adopted

    async def stats(self, handle: Handle) -> Stats | None:
        follower = self._find(handle)
        if follower is None or follower.exit.done():
            return None
        client = await self.engine()
        try:
            with engine_call("stats", self.url):
                raw = await self._blocking(
                    client.api.stats, follower.container_id, stream=False, one_shot=True
                )
        except EngineError:
            return None
        return stats_of(raw)

    async def sweep(self, match: Mapping[str, str]) -> list[str]:
        """Remove containers of the instance ``match`` names (``SHOAL_STATE``,
        ``SHOAL_SERVICE``, ``SHOAL_INSTANCE``) that this runtime does not follow: started by a
        daemon that crashed before it recorded them."""
        filters = sweep_filters(match)
        if filters is None:
            return []
        client = await self.engine()
        label_filters = [f"{key}={value}" for key, value in filters.items()]
        with engine_call("list containers", self.url):
            found = await self._blocking(
                client.api.containers, all=True, filters={"label": label_filters}
            )
        removed = [str(c["Id"]) for c in found if str(c["Id"]) not in self._followers]
        for container_id in removed:
            await self._blocking(_remove_quietly, client, container_id)
            logger.warning(
                "removed container %s: started by a daemon that crashed before recording it",
                container_id[:12],
            )
        return removed

    async def close(self) -> None:
        """Stop following; the containers keep running (a later runtime can adopt them)."""
        followers = list(self._followers.values())
        self._followers.clear()
        await asyncio.gather(*(f.detach() for f in followers), return_exceptions=True)
        if self._client is not None:
            client, self._client = self._client, None
            await self._blocking(client.close)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.to_thread(pool.shutdown, wait=True)

    # ------------------------------------------------------------------ following

    def _follow(self, client: Client, handle: Handle, *, since: float | None) -> None:
        follower = Follower(client, handle, since=since)
        self._followers[follower.container_id] = follower
        follower.exit.add_done_callback(lambda future: self._followed(follower, future))
        follower.start()

    def _followed(self, follower: Follower, future: asyncio.Future[Exit]) -> None:
        """The guard: remember how the container ended, and forget it."""
        if self._followers.get(follower.container_id) is follower:
            del self._followers[follower.container_id]
        if future.cancelled():
            return
        exit_ = future.result()
        self._recent[follower.container_id] = exit_
        while len(self._recent) > RECENT_EXITS:
            self._recent.popitem(last=False)
        logger.debug("[%s] %s", follower.handle.spec.label, exit_.reason)

    async def _find_or_adopt(self, handle: Handle) -> Follower | None:
        follower = self._find(handle)
        if (
            follower is None
            and str(handle.runtime_ref) not in self._recent
            and await self.adopt(handle) is not None
        ):
            follower = self._find(handle)
        return follower

    def _find(self, handle: Handle) -> Follower | None:
        if not handle.runtime_ref:
            return None
        return self._followers.get(handle.runtime_ref)


def repository_of(app: str, service: str) -> str:
    """``shoal/<app>-<service>``: where a service's built images are tagged."""
    return default_repository(Path(f"{app}-{service}"))


def stats_of(raw: Mapping[str, Any]) -> Stats | None:
    """CPU seconds and memory in use from the engine's stats document."""
    try:
        cpu = raw["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9
        memory = raw["memory_stats"]
        used = int(memory.get("usage", 0)) - int(memory.get("stats", {}).get("cache", 0))
    except (KeyError, TypeError):
        return None
    return Stats(cpu_seconds=float(cpu), rss_bytes=max(used, 0))


def _remove_quietly(client: Client, container_id: str) -> None:
    try:
        client.api.remove_container(container_id, force=True)
    except Exception as exc:
        logger.warning("could not remove container %s: %s", container_id[:12], exc)


def _last_written(path: Path, default: float) -> float | None:
    """When the log file was last written: output after that was not copied yet."""
    try:
        return path.stat().st_mtime
    except OSError:
        return default or None


def _prefixed(name: str, progress: Progress) -> Progress:
    return lambda line: progress(f"{name}: {line}")


def _appending(path: Path) -> Progress:
    """Progress lines appended to an instance's log (a lazy build shows in ``shoal logs``)."""

    def append(line: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as out:
            out.write(f"{line}\n")

    return append


__all__ = ["ContainerRuntime", "repository_of", "stats_of"]
