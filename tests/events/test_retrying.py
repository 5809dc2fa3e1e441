"""The retry policy: exponential backoff, retries counted after the first delivery, then give up."""

from __future__ import annotations

import pytest

from shoal.errors import UsageError
from shoal.events.bus import check_json
from shoal.events.retrying import LAMBDA_ASYNC_RETRIES, Backoff, GiveUp, Retry, after_failure


def test_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff(initial=1.0, factor=2.0, max=10.0)
    assert [backoff.delay(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert Backoff().delay(10_000) == 60.0  # no overflow far out
    with pytest.raises(ValueError, match="numbered from 1"):
        backoff.delay(0)


def test_retries_count_deliveries_after_the_first() -> None:
    backoff = Backoff(initial=1.0, factor=2.0, max=60.0)
    first = after_failure(1, retries=2, now=100.0, error="boom", backoff=backoff)
    second = after_failure(2, retries=2, now=200.0, error="boom", backoff=backoff)
    third = after_failure(3, retries=2, now=300.0, error="boom", backoff=backoff)
    assert first == Retry(visible_at=101.0, retry=1)
    assert second == Retry(visible_at=202.0, retry=2)
    assert isinstance(third, GiveUp) and "failed 3 deliveries" in third.error
    assert "boom" in third.error


def test_no_retries_gives_up_at_once_and_lambda_retries_twice() -> None:
    assert isinstance(after_failure(1, retries=0, now=0.0, error="x"), GiveUp)
    assert LAMBDA_ASYNC_RETRIES == 2
    with pytest.raises(ValueError, match="at least once"):
        after_failure(0, retries=2, now=0.0, error="x")


def test_check_json_refuses_what_sqlite_would_refuse() -> None:
    assert check_json(b'{"a": [1, 2]}') == '{"a": [1, 2]}'
    for bad in (b"{nope", b"NaN", b'{"a": Infinity}', b""):
        with pytest.raises(UsageError, match="not JSON"):
            check_json(bad)
