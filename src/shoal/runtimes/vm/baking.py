"""Baking VM images: kernel, guest init + initramfs, a base root filesystem, one disk per service.

``shoal build`` and the VM runtime's ``prepare``/``start`` call :meth:`Baker.bake`. Every part is
cached under ``${XDG_CACHE_HOME:-~/.cache}/shoal/vm`` by the content hash of its recipe, so a
second bake of unchanged inputs does nothing and CI runs on the same machine reuse the slow parts;
a clean cache works too (every slow step says so through ``progress``).

- **kernel** (``kernel-<hash>/vmlinux``): built from Debian's kernel source with shoal's minimal
  config (:mod:`shoal.runtimes.vm.kernel`, :mod:`shoal.runtimes.vm.kernel_config`), once per
  machine (several minutes); qemu boots the ELF as PVH. Older kernels are removed.
- **guest init** (``init-<hash>/init``): :file:`guest_init.c` compiled with ``gcc -static``,
  and beside it ``initramfs.cpio`` holding it as ``/init`` (:mod:`shoal.runtimes.vm.initramfs`).
- **base** (``base-<hash>.ext4``): ``mmdebstrap --variant=minbase --include=python3`` (no docs,
  man pages or locales) into a folder, then ``mkfs.ext4 -d`` (no loop mount, no root needed for
  that step; mmdebstrap itself needs root to keep file owners). Shared read-only by every VM.
- **service** (``service-<owner>-<hash>.ext4``, the owner being a hash of app and service
  name; each service keeps its :data:`KEEP_SERVICE_DISKS` most recently used): the service's
  ``build:`` folder at ``/srv/app``, the guest init at ``/srv/shoal/init`` and its settings
  beside it (``argv`` and ``env``, NUL-separated; ``port``, ``grace``), made with
  ``mkfs.ext4 -d`` in well under a second: a code change rebakes only this disk.

Instances never write to these files: each VM gets copy-on-write overlays
(:mod:`shoal.runtimes.vm.qemu`). Files are written under a temporary name and renamed into place,
so a crash mid-bake leaves nothing that looks finished.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shoal.errors import RuntimeNotAvailable
from shoal.runtimes.vm import commands, hosting, initramfs, kernel_config
from shoal.runtimes.vm import kernel as kernel_build

Progress = Callable[[str], None]

SUITE = "bookworm"
BASE_INCLUDE = ("python3",)
BASE_EXCLUDE = (
    "/usr/share/doc/*",
    "/usr/share/man/*",
    "/usr/share/info/*",
    "/usr/share/locale/*",
    "/usr/share/lintian/*",
)
BASE_FREE = 256 << 20
"""Free space left in the base root filesystem (sparse: it costs nothing until written)."""
SERVICE_FREE = 64 << 20
KEEP_SERVICE_DISKS = 3
"""Disks kept per service: the current one and a couple to roll back to; older ones are removed
when a new one is baked (a running VM keeps its open file; a snapshot of a removed disk is
simply not restored: its service boots cold and snapshots anew)."""
LEGACY_SERVICE_DISK = re.compile(r"service-[0-9a-f]{16}\.ext4")
"""A service disk named by the earlier scheme (no owner in the name): never used now."""
SKIPPED = frozenset({"__pycache__", ".git", ".shoal", ".venv", "node_modules"})
"""Folder names never copied from a ``build:`` folder into an image."""
GUEST_INIT = Path(__file__).with_name("guest_init.c")
"""PID 1 inside every VM, compiled at bake time (C: see the file's header for why)."""
CC_FLAGS = ("-static", "-Os", "-s", "-Wall", "-Wextra", "-Werror")
PER_INSTANCE_ENV = frozenset({"SHOAL_INSTANCE", "SHOAL_STATE"})
"""Variables that differ per instance: not baked (a restored clone shares its snapshot's)."""


def default_cache() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "shoal" / "vm"


def _quiet(line: str) -> None:
    return None


def digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True, kw_only=True)
class ServiceInputs:
    """What a service's disk is made of (its hash names the disk)."""

    name: str
    build: Path | None
    command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    port: int | None = None
    grace: float = 10.0

    @property
    def owner(self) -> str:
        """Whose disks these are (an app's service): older ones of the same owner get pruned."""
        return digest(self.env.get("SHOAL_APP", ""), self.name)

    def guest_env(self) -> dict[str, str]:
        env = {k: v for k, v in self.env.items() if k not in PER_INSTANCE_ENV}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin")
        env.setdefault("HOME", "/root")
        env.setdefault("LANG", "C.UTF-8")
        if self.port is not None:
            env["PORT"] = str(self.port)
        return env

    def config(self) -> dict[str, object]:
        return {
            "command": list(self.command),
            "env": self.guest_env(),
            "workdir": "/srv/app",
            "port": self.port,
            "grace": self.grace,
        }

    def settings(self) -> dict[str, bytes]:
        """The guest init's settings as files (C reads them without a parser): ``argv`` and
        ``env`` NUL-separated (every entry NUL-terminated), ``port`` and ``grace`` one number
        each; the workdir is always ``/srv/app``."""
        return {
            "argv": b"".join(part.encode() + b"\x00" for part in self.command),
            "env": b"".join(f"{k}={v}".encode() + b"\x00" for k, v in self.guest_env().items()),
            "port": str(self.port or 0).encode(),
            "grace": str(self.grace).encode(),
        }


@dataclass(frozen=True, kw_only=True)
class Image:
    """A baked image: what qemu boots. ``key`` changes whenever any input changes."""

    key: str
    kernel: Path
    initramfs: Path
    root: Path
    service: Path


def files_of(folder: Path) -> Iterator[Path]:
    """Every file and link under ``folder`` (sorted, without :data:`SKIPPED` folders)."""
    for path in sorted(folder.iterdir()):
        if path.name in SKIPPED:
            continue
        if path.is_dir() and not path.is_symlink():
            yield from files_of(path)
        else:
            yield path


def folder_hash(folder: Path) -> str:
    """Content hash of a ``build:`` folder: names, modes and bytes of every file."""
    sha = hashlib.sha256()
    for path in files_of(folder):
        relative = path.relative_to(folder).as_posix()
        if path.is_symlink():
            sha.update(f"L {relative} {os.readlink(path)}\n".encode())
            continue
        sha.update(f"F {relative} {path.stat().st_mode & 0o777:o}\n".encode())
        with path.open("rb") as source:
            for chunk in iter(lambda: source.read(1 << 20), b""):
                sha.update(chunk)
    return sha.hexdigest()[:16]


def base_recipe(target: Path) -> list[str]:
    argv = ["mmdebstrap", "--variant=minbase", f"--include={','.join(BASE_INCLUDE)}"]
    argv += [f"--dpkgopt=path-exclude={pattern}" for pattern in BASE_EXCLUDE]
    return [*argv, SUITE, str(target)]


def ext4_size(used: int, free: int) -> int:
    """An ext4 image size in MiB for ``used`` bytes of files plus ``free`` bytes."""
    return max(32, (used * 13 // 10 + free) // (1 << 20) + 1)


def tree_size(folder: Path) -> int:
    total = 0
    for root, _, names in os.walk(folder):
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue
    return total


class Baker:
    """Bakes and caches; one bake of a given part at a time (in this process)."""

    def __init__(self, cache: Path | None = None) -> None:
        self.cache = cache or default_cache()
        self._locks: dict[str, asyncio.Lock] = {}

    def _make_cache(self) -> None:
        """The cache folder, private: service disks and snapshots hold the services' env."""
        self.cache.mkdir(parents=True, exist_ok=True)
        if self.cache.stat().st_mode & 0o077:
            self.cache.chmod(0o700)

    def _lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    # ---------------------------------------------------------------- keys

    def kernel_key(self) -> str:
        recipe = (kernel_config.config_args(), kernel_config.PATCHES)
        return digest(kernel_config.SOURCE_PACKAGE, "tinyconfig", recipe)

    def base_key(self) -> str:
        return digest(base_recipe(Path("-")))

    def service_key(self, inputs: ServiceInputs) -> str:
        content = folder_hash(inputs.build) if inputs.build is not None else None
        return digest(inputs.config(), content, self.init_key())

    def init_key(self) -> str:
        return digest(hashlib.sha256(GUEST_INIT.read_bytes()).hexdigest(), CC_FLAGS)

    def is_fresh(self, inputs: ServiceInputs) -> bool:
        """True when nothing needs baking for ``inputs`` (every part is in the cache)."""
        return (
            (self.cache / f"kernel-{self.kernel_key()}" / "vmlinux").exists()
            and (self.cache / f"init-{self.init_key()}" / "initramfs.cpio").exists()
            and (self.cache / f"base-{self.base_key()}.ext4").exists()
            and self.service_disk(inputs).exists()
        )

    # ---------------------------------------------------------------- baking

    async def bake(self, inputs: ServiceInputs, progress: Progress = _quiet) -> Image:
        """The image for ``inputs``, baking whatever part is missing from the cache."""
        kernel = await self.kernel(progress)
        init = await self.guest_init(progress)
        initrd = init.with_name("initramfs.cpio")
        root = await self.base(progress)
        service = await self.service(inputs, init, progress)
        key = digest(kernel.parent.name, root.name, service.name)
        return Image(key=key, kernel=kernel, initramfs=initrd, root=root, service=service)

    async def kernel(self, progress: Progress = _quiet) -> Path:
        """The guest kernel (built once per machine: see :mod:`shoal.runtimes.vm.kernel`)."""
        folder = self.cache / f"kernel-{self.kernel_key()}"
        async with self._lock(folder.name):
            if (folder / "vmlinux").exists():
                return folder / "vmlinux"
            started = time.monotonic()
            self._make_cache()
            with tempfile.TemporaryDirectory(dir=self.cache, prefix=".kernel-") as temp:
                image, release = await kernel_build.build(Path(temp), progress)
                out = Path(temp) / "out"
                out.mkdir()
                shutil.copyfile(image, out / "vmlinux")
                (out / "version").write_text(release + "\n")
                os.replace(out, folder)
            self._remove_others("kernel-*", folder, "kernel", progress)
            progress(f"vm: kernel {release} ready ({time.monotonic() - started:.0f}s)")
            return folder / "vmlinux"

    async def guest_init(self, progress: Progress = _quiet) -> Path:
        """The compiled guest init (once per source; a second of gcc), ``initramfs.cpio`` beside."""
        folder = self.cache / f"init-{self.init_key()}"
        async with self._lock(folder.name):
            if (folder / "initramfs.cpio").exists():
                return folder / "init"
            gcc = hosting.require("gcc")
            libc = (await commands.run([gcc, "-print-file-name=libc.a"])).strip()
            if not Path(libc).is_absolute():  # gcc echoes the bare name when it has none
                raise RuntimeNotAvailable(
                    "vm", "gcc has no static C library (on Debian: apt-get install libc6-dev)"
                )
            progress("vm: compiling the guest init (gcc -static)")
            self._make_cache()
            with tempfile.TemporaryDirectory(dir=self.cache, prefix=".init-") as temp:
                out = Path(temp) / "out"
                out.mkdir()
                await commands.run([gcc, *CC_FLAGS, "-o", str(out / "init"), str(GUEST_INIT)])
                archive = initramfs.newc(initramfs.entries((out / "init").read_bytes()))
                (out / "initramfs.cpio").write_bytes(archive)
                os.replace(out, folder)
            self._remove_others("init-*", folder, "guest init", progress)
            return folder / "init"

    def _remove_others(self, pattern: str, keep: Path, what: str, progress: Progress) -> None:
        """Remove the cache's other ``pattern`` entries: made by an earlier recipe or source
        (a running VM keeps its files open; a snapshot of an older image is not restored)."""
        for old in self.cache.glob(pattern):
            if old == keep:
                continue
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
            progress(f"vm: removed an older {what} ({old.name})")

    async def base(self, progress: Progress = _quiet) -> Path:
        target = self.cache / f"base-{self.base_key()}.ext4"
        async with self._lock(target.name):
            if target.exists():
                return target
            hosting.require("mmdebstrap")
            hosting.require("mkfs.ext4")
            if os.geteuid() != 0:
                raise RuntimeNotAvailable(
                    "vm",
                    "baking the base root filesystem needs root once (mmdebstrap keeps file "
                    "owners); run `sudo shoal build` or bake in CI as root",
                )
            started = time.monotonic()
            self._make_cache()
            with tempfile.TemporaryDirectory(dir=self.cache, prefix=".base-") as temp:
                tree = Path(temp) / "root"
                recipe = base_recipe(tree)
                progress(
                    f"vm: building the base root filesystem: {' '.join(recipe[:3])} ... "
                    "(about a minute, once per recipe)"
                )
                await commands.run(recipe)
                size = ext4_size(tree_size(tree), BASE_FREE)
                progress(f"vm: mkfs.ext4 -d: base image of {size} MiB")
                partial = Path(temp) / "base.ext4"
                await commands.run(_mkfs(tree, partial, size, "shoal-root"))
                os.replace(partial, target)
            self._remove_others("base-*.ext4", target, "base root filesystem", progress)
            progress(f"vm: base root filesystem ready ({time.monotonic() - started:.1f}s)")
            return target

    def service_disk(self, inputs: ServiceInputs) -> Path:
        return self.cache / f"service-{inputs.owner}-{self.service_key(inputs)}.ext4"

    def prune_services(self, owner: str, keep: int = KEEP_SERVICE_DISKS) -> list[Path]:
        """Remove ``owner``'s disks beyond the ``keep`` most recently used (baked or reused), and
        disks named by an earlier scheme (``service-<hash>.ext4``, no owner: never used now)."""
        for legacy in self.cache.glob("service-*.ext4"):
            if LEGACY_SERVICE_DISK.fullmatch(legacy.name):
                legacy.unlink(missing_ok=True)
        disks = sorted(
            self.cache.glob(f"service-{owner}-*.ext4"),
            key=lambda path: path.stat().st_mtime_ns,
            reverse=True,
        )
        for old in disks[keep:]:
            old.unlink(missing_ok=True)
        return disks[keep:]

    async def service(self, inputs: ServiceInputs, init: Path, progress: Progress = _quiet) -> Path:
        target = self.service_disk(inputs)
        async with self._lock(target.name):
            if target.exists():
                os.utime(target)  # recently used: kept by prune_services
                return target
            hosting.require("mkfs.ext4")
            started = time.monotonic()
            self._make_cache()
            with tempfile.TemporaryDirectory(dir=self.cache, prefix=".service-") as temp:
                tree = Path(temp) / "srv"
                app = tree / "app"
                if inputs.build is not None:
                    shutil.copytree(
                        inputs.build,
                        app,
                        symlinks=True,
                        ignore=shutil.ignore_patterns(*SKIPPED),
                    )
                else:
                    app.mkdir(parents=True)
                (tree / "shoal").mkdir()
                shutil.copy(init, tree / "shoal" / "init")
                write_settings(tree / "shoal", inputs)
                size = ext4_size(tree_size(tree), SERVICE_FREE)
                partial = Path(temp) / "service.ext4"
                await commands.run(_mkfs(tree, partial, size, "shoal-srv"))
                os.replace(partial, target)
            for old in self.prune_services(inputs.owner):
                progress(f"vm: removed {inputs.name}'s older disk {old.name}")
            progress(f"vm: baked {inputs.name} ({target.name}, {time.monotonic() - started:.1f}s)")
            return target


def write_settings(folder: Path, inputs: ServiceInputs) -> None:
    for name, data in inputs.settings().items():
        (folder / name).write_bytes(data)


def _mkfs(tree: Path, image: Path, size_mib: int, label: str) -> Sequence[str]:
    return [
        hosting.require("mkfs.ext4"),
        "-q",
        "-F",
        "-L",
        label,
        "-E",
        "root_owner=0:0",
        "-d",
        str(tree),
        str(image),
        f"{size_mib}M",
    ]


__all__ = [
    "Baker",
    "Image",
    "Progress",
    "ServiceInputs",
    "base_recipe",
    "default_cache",
    "digest",
    "ext4_size",
    "folder_hash",
]
