"""One log line as shoal keeps it, and its text form in the log files: all pure.

The log store stamps every line of an instance's output (and every line shoal writes itself)
as a :class:`LogRecord`, writes it to the source's log file in the form below, and hands the
same record to live subscribers; ``read`` parses the files back.

File format, one record per line, UTF-8::

    2024-05-01T12:00:00.123456Z out listening on :8080
    2024-05-01T12:00:03.500000Z shoal exited with code 1

the time (UTC, ISO 8601, always microseconds and ``Z``: fixed width, so files sort and ``grep``
well), one space, the stream, one space, the text to the end of the line. Streams: ``out`` is
the instance's own output (stdout and stderr share one file descriptor, so they are not told
apart), ``shoal`` a line shoal wrote (events, access log, ``REPORT`` lines). Live streams may
also carry ``dropped``: a marker that a slow reader missed lines; it is never written.

Times are whole microseconds (:func:`quantize`), so a record read back from a file compares
equal to the one that was streamed live.
"""

from __future__ import annotations

import calendar
import functools
import time
from dataclasses import dataclass
from typing import Literal

Stream = Literal["out", "shoal", "dropped"]
STREAMS: dict[str, Stream] = {"out": "out", "shoal": "shoal", "dropped": "dropped"}
_TIME_WIDTH = len("2024-05-01T12:00:00.123456Z")


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One line of a source's log. ``time`` is when the log store read (or was given) it, in
    epoch seconds; ``text`` has no line break."""

    source: str
    time: float
    text: str
    stream: Stream = "out"


def quantize(seconds: float) -> float:
    """``seconds`` rounded to whole microseconds, the precision of the files."""
    return round(seconds * 1_000_000) / 1_000_000


def format_time(seconds: float) -> str:
    """``2024-05-01T12:00:00.123456Z`` for a (quantized) epoch time."""
    micros = round(seconds * 1_000_000)
    whole, fraction = divmod(micros, 1_000_000)
    return f"{_second_text(whole)}.{fraction:06d}Z"


@functools.lru_cache(maxsize=4)
def _second_text(whole: int) -> str:  # strftime once per second: lines come many to a second
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))


def parse_time(text: str) -> float:
    """The epoch seconds of a :func:`format_time` string; ValueError if it is not one."""
    if len(text) != _TIME_WIDTH or text[10] != "T" or text[19] != "." or text[-1] != "Z":
        raise ValueError(f"not a log time: {text!r}")
    fields = (text[0:4], text[5:7], text[8:10], text[11:13], text[14:16], text[17:19])
    whole = calendar.timegm((*tuple(int(f) for f in fields), 0, 0, 0))
    return (whole * 1_000_000 + int(text[20:26])) / 1_000_000


def format_record(record: LogRecord) -> str:
    """The record's line in its source's log file, with the trailing newline."""
    return f"{format_time(record.time)} {record.stream} {record.text}\n"


def parse_record(source: str, line: str) -> LogRecord | None:
    """The record on one line of ``source``'s log file; None for a line that is not one (a
    torn last line, or a file that is not a shoal log)."""
    if not line.endswith("\n"):
        return None
    stamp, _, rest = line[:-1].partition(" ")
    name, separator, text = rest.partition(" ")
    stream = STREAMS.get(name)
    if not separator or stream is None:
        return None
    try:
        seconds = parse_time(stamp)
    except ValueError:
        return None
    return LogRecord(source=source, time=seconds, text=text, stream=stream)


__all__ = [
    "STREAMS",
    "LogRecord",
    "Stream",
    "format_record",
    "format_time",
    "parse_record",
    "parse_time",
    "quantize",
]
