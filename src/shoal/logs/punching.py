"""Freeing the part of a raw output file the tailer has read, while the child keeps writing.

An instance appends to its raw file (``O_APPEND``) for as long as it runs, and the file cannot
be truncated or rotated under it without losing or interleaving output. Instead, the tailer
*punches a hole* over the bytes it has consumed: ``fallocate(FALLOC_FL_PUNCH_HOLE |
FALLOC_FL_KEEP_SIZE)`` gives those blocks back to the file system while the file keeps its
length, so the writer's offsets never move. The apparent size (``st_size``) keeps growing; the
disk use (``st_blocks``) stays at about what has not been read yet.

ext4, xfs, btrfs and tmpfs support it (Linux >= 3.5); where a file system does not, the tailer
leaves the raw file alone and deletes it once its instance has ended and it is drained.

Python has no ``fallocate`` with modes, so libc's is called through :mod:`ctypes`.
"""

from __future__ import annotations

import ctypes
import errno
import os
from functools import cache

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
UNSUPPORTED = frozenset({errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL})


class _Fallocate:
    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.function = libc.fallocate
        self.function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
        self.function.restype = ctypes.c_int


@cache
def _fallocate() -> _Fallocate | None:
    try:
        return _Fallocate()
    except (OSError, AttributeError):  # no libc symbol (not glibc/musl): treat as unsupported
        return None


def punch_hole(fd: int, offset: int, length: int) -> bool:
    """Deallocate ``length`` bytes at ``offset`` of ``fd``, keeping the file's size.

    True when done; False when this file system (or libc) cannot punch holes. Other failures
    (a closed fd, an I/O error) raise :class:`OSError`.
    """
    if length <= 0:
        return True
    fallocate = _fallocate()
    if fallocate is None:
        return False
    mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
    if fallocate.function(fd, mode, offset, length) == 0:
        return True
    code = ctypes.get_errno()
    if code in UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code))


def disk_usage(path: os.PathLike[str] | str) -> int:
    """Bytes the file occupies on disk (``st_blocks`` are 512-byte units on Linux)."""
    return os.stat(path).st_blocks * 512


__all__ = ["FALLOC_FL_KEEP_SIZE", "FALLOC_FL_PUNCH_HOLE", "disk_usage", "punch_hole"]
