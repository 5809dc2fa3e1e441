"""A source's log file, rotated by size: ``catalog#2.log``, then ``.log.1`` ... ``.log.<keep>``.

The log store writes every stamped record of a source through one :class:`RotatingLog` and reads
them back with :func:`read_records`. When the next record would take ``catalog#2.log`` past
``max_bytes``, the file becomes ``catalog#2.log.1`` (older ones shift up, the oldest beyond
``keep`` is deleted) and a new one begins. A record is never split across two files.

Writes are plain ``write(2)`` calls on an ``O_APPEND`` descriptor, no user-space buffer: once
:meth:`RotatingLog.write` returns, a reader (and a daemon restarted after ``kill -9``) sees the
lines. They are not fsynced: a power cut may lose the last seconds, a crash of shoal does not.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterable
from pathlib import Path

from shoal.logs.records import LogRecord, format_record, parse_record

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
"""Bytes per log file before it rotates (10 MiB)."""
DEFAULT_KEEP = 5
"""Rotated files kept per source, besides the current one."""


def rotated_paths(path: Path, keep: int) -> list[Path]:
    """The files of one log, oldest first: ``.log.<keep>`` ... ``.log.1``, ``.log``."""
    return [path.with_name(f"{path.name}.{n}") for n in range(keep, 0, -1)] + [path]


class RotatingLog:
    """Appends records to one source's log file, rotating it by size."""

    def __init__(self, path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, keep: int = DEFAULT_KEEP):
        if max_bytes < 1 or keep < 0:
            raise ValueError(f"need max_bytes >= 1 and keep >= 0, not {max_bytes} and {keep}")
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self._fd: int | None = None
        self._size = 0

    def write(self, records: Iterable[LogRecord]) -> None:
        """Append ``records`` in order, rotating between two of them where the size says."""
        batch = bytearray()
        for record in records:
            data = format_record(record).encode("utf-8", "replace")
            if self._size + len(batch) + len(data) > self.max_bytes and self._size + len(batch):
                self._flush(batch)
                self._rotate()
            batch += data
        self._flush(batch)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
            self._fd = os.open(self.path, flags, 0o640)
            self._size = os.fstat(self._fd).st_size
        return self._fd

    def _flush(self, batch: bytearray) -> None:
        if not batch:
            return
        fd = self._open()
        data = bytes(batch)
        batch.clear()
        self._size += len(data)
        while data:  # a regular file takes it all at once; loop for the rule's sake
            data = data[os.write(fd, data) :]

    def _rotate(self) -> None:
        self.close()
        files = rotated_paths(self.path, self.keep)
        if self.keep == 0:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        else:
            with contextlib.suppress(FileNotFoundError):
                files[0].unlink()
            for older, newer in itertools.pairwise(files):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(newer, older)
        self._size = 0


def read_records(
    source: str,
    path: Path,
    keep: int,
    *,
    since: float | None = None,
    tail: int | None = None,
) -> list[LogRecord]:
    """The records of one source's log files in file order; only those at or after ``since``,
    and only the last ``tail`` of them. Newest files are read first and reading stops as soon
    as ``tail`` records, or a record older than ``since``, make older files unnecessary."""
    chunks: list[list[LogRecord]] = []
    count = 0
    for file in reversed(rotated_paths(path, keep)):
        try:
            with file.open("r", encoding="utf-8", errors="replace", newline="\n") as handle:
                lines = handle.readlines()
        except FileNotFoundError:
            continue
        records = [r for r in (parse_record(source, line) for line in lines) if r is not None]
        if since is not None:
            whole = len(records)
            records = [r for r in records if r.time >= since]
            older_exist = len(records) < whole
        else:
            older_exist = False
        chunks.append(records)
        count += len(records)
        if older_exist or (tail is not None and count >= tail):
            break
    result = [record for chunk in reversed(chunks) for record in chunk]
    if tail is not None:
        result = result[-tail:] if tail > 0 else []
    return result


__all__ = ["DEFAULT_KEEP", "DEFAULT_MAX_BYTES", "RotatingLog", "read_records", "rotated_paths"]
