"""Durations and sizes: parsing, formatting, and the messages for bad values."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.manifest.units import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("100ms", 0.1),
        ("1m30s", 90.0),
        ("1.5s", 1.5),
        ("2h", 7200.0),
        ("7d", 604800.0),
        ("250us", 0.00025),
        ("1h1m1s1ms", 3661.001),
        ("0", 0.0),
        (0, 0.0),
    ],
)
def test_durations_parse(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("30", "not a duration"),
        (30, "has no unit; write 30s"),
        ("1m30", "not a duration"),
        ("-1s", "not a duration"),
        ("10 s", "not a duration"),
        (True, "not a duration"),
        ([1], "expected a duration"),
        ("5y", "not a duration"),
    ],
)
def test_bad_durations_say_what_to_write(value: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_duration(value)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("128M", 128 << 20),
        ("128Mi", 128 << 20),
        ("128MB", 128 << 20),
        ("1Gi", 1 << 30),
        ("512k", 512 << 10),
        ("1.5G", 3 << 29),
        ("100", 100),
        (4096, 4096),
        ("2TiB", 2 << 40),
    ],
)
def test_sizes_parse(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("value", ["12X", "M", "-1M", "1.5", 1.5, True, None, "1e9999G"])
def test_bad_sizes(value: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(value)


def test_formatting_is_readable() -> None:
    assert format_duration(90) == "1m30s"
    assert format_duration(0.1) == "100ms"
    assert format_duration(0) == "0s"
    assert format_duration(86400 * 7) == "7d"
    assert format_size(128 << 20) == "128Mi"
    assert format_size(1000) == "1000"


@given(st.integers(min_value=0, max_value=10**7), st.sampled_from(["ms", "s", "m", "h", "d"]))
def test_duration_round_trips(amount: int, unit: str) -> None:
    seconds = parse_duration(f"{amount}{unit}")
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, rel=1e-9, abs=1e-6)


@given(st.integers(min_value=0, max_value=2**50))
def test_size_round_trips(size: int) -> None:
    assert parse_size(format_size(size)) == size
