"""Cutting a stream of output bytes into lines: pure, so every edge is tested cheaply.

The tailer (:mod:`shoal.logs.tailing`) feeds whatever bytes it read from a raw output file;
:class:`LineSplitter` returns the complete lines and keeps the unfinished last one until its
newline arrives (or the source ends: :meth:`LineSplitter.flush`). A line longer than
``max_line`` bytes is cut into pieces of at most that size, never inside a UTF-8 character, so a
program that prints megabytes without a newline cannot make shoal hold them in memory.

It also counts the bytes it has *consumed* (turned into lines): the tailer's saved offset is
exactly that, so after a restart reading resumes at the start of the unfinished line.
"""

from __future__ import annotations

DEFAULT_MAX_LINE = 64 * 1024
"""Bytes: longer lines are split into pieces of this size."""


def decode_line(raw: bytes) -> str:
    """A line's text: UTF-8 (undecodable bytes become U+FFFD), without a trailing CR."""
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    return raw.decode("utf-8", "replace")


def cut_point(data: bytes | bytearray, limit: int) -> int:
    """Where to cut ``data`` (longer than ``limit``) so no UTF-8 character is split."""
    cut = limit
    for back in range(4):
        if cut - back <= 0:
            break
        if data[cut - back] & 0xC0 != 0x80:  # not a continuation byte: a character starts here
            return cut - back
    return cut


class LineSplitter:
    """Bytes in, complete lines out; remembers the unfinished line."""

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        if max_line < 4:
            raise ValueError(f"max_line must be at least 4 bytes, not {max_line}")
        self.max_line = max_line
        self._pending = bytearray()

    @property
    def pending(self) -> int:
        """Bytes of the unfinished last line held back."""
        return len(self._pending)

    def feed(self, data: bytes) -> tuple[list[bytes], int]:
        """The complete lines (without ``\\n``) that ``data`` finishes, and how many bytes they
        took, counted from the start of the held-back line."""
        self._pending += data
        buffer = self._pending
        lines: list[bytes] = []
        start = 0
        while True:
            newline = buffer.find(b"\n", start)
            if newline < 0:
                break
            self._add(lines, buffer, start, newline)
            start = newline + 1
        while len(buffer) - start > self.max_line:
            cut = start + cut_point(buffer[start : start + self.max_line + 1], self.max_line)
            lines.append(bytes(buffer[start:cut]))
            start = cut
        del buffer[:start]
        return lines, start

    def flush(self) -> tuple[list[bytes], int]:
        """The unfinished line as a last line (the source ended), and its length."""
        if not self._pending:
            return [], 0
        line = bytes(self._pending)
        self._pending.clear()
        return [line], len(line)

    def reset(self) -> None:
        """Forget the unfinished line (its bytes will be read again)."""
        self._pending.clear()

    def _add(self, lines: list[bytes], buffer: bytearray, start: int, end: int) -> None:
        while end - start > self.max_line:
            cut = start + cut_point(buffer[start : start + self.max_line + 1], self.max_line)
            lines.append(bytes(buffer[start:cut]))
            start = cut
        lines.append(bytes(buffer[start:end]))


__all__ = ["DEFAULT_MAX_LINE", "LineSplitter", "cut_point", "decode_line"]
