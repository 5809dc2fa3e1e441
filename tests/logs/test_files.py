"""The log store's files: rotation, hole punching, saved offsets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shoal.logs import punching
from shoal.logs.records import LogRecord
from shoal.logs.rotating import RotatingLog, read_records, rotated_paths
from shoal.logs.tailing import Tail, load_offset, offset_path, save_offset

MiB = 1024 * 1024


def records(source: str, start: int, count: int, text: str = "line") -> list[LogRecord]:
    return [
        LogRecord(source, 1000.0 + n, f"{text} {n}", "out") for n in range(start, start + count)
    ]


def test_rotation_keeps_n_files(tmp_path: Path) -> None:
    path = tmp_path / "web#0.log"
    log = RotatingLog(path, max_bytes=400, keep=2)
    for n in range(0, 100, 5):
        log.write(records("web#0", n, 5))
    log.close()
    files = rotated_paths(path, 2)
    assert all(f.exists() for f in files)
    assert not path.with_name("web#0.log.3").exists()
    assert all(f.stat().st_size <= 400 for f in files)
    kept = read_records("web#0", path, 2)
    numbers = [int(r.text.split()[1]) for r in kept]
    assert numbers == list(range(numbers[0], 100))  # the newest, in order, none missing
    assert numbers[0] > 0  # the oldest were rotated away


def test_a_record_is_never_split_across_files(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    log = RotatingLog(path, max_bytes=50, keep=3)
    log.write([LogRecord("big", 1.0, "x" * 200, "out"), LogRecord("big", 2.0, "y", "out")])
    log.close()
    assert [r.text for r in read_records("big", path, 3)] == ["x" * 200, "y"]


def test_keep_zero_keeps_only_the_current_file(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    log = RotatingLog(path, max_bytes=100, keep=0)
    for n in range(10):
        log.write(records("a", n, 1))
    log.close()
    assert [p.name for p in tmp_path.iterdir()] == ["a.log"]
    with pytest.raises(ValueError, match="max_bytes"):
        RotatingLog(path, max_bytes=0)


def test_read_records_since_and_tail(tmp_path: Path) -> None:
    path = tmp_path / "s.log"
    log = RotatingLog(path, max_bytes=300, keep=10)
    log.write(records("s", 0, 40))
    log.close()
    assert [r.time for r in read_records("s", path, 10, since=1035.0)] == [
        1035.0,
        1036.0,
        1037.0,
        1038.0,
        1039.0,
    ]
    assert [r.text for r in read_records("s", path, 10, tail=3)] == [
        "line 37",
        "line 38",
        "line 39",
    ]
    assert read_records("s", path, 10, tail=0) == []
    assert read_records("missing", tmp_path / "missing.log", 3) == []


def test_punching_frees_blocks_but_keeps_the_size(tmp_path: Path) -> None:
    path = tmp_path / "raw"
    path.write_bytes(b"x" * (4 * MiB))
    fd = os.open(path, os.O_RDWR)
    try:
        if not punching.punch_hole(fd, 0, 4 * MiB):
            pytest.skip("this file system cannot punch holes")
        assert punching.punch_hole(fd, 0, 0)
    finally:
        os.close(fd)
    assert path.stat().st_size == 4 * MiB
    assert punching.disk_usage(path) < 64 * 1024
    assert path.read_bytes()[:4] == b"\0\0\0\0"


def test_punching_a_closed_descriptor_raises(tmp_path: Path) -> None:
    path = tmp_path / "raw"
    path.write_bytes(b"x" * 8192)
    fd = os.open(path, os.O_RDWR)
    os.close(fd)
    with pytest.raises(OSError, match="Bad file descriptor"):
        punching.punch_hole(fd, 0, 4096)


def test_offsets_are_saved_atomically(tmp_path: Path) -> None:
    raw = tmp_path / "web#0.raw"
    assert offset_path(raw).name == "web#0.raw.offset"
    assert load_offset(offset_path(raw)) is None
    save_offset(offset_path(raw), 1234)
    assert load_offset(offset_path(raw)) == 1234
    assert sorted(p.name for p in tmp_path.iterdir()) == ["web#0.raw.offset"]
    offset_path(raw).write_text("garbage")
    assert load_offset(offset_path(raw)) is None


def test_tail_resumes_at_the_saved_offset(tmp_path: Path) -> None:
    raw = tmp_path / "a.raw"
    raw.write_bytes(b"one\ntwo\nthr")
    first = Tail("a", raw, max_line=100)
    assert first.read(None) == [b"one", b"two"]
    first.commit()
    first.close()
    assert load_offset(offset_path(raw)) == 8  # the unfinished "thr" is not consumed
    with raw.open("ab") as writer:
        writer.write(b"ee\nfour\n")
    second = Tail("a", raw, max_line=100)
    assert second.read(None) == [b"three", b"four"]
    second.close()
    third = Tail("a", raw, max_line=100, offset=0)  # an explicit offset wins
    assert third.read(4) == [b"one"]  # and the budget bounds one read
    third.close()


def test_tail_of_a_file_not_written_yet(tmp_path: Path) -> None:
    raw = tmp_path / "later.raw"
    tail = Tail("later", raw, max_line=100)
    assert tail.read(None) == []
    tail.commit()
    raw.write_bytes(b"now\n")
    assert tail.read(None) == [b"now"]
    tail.remove_files()
    assert list(tmp_path.iterdir()) == []


def test_without_a_saved_offset_holes_are_skipped(tmp_path: Path) -> None:
    raw = tmp_path / "h.raw"
    raw.write_bytes(b"a" * 8191 + b"\n" + b"kept\n")
    fd = os.open(raw, os.O_RDWR)
    try:
        if not punching.punch_hole(fd, 0, 8192):
            pytest.skip("this file system cannot punch holes")
    finally:
        os.close(fd)
    tail = Tail("h", raw, max_line=100)  # the offset file was lost
    assert tail.read(None) == [b"kept"]
    tail.close()


def test_tail_without_hole_punching(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(punching, "punch_hole", lambda fd, offset, length: False)
    raw = tmp_path / "n.raw"
    raw.write_bytes(b"x" * 10000 + b"\n")
    tail = Tail("n", raw, max_line=20000)
    assert len(tail.read(None)) == 1
    tail.commit()
    assert tail.can_punch is False
    assert punching.disk_usage(raw) >= 10000  # left alone until the source ends
    tail.remove_files()
    assert not raw.exists()


def test_tail_notices_a_truncated_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    raw = tmp_path / "t.raw"
    raw.write_bytes(b"old line one\nold line two\n")
    tail = Tail("t", raw, max_line=100)
    assert len(tail.read(None)) == 2
    raw.write_bytes(b"new\n")  # truncated and rewritten by someone else
    assert tail.read(None) == [b"new"]
    assert "shrank" in caplog.text
    tail.close()
