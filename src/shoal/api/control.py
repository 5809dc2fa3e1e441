"""What the control API needs from the daemon: one Protocol, implemented in ``shoal.daemon``.

The API layer turns HTTP into calls on a :class:`ControlPlane` and results into JSON; it does
not know how the daemon is put together.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from shoal.api.models import (
    DeadLetter,
    InstanceRow,
    InvokeResult,
    JobRow,
    JobRunRow,
    LogLine,
    RunStarted,
    Status,
    TopicRow,
)


class ControlPlane(Protocol):
    def status(self) -> Status: ...

    def instances(self) -> list[InstanceRow]: ...

    def read_logs(
        self, sources: list[str] | None, since: float | None, tail: int | None
    ) -> list[LogLine]: ...

    def follow_logs(self, sources: list[str] | None) -> AsyncIterator[LogLine]: ...

    def scale(self, name: str, replicas: int) -> str | None: ...  # a note for the user

    async def invoke(self, name: str, event: Any) -> InvokeResult: ...

    def restart(self, name: str) -> None: ...

    async def invoke_async(self, name: str, event: Any) -> int:
        """Queue an asynchronous invocation (durable); its message id."""
        ...

    async def publish(self, topic: str, payload: bytes) -> list[int]:
        """Store an event durably on ``topic``; UsageError if it is not JSON."""
        ...

    async def publish_batch(self, topic: str, payload: bytes) -> list[int]:
        """Store a JSON array of events on ``topic`` in one transaction."""
        ...

    async def topics(self) -> list[TopicRow]: ...

    async def dead_letters(self, topic: str) -> list[DeadLetter]: ...

    async def redrive(self, topic: str) -> int: ...

    def jobs(self) -> list[JobRow]: ...

    def job_runs(self, name: str, limit: int) -> list[JobRunRow]: ...

    def run_job(self, name: str) -> RunStarted: ...

    def apply(self) -> dict[str, str]:
        """Re-read the manifest file; raises ManifestError when it is invalid."""
        ...

    def request_shutdown(self) -> None: ...

    def metrics(self) -> str:
        """Prometheus text exposition."""
        ...


__all__ = ["ControlPlane"]
