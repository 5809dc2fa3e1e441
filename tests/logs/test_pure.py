"""The pure parts of the log store: the record format and line splitting."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.logs.records import (
    LogRecord,
    format_record,
    format_time,
    parse_record,
    parse_time,
    quantize,
)
from shoal.logs.splitting import LineSplitter, cut_point, decode_line


def test_time_format() -> None:
    assert format_time(0.0) == "1970-01-01T00:00:00.000000Z"
    assert format_time(1_714_564_800.123456) == "2024-05-01T12:00:00.123456Z"
    assert parse_time("2024-05-01T12:00:00.123456Z") == quantize(1_714_564_800.123456)
    for bad in ("2024-05-01 12:00:00.123456Z", "2024-05-01T12:00:00Z", "x" * 27):
        with pytest.raises(ValueError, match="not a log time"):
            parse_time(bad)


@given(
    seconds=st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False),
    text=st.text(alphabet=st.characters(blacklist_characters="\n\r", codec="utf-8")),
    stream=st.sampled_from(["out", "shoal"]),
)
def test_records_round_trip(seconds: float, text: str, stream: str) -> None:
    record = LogRecord("catalog#2", quantize(seconds), text, stream)  # type: ignore[arg-type]
    line = format_record(record)
    assert line.endswith("\n") and line.count("\n") == 1
    assert parse_record("catalog#2", line) == record


def test_lines_that_are_not_records() -> None:
    good = "2024-05-01T12:00:00.123456Z out hello\n"
    assert parse_record("s", good) == LogRecord("s", parse_time(good[:27]), "hello", "out")
    assert parse_record("s", good[:-1]) is None  # torn: no newline yet
    assert parse_record("s", "2024-05-01T12:00:00.123456Z loud hello\n") is None
    assert parse_record("s", "yesterday out hello\n") is None
    assert parse_record("s", "2024-05-01T12:00:00.123456Z\n") is None
    assert parse_record("s", "2024-05-01T12:00:00.123456Z out \n") == LogRecord(
        "s", parse_time(good[:27]), "", "out"
    )


def test_splitter_keeps_the_unfinished_line() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"one\ntw") == ([b"one"], 4)
    assert splitter.pending == 2
    assert splitter.feed(b"o\r\nthree") == ([b"two\r"], 5)
    assert splitter.feed(b"") == ([], 0)
    assert splitter.flush() == ([b"three"], 5)
    assert splitter.flush() == ([], 0)


def test_splitter_cuts_long_lines() -> None:
    splitter = LineSplitter(max_line=4)
    assert splitter.feed(b"abcdefghij\nxy") == ([b"abcd", b"efgh", b"ij"], 11)
    assert splitter.feed(b"zzzzzz") == ([b"xyzz"], 4)  # an endless line is cut too
    assert splitter.pending == 4


def test_cuts_never_split_a_character() -> None:
    text = "é" * 10  # two bytes each
    splitter = LineSplitter(max_line=5)
    lines, _ = splitter.feed(text.encode() + b"\n")
    assert all(len(line) <= 5 for line in lines)
    assert "".join(line.decode("utf-8") for line in lines) == text
    assert cut_point("aé".encode(), 2) == 1


@given(
    data=st.binary(max_size=300),
    cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=8),
    max_line=st.integers(min_value=4, max_value=40),
)
def test_splitting_in_chunks_loses_and_invents_nothing(
    data: bytes, cuts: list[int], max_line: int
) -> None:
    splitter = LineSplitter(max_line=max_line)
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    lines: list[bytes] = []
    consumed = 0
    for start, end in itertools.pairwise(bounds):
        new, used = splitter.feed(data[start:end])
        lines += new
        consumed += used
    new, used = splitter.flush()
    lines += new
    consumed += used
    assert consumed == len(data)
    assert all(len(line) <= max_line for line in lines)
    assert b"".join(lines) == data.replace(b"\n", b"")
    whole = LineSplitter(max_line=max_line)
    once, _ = whole.feed(data)
    assert lines[: len(once)] == once  # chunking does not change where lines are cut


def test_decode_line() -> None:
    assert decode_line(b"caf\xc3\xa9\r") == "café"
    assert decode_line(b"bad \xff byte") == "bad \ufffd byte"
    with pytest.raises(ValueError, match="at least 4"):
        LineSplitter(max_line=2)
