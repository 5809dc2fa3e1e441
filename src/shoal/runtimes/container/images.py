"""Container images from Dockerfile folders, tagged by their content so nothing is rebuilt twice.

    build: ./catalog ──content_hash──> shoal/catalog:3f2a9c1b7d04 ──exists?──> done
                                                                  └─ no ──> engine build (progress)

:func:`content_hash` reads the folder (paths, modes, bytes; ``.dockerignore`` honoured) plus
the ids of the local base images its ``FROM`` lines name, so editing a file *or* rebuilding a
base gives a new tag, and an unchanged folder gives the same tag and no build at all.
:func:`build_image` is what the container runtime, ``shoal build`` and exporters call; it blocks
(call it from a thread in async code). :func:`list_images` backs ``shoal images ls``.
"""

from __future__ import annotations

import collections
import fnmatch
import hashlib
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from shoal.errors import ImageError
from shoal.runtimes.container.engine import (
    LABEL_CONTENT,
    Client,
    connect,
    engine_call,
    is_not_found,
)

Progress = Callable[[str], None]
"""Receives one line of human-readable progress at a time."""

HASH_LENGTH = 12
LOG_TAIL = 20
"""Lines of build output an :class:`ImageError` keeps."""
_FROM = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*(?P<image>\S+)(?:\s+AS\s+(?P<stage>\S+))?", re.I)


def _quiet(line: str) -> None:
    return None


def content_hash(folder: Path, bases: Callable[[str], str | None] | None = None) -> str:
    """12 hex digits naming the build context in ``folder`` (and its base images' ids).

    ``bases`` maps an image reference from a ``FROM`` line to its local id (None if absent);
    without it only the folder counts.
    """
    digest = hashlib.sha256(b"shoal build context v1\0")
    ignore = _dockerignore(folder)
    for relative, path in _context_files(folder, ignore):
        info = path.lstat()
        digest.update(relative.encode() + b"\0" + oct(stat.S_IMODE(info.st_mode)).encode() + b"\0")
        if path.is_symlink():
            digest.update(b"link\0" + os.readlink(path).encode() + b"\0")
        else:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    if bases is not None:
        for image in base_images(folder / "Dockerfile"):
            digest.update(f"FROM {image} = {bases(image)}\0".encode())
    return digest.hexdigest()[:HASH_LENGTH]


def base_images(dockerfile: Path) -> list[str]:
    """The images a Dockerfile's ``FROM`` lines name (build stages and ``scratch`` left out)."""
    try:
        text = dockerfile.read_text()
    except OSError:
        return []
    stages: set[str] = set()
    images: list[str] = []
    for line in text.splitlines():
        match = _FROM.match(line)
        if match is None:
            continue
        image = match["image"]
        if image.lower() != "scratch" and image not in stages and image not in images:
            images.append(image)
        if match["stage"]:
            stages.add(match["stage"])
    return images


def default_repository(folder: Path) -> str:
    """``shoal/<folder name>``, made a valid repository name."""
    name = re.sub(r"[^a-z0-9._-]+", "-", folder.resolve().name.lower()).strip("-._") or "build"
    return f"shoal/{name}"


def build_image(
    folder: str | os.PathLike[str],
    progress: Progress | None = None,
    *,
    repository: str | None = None,
    client: Client | None = None,
    url: str | None = None,
) -> str:
    """Build the Dockerfile in ``folder`` unless an image of the same content exists; its tag.

    The tag is ``<repository>:<content hash>`` (default repository: :func:`default_repository`).
    Build output goes to ``progress`` line by line. Raises :class:`ImageError` when the folder
    has no Dockerfile or the build fails (with the end of its output), and the engine errors of
    :mod:`~shoal.runtimes.container.engine`. Blocking.
    """
    say = progress or _quiet
    path = Path(folder).resolve()
    if not (path / "Dockerfile").is_file():
        raise ImageError(str(path), "no Dockerfile in the build folder")
    owned = client is None
    engine = client if client is not None else connect(url, timeout=600)
    try:
        tag = f"{repository or default_repository(path)}:{content_hash(path, _ids(engine))}"
        if image_exists(engine, tag):
            say(f"{tag}: up to date (its folder is unchanged)")
            return tag
        say(f"building {tag} from {path}")
        tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL)
        with engine_call(f"build {tag}"):
            stream = engine.api.build(
                path=str(path),
                tag=tag,
                rm=True,
                forcerm=True,
                decode=True,
                labels={LABEL_CONTENT: tag.rsplit(":", 1)[1]},
            )
            for line in _build_lines(stream, tag, tail):
                tail.append(line)
                say(line)
        if not image_exists(engine, tag):
            raise ImageError(tag, "the build ended without an image", log="\n".join(tail))
        say(f"built {tag}")
        return tag
    finally:
        if owned:
            engine.close()


def _build_lines(
    stream: Iterator[dict[str, object]], tag: str, tail: collections.deque[str]
) -> Iterator[str]:
    """The build's output, line by line; its error raised once the engine has ended the stream
    (read to the end, so its connection goes back to the client's pool, not to the GC)."""
    failure = ""
    for chunk in stream:
        error = chunk.get("error")
        if error:
            failure = failure or str(error).strip()
            continue
        text = chunk.get("stream") or chunk.get("status")
        if isinstance(text, str) and not failure:
            for line in text.splitlines():
                if line.strip():
                    yield line.rstrip()
    if failure:
        raise ImageError(tag, f"the build failed: {failure}", log="\n".join(tail))


def image_exists(client: Client, reference: str) -> bool:
    """True when the engine has an image called ``reference`` (no pull is tried)."""
    return image_id(client, reference) is not None


def image_id(client: Client, reference: str) -> str | None:
    """The local id of image ``reference``, or None if the engine has none by that name."""
    with engine_call(f"inspect image {reference}"):
        try:
            found = client.api.inspect_image(reference)
        except Exception as exc:
            if is_not_found(exc):
                return None
            raise
    return str(found["Id"])


def _ids(client: Client) -> Callable[[str], str | None]:
    return lambda reference: image_id(client, reference)


@dataclass(frozen=True)
class ImageInfo:
    """One image shoal made, as ``shoal images ls`` shows it."""

    tag: str
    id: str
    size: int  # bytes
    created: str  # as the engine says it (RFC 3339)


def list_images(client: Client | None = None, *, url: str | None = None) -> list[ImageInfo]:
    """Every image tagged ``shoal/...`` on the engine, sorted by tag."""
    owned = client is None
    engine = client if client is not None else connect(url)
    try:
        with engine_call("list images"):
            found = engine.api.images(filters={"reference": "shoal/*"})
        rows = [
            ImageInfo(
                tag=tag,
                id=str(image["Id"]).removeprefix("sha256:")[:12],
                size=int(image.get("Size") or 0),
                created=str(image.get("Created", "")),
            )
            for image in found
            for tag in image.get("RepoTags") or ()
            if tag.startswith("shoal/")
        ]
        return sorted(rows, key=lambda row: row.tag)
    finally:
        if owned:
            engine.close()


def _dockerignore(folder: Path) -> list[str]:
    try:
        lines = (folder / ".dockerignore").read_text().splitlines()
    except OSError:
        return []
    return [line.strip().strip("/") for line in lines if line.strip() and not line.startswith("#")]


def _context_files(folder: Path, ignore: list[str]) -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files) + [d for d in dirs if (Path(root) / d).is_symlink()]:
            path = Path(root) / name
            relative = path.relative_to(folder).as_posix()
            if any(fnmatch.fnmatch(relative, pattern) for pattern in ignore):
                continue
            out.append((relative, path))
        dirs[:] = [
            d
            for d in dirs
            if not (Path(root) / d).is_symlink()
            and not any(
                fnmatch.fnmatch((Path(root) / d).relative_to(folder).as_posix(), pattern)
                for pattern in ignore
            )
        ]
    return sorted(out)


__all__ = [
    "ImageInfo",
    "Progress",
    "base_images",
    "build_image",
    "content_hash",
    "default_repository",
    "image_exists",
    "image_id",
    "list_images",
]
