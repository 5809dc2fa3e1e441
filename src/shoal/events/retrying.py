"""What to do with a delivery that failed: the pure retry policy of the event bus.

The deliverer (:mod:`shoal.events.delivering`) asks :func:`after_failure` once per failed
message, with how many times it was delivered; the answer is to make it visible again after an
exponential backoff, or to give up and move it to the dead-letter topic. No clock, no I/O.

``retries`` counts deliveries *after* the first (as Lambda's ``MaximumRetryAttempts`` and the
manifest's ``retries`` do): with ``retries: 2`` a message is delivered at most 3 times.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry ``n`` (1-based): ``initial * factor**(n-1)``, at most ``max``."""

    initial: float = 1.0  # seconds before the first retry
    factor: float = 2.0
    max: float = 60.0  # seconds; the longest wait between two deliveries

    def delay(self, retry: int) -> float:
        if retry < 1:
            raise ValueError(f"retries are numbered from 1, got {retry}")
        exponent = min(retry - 1, 64)  # past 2**64 the cap has long been reached
        return float(min(self.max, self.initial * self.factor**exponent))


LAMBDA_ASYNC_RETRIES = 2
"""Lambda retries a failed asynchronous invocation twice (``MaximumRetryAttempts`` = 2)."""


@dataclass(frozen=True, slots=True)
class Retry:
    """Deliver again at ``visible_at``."""

    visible_at: float
    retry: int  # which retry this is (1 = the first)
    kind: Literal["retry"] = "retry"


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Every retry failed: dead-letter the message with this error."""

    error: str
    kind: Literal["give_up"] = "give_up"


Decision = Retry | GiveUp


def after_failure(
    attempts: int, retries: int, now: float, error: str, backoff: Backoff = Backoff()
) -> Decision:
    """The message was delivered ``attempts`` times (this failure included) and failed."""
    if attempts < 1:
        raise ValueError(f"a failed message was delivered at least once, got {attempts}")
    if attempts > retries:
        return GiveUp(f"failed {attempts} deliveries; last error: {error}")
    return Retry(visible_at=now + backoff.delay(attempts), retry=attempts)


__all__ = ["LAMBDA_ASYNC_RETRIES", "Backoff", "Decision", "GiveUp", "Retry", "after_failure"]
