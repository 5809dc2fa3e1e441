"""What to do when a job run is due, and how a run ended: pure decisions, no I/O.

The launcher (:mod:`shoal.scheduler.launching`) asks :func:`on_due` with the runs of the job
still running and the job's ``concurrency_policy`` (Kubernetes CronJob's words):

* ``allow``: start another run beside the running ones;
* ``forbid``: skip this run while one is running (the skip is recorded, as CronJob does);
* ``replace``: stop the running ones, then start the new run.

:func:`run_outcome` turns how the process ended into the exit code and reason kept in the run
history, and :func:`should_retry` says whether a failed run is started again (``retries``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Policy = Literal["allow", "forbid", "replace"]


@dataclass(frozen=True, slots=True)
class Due:
    """The decision for one due run: start it or not, and which running runs to stop first."""

    start: bool
    stop: tuple[int, ...] = ()
    reason: str = ""


def on_due(policy: Policy, running: Sequence[int]) -> Due:
    """``running``: ids of the job's runs that have not finished."""
    if not running or policy == "allow":
        return Due(start=True)
    if policy == "forbid":
        ids = ", ".join(f"#{r}" for r in running)
        return Due(start=False, reason=f"skipped: run {ids} still running (forbid)")
    return Due(start=True, stop=tuple(running), reason="replaced by a newer run")


@dataclass(frozen=True, slots=True)
class Outcome:
    exit_code: int | None
    reason: str
    success: bool


def run_outcome(
    exit_code: int | None,
    exit_reason: str,
    *,
    timed_out: bool = False,
    timeout_s: float | None = None,
    replaced: bool = False,
) -> Outcome:
    """The history entry of a finished run, from how its process ended."""
    if timed_out:
        return Outcome(exit_code, f"timed out after {timeout_s:g}s and was stopped", False)
    if replaced:
        return Outcome(exit_code, "replaced by a newer run (replace)", False)
    if exit_code == 0:
        return Outcome(0, "completed", True)
    return Outcome(exit_code, exit_reason or f"exited with code {exit_code}", False)


def should_retry(outcome: Outcome, attempt: int, retries: int) -> bool:
    """Start a failed run again? ``attempt`` is 1 for the first run of a due time."""
    return not outcome.success and attempt <= retries and "replaced" not in outcome.reason


__all__ = ["Due", "Outcome", "Policy", "on_due", "run_outcome", "should_retry"]
