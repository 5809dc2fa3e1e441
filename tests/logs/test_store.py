"""The log store end to end: real child processes writing, the tailer task, reads and streams."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from shoal.logs import LogRecord, LogStore, file_stem
from shoal.logs.punching import disk_usage
from shoal.runtimes.base import InstanceSpec
from shoal.runtimes.process import ProcessRuntime

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(10)]

Eventually = Callable[..., Awaitable[None]]
MiB = 1024 * 1024


async def run_child(code: str, log_path: Path, *, name: str = "web") -> int | None:
    """Run Python ``code`` as a real instance writing to ``log_path``; its exit code."""
    runtime = ProcessRuntime()
    spec = InstanceSpec(
        app="logs",
        kind="service",
        name=name,
        ordinal=0,
        revision="r",
        command=(sys.executable, "-c", code),
        log_path=log_path,
    )
    try:
        exit_ = await runtime.wait(await runtime.start(spec))
    finally:
        await runtime.close()
    return exit_.code


class Clock:
    """A wall clock the test sets; each reading also advances it by ``step`` seconds."""

    def __init__(self, start: float = 1_700_000_000.0, step: float = 0.001) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> float:
        value = self.now
        self.now += self.step
        return value


@pytest.fixture
def clock() -> Clock:
    return Clock()


def texts(records: list[LogRecord]) -> list[str]:
    return [record.text for record in records]


async def test_output_of_a_real_child_is_read_and_streamed(
    store: LogStore, eventually: Eventually
) -> None:
    raw = store.raw_path("web#0")
    store.register("web#0", raw)
    async with store.subscribe(["web#0"]) as live:
        code = (
            "import sys, time\n"
            "for n in range(5):\n"
            "    print('line', n)\n"
            "    time.sleep(0.03)\n"
            "print('oops', file=sys.stderr)"
        )
        assert await run_child(code, raw) == 0
        streamed = [await asyncio.wait_for(anext(live), 2) for _ in range(6)]
    expected = ["line 0", "line 1", "line 2", "line 3", "line 4", "oops"]
    assert texts(streamed) == expected
    await eventually(lambda: len(store.read(["web#0"])) == 6)
    stored = store.read(["web#0"])
    assert stored == streamed  # the files hold exactly what was streamed, same times
    times = [r.time for r in stored]
    assert times == sorted(times) and times[0] < times[-1]  # stamped as read, spread out
    assert all(r.stream == "out" and r.source == "web#0" for r in stored)
    assert store.log_path("web#0").read_text().splitlines()[0].endswith(" out line 0")


async def test_partial_lines_wait_for_their_end(logs_root: Path, clock: Clock) -> None:
    logs = LogStore(logs_root, clock=clock)  # not started: the test drives the ticks
    raw = logs.raw_path("p#0")
    logs.register("p#0", raw)
    with raw.open("ab", buffering=0) as writer:
        writer.write(b"hello wo")
        assert logs.poll() == 0
        writer.write(b"rld\nand an unfinished")
        assert logs.poll() == 1
        assert texts(logs.read()) == ["hello world"]
    logs.unregister("p#0", final=True)  # the source ended: its last words count
    assert texts(logs.read()) == ["hello world", "and an unfinished"]
    assert not raw.exists()
    await logs.stop()


async def test_long_lines_are_split(logs_root: Path) -> None:
    logs = LogStore(logs_root, max_line=1000)
    raw = logs.raw_path("long#0")
    logs.register("long#0", raw)
    assert await run_child("print('x' * 2500)\nprint('short')", raw) == 0
    logs.poll()
    records = logs.read()
    assert [len(t) for t in texts(records)] == [1000, 1000, 500, 5]
    await logs.stop()


async def test_rotation_through_the_store(logs_root: Path) -> None:
    logs = LogStore(logs_root, max_bytes=2000, keep=2)
    for n in range(200):
        logs.append("gateway", f"GET /items/{n} 200")
    await logs.stop()
    names = sorted(p.name for p in logs_root.iterdir())
    assert names == ["gateway.log", "gateway.log.1", "gateway.log.2"]
    kept = texts(logs.read(["gateway"]))
    assert kept[-1] == "GET /items/199 200"
    assert len(kept) < 200


async def test_hole_punching_keeps_disk_use_small(store: LogStore, eventually: Eventually) -> None:
    raw = store.raw_path("chatty#0")
    store.register("chatty#0", raw)
    code = (
        "import sys, time\n"
        "line = 'y' * 4095 + '\\n'\n"
        "for n in range(2048):\n"  # 8 MiB in all
        "    sys.stdout.write(line)\n"
        "    if n % 256 == 0:\n"
        "        time.sleep(0.02)\n"
    )
    assert await run_child(code, raw, name="chatty") == 0
    await eventually(lambda: len(store.read(["chatty#0"])) == 2048, timeout=8)
    await eventually(lambda: disk_usage(raw) < MiB)
    assert raw.stat().st_size == 8 * MiB  # apparent size: everything the child wrote
    assert store.offset("chatty#0") == 8 * MiB


async def test_offsets_survive_a_restart(logs_root: Path) -> None:
    first = LogStore(logs_root)
    raw = first.raw_path("svc#1")
    first.register("svc#1", raw)
    with raw.open("ab", buffering=0) as writer:
        writer.write(b"".join(b"before %d\n" % n for n in range(50)) + b"half a li")
        first.poll()
        await first.stop()  # the daemon goes away; the instance keeps writing
        writer.write(b"ne\n" + b"".join(b"after %d\n" % n for n in range(50)))
        second = LogStore(logs_root)
        second.register("svc#1", raw)
        second.poll()
    lines = texts(second.read(["svc#1"]))
    expected = [f"before {n}" for n in range(50)] + ["half a line"]
    expected += [f"after {n}" for n in range(50)]
    assert lines == expected  # nothing lost, nothing twice
    second.unregister("svc#1")
    await second.stop()


async def test_since_and_tail(logs_root: Path, clock: Clock) -> None:
    logs = LogStore(logs_root, clock=clock)
    clock.step = 0
    for when, source, text in [
        (100.0, "a#0", "a early"),
        (200.0, "b#0", "b middle"),
        (300.0, "a#0", "a late"),
        (400.0, "b#0", "b last"),
    ]:
        clock.now = when
        logs.append(source, text)
    assert texts(logs.read()) == ["a early", "b middle", "a late", "b last"]  # merged by time
    assert texts(logs.read(since=200.0)) == ["b middle", "a late", "b last"]
    assert texts(logs.read(["a#0"], since=150.0)) == ["a late"]
    assert texts(logs.read(tail=2)) == ["a late", "b last"]
    assert texts(logs.read(["a#0", "b#0"], since=150.0, tail=1)) == ["b last"]
    assert logs.read(["nobody"]) == []
    await logs.stop()


async def test_append_writes_shoal_lines_one_record_per_line(logs_root: Path) -> None:
    logs = LogStore(logs_root)
    logs.append("fn:thumbnail", "START\nREPORT Duration: 3.1 ms\n")
    records = logs.read()
    assert texts(records) == ["START", "REPORT Duration: 3.1 ms"]
    assert {r.stream for r in records} == {"shoal"}
    assert {r.source for r in records} == {"fn:thumbnail"}
    await logs.stop()


async def test_a_slow_subscriber_loses_the_oldest_and_is_told(logs_root: Path) -> None:
    logs = LogStore(logs_root, queue_size=5)
    everyone = logs.subscribe()
    only_b = logs.subscribe(["b#0"])
    for n in range(100):
        logs.append("a#0", f"a {n}")  # never blocks, however far behind readers are
    logs.append("b#0", "b 0")
    marker = await anext(everyone)
    assert marker.stream == "dropped" and marker.source == "a#0"
    assert marker.text.startswith("[96 lines dropped")
    assert texts([await anext(everyone) for _ in range(5)]) == [
        "a 96",
        "a 97",
        "a 98",
        "a 99",
        "b 0",
    ]
    assert texts([await anext(only_b)]) == ["b 0"]
    assert len(logs.read()) == 101  # the files have them all
    await everyone.aclose()
    await logs.stop()  # ends the other stream
    assert [r async for r in only_b] == []


async def test_file_names_of_odd_sources(logs_root: Path) -> None:
    logs = LogStore(logs_root)
    odd = ["catalog#2", "a/b", ".hidden", "fn:x y", "ünï"]
    for source in odd:
        logs.append(source, f"from {source}")
    assert file_stem("catalog#2") == "catalog#2"
    assert file_stem("a/b") == "a%2Fb"
    assert file_stem(".hidden") == "%2Ehidden"
    assert all(p.parent == logs_root for p in logs_root.glob("*.log"))
    assert logs.sources() == sorted(odd)
    await logs.stop()
    assert LogStore(logs_root).sources() == sorted(odd)  # recovered from the file names
    with pytest.raises(ValueError, match="needs a name"):
        file_stem("")


async def test_tailer_task_is_named_and_stops(logs_root: Path, eventually: Eventually) -> None:
    logs = LogStore(logs_root, poll_interval=0.02)
    async with logs:
        names = {task.get_name() for task in asyncio.all_tasks()}
        assert "shoal.logs.tailer" in names
        raw = logs.raw_path("w#0")
        logs.register("w#0", raw)
        raw.write_bytes(b"seen by the tailer\n")
        await eventually(lambda: len(logs.read()) == 1)
        live = logs.subscribe()
    assert "shoal.logs.tailer" not in {task.get_name() for task in asyncio.all_tasks()}
    assert [r async for r in live] == []  # stop ended the stream
    assert raw.exists() and (raw.parent / "w#0.raw.offset").read_text() == "19\n"


async def test_register_twice_and_unknown_unregister(logs_root: Path) -> None:
    logs = LogStore(logs_root)
    raw = logs.raw_path("r#0")
    logs.register("r#0", raw)
    logs.register("r#0", raw)  # same file: nothing changes
    other = logs_root / "elsewhere.raw"
    other.write_bytes(b"from elsewhere\n")
    logs.register("r#0", other)  # a new file: the old one is let go (not deleted)
    logs.poll()
    assert texts(logs.read()) == ["from elsewhere"]
    logs.unregister("nobody")
    logs.unregister("r#0", final=False)
    assert other.exists()
    await logs.stop()


async def test_stop_then_exited_line_follows_the_output(logs_root: Path) -> None:
    logs = LogStore(logs_root)
    raw = logs.raw_path("job#0")
    logs.register("job#0", raw)
    code = await run_child("print('working')\nprint('done', end='')\nraise SystemExit(3)", raw)
    logs.unregister("job#0")  # drain first...
    logs.append("job#0", f"exited with code {code}")  # ...then say how it ended
    assert texts(logs.read()) == ["working", "done", "exited with code 3"]
    assert not os.path.exists(raw)
    await logs.stop()


async def test_an_abandoned_stream_is_let_go(logs_root: Path) -> None:
    logs = LogStore(logs_root)

    async def first_line() -> str:
        async for record in logs.subscribe():
            return record.text  # leaves the loop without closing the stream
        return ""

    reading = asyncio.create_task(first_line())
    await asyncio.sleep(0.01)
    assert logs.subscribers == 1
    logs.append("a#0", "hello")
    assert await reading == "hello"
    gc.collect()
    assert logs.subscribers == 0  # dropped by its reader, so dropped by the store
    logs.append("a#0", "nobody listens")  # and nothing queues up for nobody
    await logs.stop()


async def test_closing_a_stream_unsubscribes(logs_root: Path) -> None:
    logs = LogStore(logs_root)
    async with logs.subscribe(["a#0"]) as live:
        assert logs.subscribers == 1
        logs.append("a#0", "one")
        assert (await anext(live)).text == "one"
    assert logs.subscribers == 0
    assert [r async for r in live] == []
    await logs.stop()
