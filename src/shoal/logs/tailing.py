"""Following one raw output file: read what is new, remember how far, free what was read.

The log store keeps one :class:`Tail` per registered source and, on every tick of its tailer
task, asks it for the complete lines written since the last tick. A Tail owns three things:

- the **offset**: the first byte of the raw file not yet turned into log records. It is saved
  in ``<raw file>.offset`` (written to a temporary file, then renamed over) after the records
  are written, so a daemon killed with -9 resumes exactly there, repeating at most the batch
  it had not saved yet and losing nothing. An unfinished last line is not consumed: after a
  restart it is read again from its start.
- the **splitter** (:mod:`shoal.logs.splitting`): the unfinished line, held in memory.
- the **holes**: after the offset is saved, the consumed bytes are punched out of the raw file
  (:mod:`shoal.logs.punching`), whole file-system blocks at a time. Where holes cannot be
  punched, the raw file is left to grow and is deleted when its source is unregistered for good.

Reads are bounded per tick (``budget``) so one chatty instance cannot stall the others.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from pathlib import Path

from shoal.logs import punching
from shoal.logs.splitting import LineSplitter

logger = logging.getLogger(__name__)

READ_CHUNK = 256 * 1024
"""Bytes per read(2)."""


def offset_path(raw_path: Path) -> Path:
    """Where the saved offset of ``raw_path`` lives: beside it, ``<name>.offset``."""
    return raw_path.with_name(raw_path.name + ".offset")


def load_offset(path: Path) -> int | None:
    """The saved offset, or None when there is none (or it is unreadable)."""
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def save_offset(path: Path, offset: int) -> None:
    """Replace the saved offset atomically: a reader sees the old value or the new one."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(f"{offset}\n")
    os.replace(temporary, path)


class Tail:
    """One raw output file being followed."""

    def __init__(
        self, source: str, raw_path: Path, *, max_line: int, offset: int | None = None
    ) -> None:
        self.source = source
        self.raw_path = raw_path
        self.offset_path = offset_path(raw_path)
        saved = load_offset(self.offset_path)
        self._resume_unknown = offset is None and saved is None
        self.offset = offset if offset is not None else (saved or 0)
        self._saved = saved
        self.splitter = LineSplitter(max_line)
        self._fd: int | None = None
        self._punched = 0
        self.can_punch: bool | None = None  # None: not tried yet

    def read(self, budget: int | None) -> list[bytes]:
        """The complete lines that appeared since the last call (up to ``budget`` bytes read)."""
        fd = self._open()
        if fd is None:
            return []
        size = os.fstat(fd).st_size
        position = self.offset + self.splitter.pending
        if size < position:
            logger.warning(
                "[%s] %s shrank below the read offset %d: reading it again from the start",
                self.source,
                self.raw_path,
                position,
            )
            self.offset = self._punched = 0
            self.splitter.reset()
            position = 0
        lines: list[bytes] = []
        left = budget if budget is not None else size
        while position < size and left > 0:
            data = os.pread(fd, min(READ_CHUNK, size - position, left), position)
            if not data:
                break
            position += len(data)
            left -= len(data)
            new, consumed = self.splitter.feed(data)
            self.offset += consumed
            lines.extend(new)
        return lines

    def finish(self) -> list[bytes]:
        """The unfinished last line as a line of its own: the source has ended."""
        lines, consumed = self.splitter.flush()
        self.offset += consumed
        return lines

    def commit(self) -> None:
        """Save the offset, then free the consumed blocks (in that order: never free what a
        restarted daemon would still read)."""
        if self.offset != self._saved:
            save_offset(self.offset_path, self.offset)
            self._saved = self.offset
        if self._fd is None or self.can_punch is False:
            return
        block = os.fstat(self._fd).st_blksize or 4096
        end = self.offset - self.offset % block
        if end <= self._punched:
            return
        self.can_punch = punching.punch_hole(self._fd, self._punched, end - self._punched)
        if self.can_punch:
            self._punched = end
        else:
            logger.info(
                "[%s] the file system of %s cannot punch holes: the raw file grows until its "
                "instance ends",
                self.source,
                self.raw_path,
            )

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def remove_files(self) -> None:
        """Delete the raw file and its saved offset (the source has ended and is drained)."""
        self.close()
        for path in (self.raw_path, self.offset_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _open(self) -> int | None:
        if self._fd is not None:
            return self._fd
        try:
            # read-write: punching a hole needs a writable descriptor; nothing is written.
            self._fd = os.open(self.raw_path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return None  # the instance has not started writing yet
        if self._resume_unknown:
            self._resume_unknown = False
            self.offset = _first_data(self._fd)
        return self._fd


def _first_data(fd: int) -> int:
    """Where the first non-hole byte is: with no saved offset, bytes in holes were read."""
    try:
        return os.lseek(fd, 0, os.SEEK_DATA)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # no data at all: all hole, or empty
            return os.fstat(fd).st_size
        return 0


__all__ = ["READ_CHUNK", "Tail", "load_offset", "offset_path", "save_offset"]
