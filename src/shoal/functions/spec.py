"""What a function pool runs: one function's settings, resolved from the manifest. Pure.

:class:`FunctionSpec` is the manifest's ``functions.NAME`` entry
(``shoal.manifest.schema.Function``) with paths made absolute against the manifest's folder
and sizes in bytes, so the pool never needs the manifest. Tests build one directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shoal.manifest.schema import Function


@dataclass(frozen=True, kw_only=True)
class FunctionSpec:
    """One function: its handler, limits and scaling (the manifest's keys, DESIGN.md §2)."""

    name: str
    handler_file: Path  # absolute path of the handler's .py file
    handler_function: str = "handler"
    memory_bytes: int = 128 << 20  # per instance; a cgroup enforces it where the machine can
    timeout: float = 3.0  # seconds an invocation may run before its instance is killed
    concurrency: int = 1  # invocations one instance takes at once (threads when > 1)
    min_instances: int = 0  # kept warm
    max_instances: int = 100  # beyond: queue, then throttle
    idle_timeout: float = 60.0  # seconds after its last invocation an idle instance stops
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: Path | None = None  # the handler's folder when None (Lambda's task root)

    def __post_init__(self) -> None:
        if not self.handler_file.is_absolute():
            raise ValueError(f"handler_file must be absolute, not {self.handler_file}")
        if self.concurrency < 1 or self.max_instances < 1:
            raise ValueError("concurrency and max_instances must be at least 1")
        if not 0 <= self.min_instances <= self.max_instances:
            raise ValueError("min_instances must be between 0 and max_instances")
        if self.timeout <= 0 or self.idle_timeout < 0:
            raise ValueError("timeout must be positive and idle_timeout not negative")

    @property
    def memory_mb(self) -> int:
        """Memory in MiB, as Lambda's ``Memory Size`` and ``memory_limit_in_mb`` say it."""
        return self.memory_bytes >> 20

    @property
    def handler(self) -> str:
        """``thumbnail.handler``: Lambda's handler string (``_HANDLER``)."""
        return f"{self.handler_file.stem}.{self.handler_function}"

    @property
    def task_root(self) -> Path:
        """Where the handler runs (its working directory)."""
        return self.workdir if self.workdir is not None else self.handler_file.parent

    @classmethod
    def from_manifest(cls, name: str, function: Function, base_dir: Path) -> FunctionSpec:
        """The spec of the manifest's ``functions.NAME``; paths relative to ``base_dir``."""
        return cls(
            name=name,
            handler_file=(base_dir / function.handler_file).resolve(),
            handler_function=function.handler_function,
            memory_bytes=function.memory,
            timeout=function.timeout,
            concurrency=function.concurrency,
            min_instances=function.min_instances,
            max_instances=function.max_instances,
            idle_timeout=function.idle_timeout,
            env=dict(function.env),
        )


__all__ = ["FunctionSpec"]
