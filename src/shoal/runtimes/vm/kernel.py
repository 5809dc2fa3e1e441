"""Building the guest kernel: Debian's kernel source, shoal's minimal config, ``make vmlinux``.

:meth:`shoal.runtimes.vm.baking.Baker.kernel` calls :func:`build` when ``kernel-<hash>/vmlinux``
is missing from the cache (the hash is that of :mod:`shoal.runtimes.vm.kernel_config`): once per
machine. Each step is said through ``progress``:

1. ``apt-get download linux-source-6.1`` (about 140 MB; never installed), ``dpkg -x``, and
   ``tar`` (about 1.3 GB of source) into the caller's temporary folder;
2. shoal's source edits (:data:`~shoal.runtimes.vm.kernel_config.PATCHES`), ``make tinyconfig``,
   ``scripts/config`` with the recipe, ``make olddefconfig``, and a check that every wanted
   option survived (one whose dependency is off is dropped silently);
3. ``make -j<cpus> vmlinux``: several minutes on two cores, with a line every
   :data:`PROGRESS_EVERY` seconds saying how many files are compiled;
4. a check that the ELF has its PVH entry (:mod:`shoal.runtimes.vm.vmlinux`).

The caller removes the temporary folder, source tree included.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from shoal.errors import RuntimeNotAvailable
from shoal.runtimes.vm import commands, hosting, kernel_config, vmlinux

Progress = Callable[[str], None]

TOOLS = ("apt-get", "dpkg", "tar", "xz", "make", "gcc", "flex", "bison", "bc")
"""The tools the build runs (:data:`shoal.runtimes.vm.hosting.PACKAGES` names their packages)."""
LIBELF_HEADER = Path("/usr/include/gelf.h")
"""objtool, built and run by the kernel's build, needs libelf's headers (``libelf-dev``)."""
FILES = 1100
"""About how many files the recipe compiles (for the progress lines only)."""
PROGRESS_EVERY = 30.0


def require_tools() -> None:
    """:class:`RuntimeNotAvailable` naming every missing build tool and its package, at once."""
    missing: list[str] = []
    for tool in TOOLS:
        try:
            hosting.require(tool)
        except RuntimeNotAvailable:
            missing.append(tool)
    packages = [hosting.PACKAGES.get(tool, tool) for tool in missing]
    if not LIBELF_HEADER.exists():
        missing.append("libelf's headers")
        packages.append("libelf-dev")
    if missing:
        raise RuntimeNotAvailable(
            "vm",
            f"building the guest kernel needs {', '.join(missing)} "
            f"(on Debian: apt-get install {' '.join(packages)})",
        )


class Compiled:
    """Counts ``CC`` lines of a kernel build and says how far it got, now and then."""

    def __init__(self, progress: Progress, every: float = PROGRESS_EVERY) -> None:
        self.progress = progress
        self.every = every
        self.files = 0
        self.started = time.monotonic()
        self.said = self.started

    def line(self, line: str) -> None:
        if line.startswith("  CC "):
            self.files += 1
        now = time.monotonic()
        if now - self.said >= self.every:
            self.said = now
            self.progress(
                f"vm: building the guest kernel: {self.files} of about {FILES} files compiled "
                f"({now - self.started:.0f}s)"
            )


async def build(work: Path, progress: Progress) -> tuple[Path, str]:
    """Build the kernel in ``work`` (an empty folder): the ``vmlinux`` and its release name."""
    require_tools()
    package = kernel_config.SOURCE_PACKAGE
    progress(f"vm: downloading the kernel source ({package}, about 140 MB, apt-get download)")
    await commands.run(["apt-get", "download", package], cwd=work)
    deb = next(work.glob("*.deb"))
    await commands.run(["dpkg", "-x", str(deb), str(work / "package")])
    deb.unlink()
    tarball = next((work / "package" / "usr" / "src").glob("linux-source-*.tar.*"))
    progress("vm: unpacking the kernel source (tar, about 1.3 GB)")
    await commands.run(["tar", "-xaf", str(tarball), "-C", str(work)])
    shutil.rmtree(work / "package")
    tree = next(path for path in work.iterdir() if path.name.startswith("linux-source"))
    for relative, text, replacement in kernel_config.PATCHES:
        source = tree / relative
        try:
            source.write_text(kernel_config.patch(source.read_text(), text, replacement))
        except ValueError as exc:
            raise RuntimeNotAvailable(
                "vm", f"cannot apply shoal's edit to the kernel source's {relative}: {exc}"
            ) from exc
    make = ["make", "-C", str(tree), "ARCH=x86_64"]
    progress("vm: configuring the guest kernel (tinyconfig + shoal.runtimes.vm.kernel_config)")
    await commands.run([*make, "tinyconfig"])
    config = tree / ".config"
    await commands.run(
        [str(tree / "scripts" / "config"), "--file", str(config), *kernel_config.config_args()]
    )
    await commands.run([*make, "olddefconfig"])
    lost = kernel_config.missing(config.read_text())
    if lost:
        names = ", ".join(f"CONFIG_{option}" for option in lost)
        raise RuntimeNotAvailable(
            "vm", f"the guest kernel's config lost {names} (an option it depends on is off)"
        )
    jobs = os.cpu_count() or 1
    progress(
        f"vm: building the guest kernel (make -j{jobs} vmlinux, about {FILES} files: several "
        "minutes on 2 cores, once per machine)"
    )
    await commands.run([*make, f"-j{jobs}", "vmlinux"], lines=Compiled(progress).line)
    image = tree / "vmlinux"
    if not vmlinux.has_pvh_entry(image.read_bytes()):
        raise RuntimeNotAvailable("vm", f"{image} has no PVH entry note (CONFIG_PVH is off)")
    release = (tree / "include" / "config" / "kernel.release").read_text().strip()
    return image, release


__all__ = ["FILES", "TOOLS", "Compiled", "build", "require_tools"]
