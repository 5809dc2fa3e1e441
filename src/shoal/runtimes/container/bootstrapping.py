"""Base images made on this machine, for when no registry is reachable (``docker import``).

- :func:`bootstrap_base`: Debian + Python (``mmdebstrap --variant=apt --include=python3
  bookworm -`` streamed into the engine's import), tagged ``shoal/python:<recipe hash>`` and
  ``shoal/python:<suite>`` (what a Dockerfile says ``FROM``). About two minutes and 120 MB,
  once: an image with the recipe's tag is never rebuilt. ``shoal images bootstrap`` calls it.
- :func:`busybox_image`: the host's static busybox alone in a scratch image, serving HTTP on
  ``$PORT`` (default 8080) with ``/healthz``: a 1 MB image made in well under a second, for
  fast tests of anything container-shaped.

Both are blocking and report progress line by line. The external command (mmdebstrap) runs
through :func:`run_into`, the one place this package starts a program.
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from shoal.errors import CommandFailed, ImageError
from shoal.runtimes.container.engine import LABEL_CONTENT, Client, connect, engine_call
from shoal.runtimes.container.images import Progress, image_exists

BASE_REPOSITORY = "shoal/python"
BASE_SUITE = "bookworm"
BUSYBOX_REPOSITORY = "shoal/busybox"
BUSYBOX_APPLETS = (
    "sh", "httpd", "sleep", "echo", "cat", "env", "true", "false", "kill", "ls", "nc", "head",
    "wc", "dd", "yes", "printf", "test", "mkdir", "rm",
)  # fmt: skip
BUSYBOX_CMD = ["/bin/sh", "-c", 'exec httpd -f -v -p "${PORT:-8080}" -h /www']
CHUNK = 1 << 20


def _quiet(line: str) -> None:
    return None


def base_recipe(suite: str = BASE_SUITE, mirror: str | None = None) -> tuple[str, ...]:
    """The mmdebstrap command line that makes the Python base image (its hash names the tag)."""
    argv = ("mmdebstrap", "--variant=apt", "--include=python3,ca-certificates", suite, "-")
    return (*argv, mirror) if mirror else argv


def base_tag(suite: str = BASE_SUITE, mirror: str | None = None) -> str:
    """``shoal/python:<12 hex digits of the recipe>``."""
    recipe = json.dumps({"argv": base_recipe(suite, mirror), "cmd": ["python3"], "v": 1})
    return f"{BASE_REPOSITORY}:{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def bootstrap_base(
    progress: Progress | None = None,
    *,
    suite: str = BASE_SUITE,
    mirror: str | None = None,
    client: Client | None = None,
    url: str | None = None,
) -> str:
    """Make (once) the Debian + Python base image; its content tag.

    Also tags it ``shoal/python:<suite>``, the name Dockerfiles use. Raises
    :class:`CommandFailed` when mmdebstrap is missing or fails (with its last output lines).
    """
    say = progress or _quiet
    tag = base_tag(suite, mirror)
    alias = f"{BASE_REPOSITORY}:{suite}"
    owned = client is None
    engine = client if client is not None else connect(url, timeout=900)
    try:
        if image_exists(engine, tag):
            say(f"{tag}: already built (the recipe is unchanged)")
        else:
            argv = base_recipe(suite, mirror)
            if shutil.which(argv[0]) is None:
                raise CommandFailed(
                    argv, None, "mmdebstrap is not installed (apt-get install mmdebstrap)"
                )
            say(f"building {tag} with: {' '.join(argv)} | docker import (a few minutes, once)")
            changes = [
                'CMD ["python3"]',
                "ENV LANG=C.UTF-8",
                f"LABEL {LABEL_CONTENT}={tag.split(':')[1]}",
            ]

            def load(chunks: Iterator[bytes]) -> None:
                with engine_call(f"import {tag}"):
                    engine.api.import_image_from_stream(
                        _counting(chunks, say),
                        repository=BASE_REPOSITORY,
                        tag=tag.split(":")[1],
                        changes=changes,
                    )

            run_into(argv, load, say)
            if not image_exists(engine, tag):
                raise ImageError(tag, "the import ended without an image")
            say(f"built {tag}")
        with engine_call(f"tag {alias}"):
            engine.api.tag(tag, BASE_REPOSITORY, suite)
        return tag
    finally:
        if owned:
            engine.close()


def run_into(
    argv: tuple[str, ...], consume: Callable[[Iterator[bytes]], None], progress: Progress
) -> None:
    """Run ``argv`` (never through a shell), hand its stdout to ``consume`` as chunks, pass its
    stderr lines to ``progress``; raise :class:`CommandFailed` if it fails."""
    try:
        child = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
    except OSError as exc:
        raise CommandFailed(argv, None, exc.strerror or str(exc)) from exc
    assert child.stdout is not None and child.stderr is not None
    tail: collections.deque[str] = collections.deque(maxlen=20)
    stderr = child.stderr

    def relay() -> None:
        for raw in stderr:
            line = raw.decode(errors="replace").rstrip()
            if line:
                tail.append(line)
                progress(line)

    reader = threading.Thread(target=relay, name=f"shoal:stderr[{argv[0]}]", daemon=True)
    reader.start()
    stdout = child.stdout
    try:
        consume(iter(lambda: stdout.read(CHUNK), b""))
    except BaseException:
        child.kill()
        raise
    finally:
        code = child.wait()
        reader.join(timeout=5)
        stdout.close()
        stderr.close()
    if code != 0:
        raise CommandFailed(argv, code, "\n".join(tail))


def _counting(chunks: Iterator[bytes], say: Progress) -> Iterator[bytes]:
    sent = 0
    step = 16 << 20
    for chunk in chunks:
        before, sent = sent, sent + len(chunk)
        if sent // step > before // step:
            say(f"imported {sent >> 20} MB")
        yield chunk


def busybox_tag(busybox: Path = Path("/bin/busybox")) -> str:
    """``shoal/busybox:<12 hex digits of the binary and the recipe>``."""
    digest = hashlib.sha256(
        b"shoal busybox v1\0" + json.dumps([BUSYBOX_APPLETS, BUSYBOX_CMD]).encode()
    )
    digest.update(busybox.read_bytes())
    return f"{BUSYBOX_REPOSITORY}:{digest.hexdigest()[:12]}"


def busybox_image(
    progress: Progress | None = None,
    *,
    busybox: Path = Path("/bin/busybox"),
    client: Client | None = None,
    url: str | None = None,
) -> str:
    """Make (once) a scratch image holding only a static busybox; its tag.

    By default it runs ``httpd -f -v -p $PORT -h /www`` (``/`` and ``/healthz`` answer ``ok``);
    ``sh``, ``sleep``, ``nc`` and a few more applets are on ``PATH``. Raises
    :class:`ImageError` when ``busybox`` is missing (Debian: apt-get install busybox-static).
    """
    say = progress or _quiet
    if not busybox.is_file():
        raise ImageError(str(busybox), "no busybox binary (apt-get install busybox-static)")
    tag = busybox_tag(busybox)
    owned = client is None
    engine = client if client is not None else connect(url)
    try:
        if image_exists(engine, tag):
            return tag
        say(f"importing {tag} from {busybox}")
        changes = [
            "CMD " + json.dumps(BUSYBOX_CMD),
            "ENV PATH=/bin",
            "EXPOSE 8080",
            f"LABEL {LABEL_CONTENT}={tag.split(':')[1]}",
        ]
        with engine_call(f"import {tag}"):
            engine.api.import_image_from_data(
                busybox_rootfs(busybox),
                repository=BUSYBOX_REPOSITORY,
                tag=tag.split(":")[1],
                changes=changes,
            )
        return tag
    finally:
        if owned:
            engine.close()


def busybox_rootfs(busybox: Path) -> bytes:
    """A tar of the busybox image's whole file system."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for folder, mode in (("bin", 0o755), ("www", 0o755), ("tmp", 0o1777), ("etc", 0o755)):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        binary = busybox.read_bytes()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(binary), 0o755
        tar.addfile(info, io.BytesIO(binary))
        for applet in BUSYBOX_APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, "busybox", 0o777
            tar.addfile(info)
        for name, text in (
            ("www/index.html", "ok\n"),
            ("www/healthz", "ok\n"),
            ("etc/passwd", "root:x:0:0:root:/:/bin/sh\n"),
            ("etc/group", "root:x:0:\n"),
        ):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


__all__ = [
    "BASE_REPOSITORY",
    "BUSYBOX_REPOSITORY",
    "base_recipe",
    "base_tag",
    "bootstrap_base",
    "busybox_image",
    "busybox_rootfs",
    "busybox_tag",
    "run_into",
]
