"""Health probes and the probing loop (``shoal.supervisor.probing``), against real sockets.

Every server here is a real asyncio server on 127.0.0.1, port 0, started by the test; exec
probes run real commands. Each test checks that it left no task and no child process behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from shoal.manifest.schema import Health
from shoal.supervisor.health import START_INTERVAL, Change
from shoal.supervisor.probing import LOOPBACK, Env, Prober, ProbeResult, probe

pytestmark = pytest.mark.timeout(5)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def health(**kw: object) -> Health:
    """A Health from seconds given as numbers (the manifest wants units: 0.5 -> "0.5s")."""
    fields: dict[str, object] = {"interval": 1.0, "timeout": 0.5}
    fields.update(kw)
    for key in ("interval", "timeout", "start_period"):
        if isinstance(fields.get(key), int | float):
            fields[key] = f"{fields[key]:.6f}".rstrip("0").rstrip(".") + "s"
    return Health.model_validate(fields)


# ---------------------------------------------------------------- leaks


def child_pids() -> set[int]:
    """Our direct children, zombies included (an unreaped child is a leak too)."""
    me, found = str(os.getpid()), set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[1] == me:
            found.add(int(entry.name))
    return found


def gone(pid: int) -> bool:
    """The process does not exist any more (a zombie waiting for init counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


async def wait_gone(pid: int, within: float = 1.0) -> bool:
    deadline = time.monotonic() + within
    while not gone(pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return gone(pid)


@pytest_asyncio.fixture(autouse=True)
async def no_leaks() -> AsyncIterator[None]:
    children = child_pids()
    yield
    current = asyncio.current_task()
    assert {t for t in asyncio.all_tasks() if t is not current} == set()
    assert child_pids() - children == set()


# ---------------------------------------------------------------- servers


class Server:
    """A real asyncio server on 127.0.0.1 that answers each connection with a handler.

    ``behaviour(server)`` makes the handler, so it can record what it saw on the server.
    """

    def __init__(self, behaviour: Callable[[Server], Handler]) -> None:
        self.handler = behaviour(self)
        self.heads: list[bytes] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.handler(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def read_head(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        return head

    async def start(self, sock: socket.socket | None = None) -> None:
        if sock is None:
            self._server = await asyncio.start_server(self._serve, LOOPBACK, 0)
        else:
            self._server = await asyncio.start_server(self._serve, sock=sock)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def serving(handler: Callable[[Server], Handler]) -> AsyncIterator[Server]:
    server = Server(handler)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


def answer(response: bytes) -> Callable[[Server], Handler]:
    """Read the request head, write ``response``, close."""

    def make(server: Server) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_head(reader)
            writer.write(response)
            await writer.drain()

        return handle

    return make


def hang(server: Server) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_head(reader)
        await asyncio.Event().wait()  # until the test cancels it

    return handle


def reset(server: Server) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_head(reader)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST

    return handle


def refused_port() -> int:
    """A port nobody listens on: bound, then closed."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
    return port


# ---------------------------------------------------------------- http


HTTP_CASES = [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", True, "GET /healthz: 200 OK"),
    (b"HTTP/1.1 204\r\n\r\n", True, "GET /healthz: 204"),
    (b"HTTP/1.0 302 Found\r\nLocation: /x\r\n\r\n", True, "GET /healthz: 302 Found"),
    (b"HTTP/1.1 503 Service Unavailable\r\n\r\n", False, "GET /healthz: 503 Service Unavailable"),
    (b"HTTP/1.1 404 Not Found\r\n\r\n", False, "GET /healthz: 404 Not Found"),
    (
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
        True,
        "GET /healthz: 200 OK",
    ),
    (b"hello there\r\n", False, "GET /healthz: not an HTTP response: 'hello there'"),
    (b"HTTP/1.1 200", False, "GET /healthz: connection closed in the middle of a response"),
    (b"", False, "GET /healthz: connection closed before a response"),
    (b"x" * 10_000, False, "GET /healthz: a line longer than 8192 bytes in a response"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("response", "ok", "detail"), HTTP_CASES)
async def test_http_status(response: bytes, ok: bool, detail: str) -> None:
    async with serving(answer(response)) as server:
        result = await probe(health(http="/healthz"), LOOPBACK, server.port)
    assert result.ok is ok
    assert result.detail.startswith(detail), result.detail
    assert 0 <= result.elapsed < 0.5


@pytest.mark.asyncio
async def test_http_request_is_minimal_http11() -> None:
    async with serving(answer(b"HTTP/1.1 200 OK\r\n\r\n")) as server:
        await probe(health(http="/ready/deep"), LOOPBACK, server.port)
    (head,) = server.heads
    lines = head.decode("ascii").split("\r\n")
    assert lines[0] == "GET /ready/deep HTTP/1.1"
    assert f"Host: 127.0.0.1:{server.port}" in lines
    assert "Connection: close" in lines
    assert "User-Agent: shoal-health" in lines


@pytest.mark.asyncio
async def test_http_timeout() -> None:
    async with serving(hang) as server:
        result = await probe(health(http="/healthz", timeout=0.2), LOOPBACK, server.port)
    assert not result.ok
    assert result.detail == "GET /healthz: timed out after 200ms"
    assert 0.18 <= result.elapsed < 1.0


@pytest.mark.asyncio
async def test_http_reset() -> None:
    async with serving(reset) as server:
        result = await probe(health(http="/healthz"), LOOPBACK, server.port)
    assert not result.ok
    assert result.detail == f"GET /healthz: connection reset by 127.0.0.1:{server.port}"


@pytest.mark.asyncio
async def test_http_refused() -> None:
    port = refused_port()
    result = await probe(health(http="/healthz"), LOOPBACK, port)
    assert not result.ok
    assert result.detail == f"connect to 127.0.0.1:{port} refused"


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", [{"http": "/healthz"}, {"tcp": True}])
async def test_a_port_is_needed(kind: dict[str, object]) -> None:
    result = await probe(health(**kind), LOOPBACK, None)
    assert not result.ok
    assert "no port to probe" in result.detail


@pytest.mark.asyncio
@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.1", "localhost", "::1"])
async def test_only_loopback(host: str) -> None:
    with pytest.raises(ValueError, match=r"only connect to 127\.0\.0\.1"):
        await probe(health(tcp=True), host, 80)
    with pytest.raises(ValueError, match=r"only connect to 127\.0\.0\.1"):
        Prober(health(tcp=True), name="x", port=80, host=host, on_change=print)


# ---------------------------------------------------------------- tcp


@pytest.mark.asyncio
async def test_tcp_listening_and_refused() -> None:
    async with serving(hang) as server:
        result = await probe(health(tcp=True), LOOPBACK, server.port)
    assert result.ok
    assert result.detail == f"connect to 127.0.0.1:{server.port}: ok"

    port = refused_port()
    result = await probe(health(tcp=True), LOOPBACK, port)
    assert not result.ok
    assert result.detail == f"connect to 127.0.0.1:{port} refused"


# ---------------------------------------------------------------- exec


async def run_exec(
    command: list[str], *, timeout: float = 2.0, env: Env | None = None, cwd: Path | None = None
) -> ProbeResult:
    return await probe(health(exec=command, timeout=timeout), LOOPBACK, None, env=env, cwd=cwd)


@pytest.mark.asyncio
async def test_exec_true_and_false() -> None:
    result = await run_exec(["true"])
    assert (result.ok, result.detail) == (True, "exec true: exit 0")
    result = await run_exec(["false"])
    assert (result.ok, result.detail) == (False, "exec false: exit 1")


@pytest.mark.asyncio
async def test_exec_detail_has_exit_code_and_last_output_line() -> None:
    result = await run_exec(["sh", "-c", "echo starting; echo 'db unreachable' >&2; exit 3"])
    assert not result.ok
    assert result.detail == "exec sh: exit 3: db unreachable"


@pytest.mark.asyncio
async def test_exec_output_is_bounded() -> None:
    script = "import sys; sys.stdout.write('y' * 1_000_000 + '\\n' + 'z' * 5000)"
    result = await run_exec([sys.executable, "-c", script])
    assert result.ok
    assert result.detail.startswith("exec ") and result.detail.endswith("zzz…")
    assert len(result.detail) < len(sys.executable) + 250


@pytest.mark.asyncio
async def test_exec_killed_by_a_signal() -> None:
    result = await run_exec(["sh", "-c", "kill -TERM $$"])
    assert (result.ok, result.detail) == (False, "exec sh: killed by SIGTERM")


@pytest.mark.asyncio
async def test_exec_that_cannot_start() -> None:
    result = await run_exec(["/nonexistent/probe-command"])
    assert not result.ok
    assert result.detail == (
        "exec /nonexistent/probe-command: cannot start: No such file or directory"
    )


@pytest.mark.asyncio
async def test_exec_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    # the probe's shell starts a grandchild, then waits for it: both must be gone after
    command = ["sh", "-c", "sleep 30 & echo $! > pids; echo $$ >> pids; echo waiting; wait"]
    result = await run_exec(command, timeout=0.3, cwd=tmp_path)
    assert not result.ok
    assert result.detail == "exec sh: timed out after 300ms, killed: waiting"
    assert 0.28 <= result.elapsed < 1.5
    pids = [int(word) for word in (tmp_path / "pids").read_text().split()]
    assert len(pids) == 2
    for pid in pids:
        assert await wait_gone(pid), f"pid {pid} survived the probe's timeout"


@pytest.mark.asyncio
async def test_exec_gets_exactly_the_instance_env_and_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOAL_NOT_FOR_PROBES", "leaked")
    env = {"PATH": os.environ["PATH"], "PROBE_TOKEN": "s3cret", "HERE": str(tmp_path.resolve())}
    check = (
        'test "$PROBE_TOKEN" = s3cret && test "$(pwd -P)" = "$HERE"'
        ' && test -z "$SHOAL_NOT_FOR_PROBES"'
    )
    assert (await run_exec(["sh", "-c", check], env=env, cwd=tmp_path)).ok
    assert not (await run_exec(["sh", "-c", check], env={"PATH": env["PATH"]}, cwd=tmp_path)).ok


# ---------------------------------------------------------------- the probing loop


class Recorder:
    """An on_change callback that keeps every Change and lets a test wait for one."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.changes: list[Change] = []
        self.times: list[float] = []
        self._clock = clock
        self._event = asyncio.Event()

    def __call__(self, change: Change) -> None:
        self.changes.append(change)
        self.times.append(self._clock())
        self._event.set()

    async def until(self, predicate: Callable[[Change], bool], within: float = 3.0) -> Change:
        async with asyncio.timeout(within):
            while True:
                for change in self.changes:
                    if predicate(change):
                        return change
                self._event.clear()
                await self._event.wait()


def flaky_after(good: int) -> Callable[[Server], Handler]:
    """200 for the first ``good`` requests, 503 after."""

    def make(server: Server) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_head(reader)
            ok = len(server.heads) <= good
            writer.write(b"HTTP/1.1 200 OK\r\n\r\n" if ok else b"HTTP/1.1 503 Busy\r\n\r\n")
            await writer.drain()

        return handle

    return make


@pytest.mark.asyncio
async def test_prober_ready_then_not_ready_then_unhealthy() -> None:
    loop = asyncio.get_running_loop()
    changes = Recorder(loop.time)
    check = health(http="/healthz", interval=0.05, timeout=0.5, failures=2, start_period=0)
    async with (
        serving(flaky_after(3)) as server,
        Prober(check, name="probe:web#1", port=server.port, on_change=changes) as prober,
    ):
        assert any(t.get_name() == "probe:web#1" for t in asyncio.all_tasks())
        await changes.until(lambda c: c.became_unhealthy)
        assert prober.tracker.unhealthy and not prober.tracker.ready
        assert prober.tracker.last_detail == "GET /healthz: 503 Busy"
    assert not prober.running
    first, second = changes.changes
    assert (first.ready, first.ready_changed, first.became_unhealthy) == (True, True, False)
    assert (second.ready, second.ready_changed, second.became_unhealthy) == (False, True, True)
    assert second.consecutive_failures == 2
    assert len(server.heads) >= 5  # 3 good, then 2 failures in a row


@pytest.mark.asyncio
async def test_prober_sees_a_service_that_comes_up_after_200ms_at_once() -> None:
    loop = asyncio.get_running_loop()
    changes = Recorder(loop.time)
    # bound but not listening: connections are refused until the server starts
    sock = socket.socket()
    sock.bind((LOOPBACK, 0))
    port = sock.getsockname()[1]
    server = Server(answer(b"HTTP/1.1 200 OK\r\n\r\n"))
    check = health(http="/healthz", interval=5.0, timeout=0.5, start_period=10.0)
    started = loop.time()
    try:
        async with Prober(check, name="probe:slow#1", port=port, on_change=changes):
            await asyncio.sleep(0.2)
            await server.start(sock)
            change = await changes.until(lambda c: c.ready, within=2.0)
    finally:
        await server.close()
        sock.close()
    waited = changes.times[changes.changes.index(change)] - started
    # seen within one start interval of coming up, not after a 5 s interval
    assert 0.2 <= waited < 0.2 + START_INTERVAL + 0.2, waited


@pytest.mark.asyncio
async def test_prober_never_ready_becomes_unhealthy_after_the_start_period() -> None:
    loop = asyncio.get_running_loop()
    changes = Recorder(loop.time)
    check = health(tcp=True, interval=0.05, timeout=0.2, failures=2, start_period=0.3)
    started = loop.time()
    async with Prober(check, name="probe:dead#1", port=refused_port(), on_change=changes):
        change = await changes.until(lambda c: c.became_unhealthy)
    assert changes.changes == [change]  # no readiness flip: it never was ready
    assert change.detail.endswith("refused")
    assert 0.3 <= changes.times[0] - started < 1.5


@pytest.mark.asyncio
async def test_prober_turns_exceptions_into_failures(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    async def exploding(
        health: Health, host: str, port: int | None, *, env: Env | None = None, cwd: object = None
    ) -> ProbeResult:
        nonlocal calls
        calls += 1
        raise RuntimeError("kaboom")

    loop = asyncio.get_running_loop()
    changes = Recorder(loop.time)

    def bad_callback(change: Change) -> None:
        changes(change)
        raise ValueError("callback bug")

    check = health(tcp=True, interval=0.01, failures=3, start_period=0)
    with caplog.at_level(logging.ERROR, logger="shoal.supervisor.probing"):
        async with Prober(
            check, name="probe:x#1", port=1, on_change=bad_callback, probe_function=exploding
        ) as prober:
            change = await changes.until(lambda c: c.became_unhealthy)
            while calls < 6:  # the loop lives on after the callback raised
                await asyncio.sleep(0.01)
            assert prober.running
    assert change.detail == "probe raised RuntimeError: kaboom"
    assert "on_change callback failed" in caplog.text


@pytest.mark.asyncio
async def test_prober_stop_kills_a_running_exec_probe(tmp_path: Path) -> None:
    check = health(exec=["sh", "-c", "echo $$ > pid; exec sleep 30"], timeout=4.0)
    prober = Prober(check, name="probe:exec#1", port=None, cwd=tmp_path, on_change=print)
    prober.start()
    pid_file = tmp_path / "pid"
    async with asyncio.timeout(2.0):
        while not pid_file.exists() or not pid_file.read_text().strip():
            await asyncio.sleep(0.01)
    pid = int(pid_file.read_text())
    assert not gone(pid)
    await prober.stop()
    assert not prober.running
    assert await wait_gone(pid)


@pytest.mark.asyncio
async def test_prober_cadence_in_virtual_time() -> None:
    """Injected clock and sleep: the probe times follow next_probe_at exactly."""
    now = 0.0
    probed_at: list[float] = []
    enough = asyncio.Event()

    def clock() -> float:
        return now

    async def sleep(delay: float) -> None:
        nonlocal now
        now += delay
        await asyncio.sleep(0)

    async def scripted(
        health: Health, host: str, port: int | None, *, env: Env | None = None, cwd: object = None
    ) -> ProbeResult:
        probed_at.append(now)
        if len(probed_at) == 19:
            enough.set()
            await asyncio.Event().wait()  # park here until stopped
        up = now >= 0.39
        return ProbeResult(ok=up, detail="up" if up else "down", elapsed=0.0)

    check = health(tcp=True, interval=2.0, start_period=10.0)
    async with Prober(
        check,
        name="probe:virtual#1",
        port=1,
        on_change=lambda change: None,
        clock=clock,
        sleep=sleep,
        probe_function=scripted,
    ):
        await asyncio.wait_for(enough.wait(), 2.0)
    fast = [i * START_INTERVAL for i in range(17)]  # 0 .. 0.4: the start cadence until up
    assert probed_at == pytest.approx([*fast, 2.4, 4.4])


@pytest.mark.asyncio
async def test_prober_lifecycle(caplog: pytest.LogCaptureFixture) -> None:
    prober = Prober(health(tcp=True), name="probe:life#1", port=refused_port(), on_change=print)
    with pytest.raises(RuntimeError, match="not started"):
        _ = prober.tracker
    await prober.stop()  # before start: nothing to do
    # a wall-clock started_at given to the loop clock is clamped, with a warning
    prober = Prober(
        health(tcp=True),
        name="probe:life#1",
        port=refused_port(),
        on_change=print,
        started_at=time.time(),
    )
    with caplog.at_level(logging.WARNING, logger="shoal.supervisor.probing"):
        prober.start()
    assert prober.tracker.started_at <= asyncio.get_running_loop().time()
    assert "another clock" in caplog.text
    with pytest.raises(RuntimeError, match="already started"):
        prober.start()
    running = [prober.running]
    await prober.stop()
    await prober.stop()
    running.append(prober.running)
    assert running == [True, False]
    with pytest.raises(RuntimeError, match="already started"):
        prober.start()


@pytest.mark.asyncio
async def test_stop_lets_the_callers_own_cancellation_through() -> None:
    prober = Prober(health(tcp=True), name="probe:c#1", port=refused_port(), on_change=print)
    prober.start()

    async def stopper() -> None:
        await prober.stop()

    outer = asyncio.create_task(stopper())
    await asyncio.sleep(0)  # stopper is now awaiting the probing task
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    await prober.stop()
    assert not prober.running
