"""Health probes, the I/O half of health checking: http, tcp and exec probes, and the probing loop.

Where it sits: the supervisor starts one :class:`Prober` per instance whose service has a
``health`` section. The prober runs :func:`probe` on the loop clock, feeds every result to a
:class:`shoal.supervisor.health.HealthTracker` (the pure half, which decides) and calls its
``on_change`` callback on transitions only: readiness flipped (the gateway adds or removes the
instance) or the instance became unhealthy (the supervisor restarts it).

The probes, each bounded by ``health.timeout``:

* ``http: /path``: ``GET /path`` over a minimal HTTP/1.1 client written on asyncio streams (the
  request has ``Host``, ``User-Agent: shoal-health`` and ``Connection: close``; only the status
  line is read). 2xx and 3xx pass, like Kubernetes' httpGet probe; interim 1xx responses are
  skipped; anything else fails with a precise detail: ``GET /healthz: 503 Service Unavailable``,
  ``connect to 127.0.0.1:8081 refused``, ``GET /healthz: timed out after 500ms``,
  ``GET /healthz: not an HTTP response: 'hello'``.
* ``tcp: true``: a TCP connect succeeds.
* ``exec: [cmd, ...]``: the command runs (never through a shell) with the instance's
  environment and working directory, in its own process group; exit 0 passes. Past the
  timeout, or when the prober stops, the whole group is killed and reaped. The detail has the
  exit code (or the signal) and the last line of the output (stdout and stderr together; only
  the last few KiB are kept in memory).

Network hygiene: a probe only ever connects to 127.0.0.1, where every runtime publishes its
instances (DESIGN.md §3, runtimes/base.py). Any other host is refused with ``ValueError``.

A probe never raises for a failing instance: every failure is a :class:`ProbeResult` with
``ok=False``. The prober also turns any exception escaping a probe into a failed result, so the
loop only ends when it is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import types
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

from shoal.manifest.schema import Health
from shoal.manifest.units import format_duration
from shoal.supervisor.health import Change, HealthTracker

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
"""The only address probes connect to."""

MAX_HEAD_LINE = 8192  # bytes: longest status or header line the http probe accepts
MAX_INTERIM = 5  # interim 1xx responses skipped before the final one
OUTPUT_TAIL = 4096  # bytes: exec output kept in memory (the end of it)
DETAIL_LINE = 200  # characters: longest output line quoted in a detail
REAP_TIMEOUT = 2.0  # seconds: waiting for a killed exec probe's group to go away
PROBE_GRACE = 1.0  # seconds past health.timeout after which the prober abandons a probe

Env = Mapping[str, str]
Cwd = str | os.PathLike[str]


@dataclass(frozen=True, kw_only=True)
class ProbeResult:
    """One probe's verdict: passed or not, in words, and how long it took (seconds)."""

    ok: bool
    detail: str
    elapsed: float


class _BadResponse(Exception):
    """The peer answered something that is not an HTTP/1.x response."""


async def probe(
    health: Health,
    host: str,
    port: int | None,
    *,
    env: Env | None = None,
    cwd: Cwd | None = None,
) -> ProbeResult:
    """Run the probe ``health`` describes against the instance at ``host:port``, once.

    ``host`` must be 127.0.0.1. ``port`` is the instance's port on it; an http or tcp probe
    without one fails. ``env`` is the complete environment of an exec probe (the instance's own,
    as its runtime built it; None: shoal's environment) and ``cwd`` its working directory.
    Never raises for a failing instance; raises ``ValueError`` for a host other than 127.0.0.1.
    """
    check_host(host)
    loop = asyncio.get_running_loop()
    started = loop.time()
    if health.http is not None:
        ok, detail = await _probe_http(health.http, port, health.timeout)
    elif health.exec is not None:
        ok, detail = await _probe_exec(health.exec, health.timeout, env, cwd)
    else:
        ok, detail = await _probe_tcp(port, health.timeout)
    return ProbeResult(ok=ok, detail=detail, elapsed=loop.time() - started)


def check_host(host: str) -> None:
    """Refuse any address but 127.0.0.1: probes never leave the machine's loopback."""
    if host != LOOPBACK:
        raise ValueError(f"health probes only connect to {LOOPBACK}, not {host!r}")


# ---------------------------------------------------------------- http


async def _probe_http(path: str, port: int | None, timeout: float) -> tuple[bool, str]:
    what = f"GET {path}"
    if port is None:
        return False, f"{what}: no port to probe (the service declares no port)"
    address = f"{LOOPBACK}:{port}"
    try:
        async with asyncio.timeout(timeout):
            code, reason = await _http_status(path, port, address)
    except TimeoutError:
        return False, f"{what}: timed out after {format_duration(timeout)}"
    except ConnectionRefusedError:
        return False, f"connect to {address} refused"
    except ConnectionResetError:
        return False, f"{what}: connection reset by {address}"
    except _BadResponse as exc:
        return False, f"{what}: {exc}"
    except OSError as exc:
        return False, f"{what}: {address}: {exc.strerror or exc}"
    status = f"{code} {reason}" if reason else str(code)
    return 200 <= code < 400, f"{what}: {status}"


async def _http_status(path: str, port: int, address: str) -> tuple[int, str]:
    """Send ``GET path`` and return the final status code and reason phrase."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port, limit=MAX_HEAD_LINE)
    try:
        target = quote(path, safe="/:@!$&'()*+,;=")
        writer.write(
            f"GET {target} HTTP/1.1\r\n"
            f"Host: {address}\r\n"
            "User-Agent: shoal-health\r\n"
            "Accept: */*\r\n"
            "Connection: close\r\n"
            "\r\n".encode("ascii")
        )
        await writer.drain()
        return await _read_status(reader)
    finally:
        writer.close()
        with contextlib.suppress(OSError):  # a reset connection has nothing left to close
            await writer.wait_closed()


_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9])(?: ([^\r\n]*))?\r?\n")


async def _read_status(reader: asyncio.StreamReader) -> tuple[int, str]:
    for _ in range(MAX_INTERIM + 1):
        line = await _read_line(reader, "a response")
        match = _STATUS_LINE.fullmatch(line)
        if match is None:
            raise _BadResponse(f"not an HTTP response: {_quote(line)}")
        code = int(match[1])
        reason = (match[2] or b"").decode("latin-1").strip()[:60]
        if code >= 200 or code == 101:
            return code, reason
        while await _read_line(reader, "the interim response") not in (b"\r\n", b"\n"):
            pass  # skip the headers of a 100 Continue / 103 Early Hints
    raise _BadResponse(f"more than {MAX_INTERIM} interim responses")


async def _read_line(reader: asyncio.StreamReader, during: str) -> bytes:
    try:
        line = await reader.readline()
    except ValueError:  # asyncio's LimitOverrunError, as readline reports it
        raise _BadResponse(f"a line longer than {MAX_HEAD_LINE} bytes in {during}") from None
    if not line:
        raise _BadResponse(f"connection closed before {during}")
    if not line.endswith(b"\n"):
        raise _BadResponse(f"connection closed in the middle of {during}: {_quote(line)}")
    return line


def _quote(line: bytes) -> str:
    text = line[:60].rstrip(b"\r\n").decode("ascii", "backslashreplace")
    return repr(text) + ("…" if len(line) > 60 else "")


# ---------------------------------------------------------------- tcp


async def _probe_tcp(port: int | None, timeout: float) -> tuple[bool, str]:
    if port is None:
        return False, "tcp: no port to probe (the service declares no port)"
    address = f"{LOOPBACK}:{port}"
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(LOOPBACK, port)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    except TimeoutError:
        return False, f"connect to {address}: timed out after {format_duration(timeout)}"
    except ConnectionRefusedError:
        return False, f"connect to {address} refused"
    except OSError as exc:
        return False, f"connect to {address}: {exc.strerror or exc}"
    return True, f"connect to {address}: ok"


# ---------------------------------------------------------------- exec


class _Tail:
    """The last ``OUTPUT_TAIL`` bytes of a command's output."""

    def __init__(self) -> None:
        self._data = bytearray()

    def feed(self, chunk: bytes) -> None:
        self._data += chunk
        if len(self._data) > OUTPUT_TAIL:
            del self._data[:-OUTPUT_TAIL]

    def last_line(self) -> str:
        lines = [s.strip() for s in self._data.decode("utf-8", "replace").splitlines()]
        line = next((s for s in reversed(lines) if s), "")
        return line if len(line) <= DETAIL_LINE else line[: DETAIL_LINE - 1] + "…"


async def _probe_exec(
    argv: Sequence[str], timeout: float, env: Env | None, cwd: Cwd | None
) -> tuple[bool, str]:
    what = f"exec {argv[0]}"
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,  # its own process group: a kill reaches the whole tree
        )
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and exc.filename != argv[0] else ""
        return False, f"{what}: cannot start: {exc.strerror or exc}{where}"

    tail = _Tail()
    code: int | None = None
    try:
        async with asyncio.timeout(timeout):
            code = await _collect(proc, tail)
    except TimeoutError:
        pass
    finally:
        if code is None:  # timed out, or the prober is stopping: leave nothing behind
            await _kill_group(proc, tail)

    last = tail.last_line()
    said = f": {last}" if last else ""
    if code is None:
        return False, f"{what}: timed out after {format_duration(timeout)}, killed{said}"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return False, f"{what}: killed by {name}{said}"
    return code == 0, f"{what}: exit {code}{said}"


async def _collect(proc: asyncio.subprocess.Process, tail: _Tail) -> int:
    """Read the output to its end (every holder of the pipe gone), then the exit code."""
    assert proc.stdout is not None
    while chunk := await proc.stdout.read(65536):
        tail.feed(chunk)
    return await proc.wait()


async def _kill_group(proc: asyncio.subprocess.Process, tail: _Tail) -> None:
    """SIGKILL the probe's process group, then drain and reap it (bounded).

    The group id is the probe's pid. It cannot belong to anyone else yet: either the probe is
    not reaped, or members of its group still hold the output pipe (the kernel does not reuse
    an id while a process group has it).
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    try:
        async with asyncio.timeout(REAP_TIMEOUT):
            await _collect(proc, tail)
    except TimeoutError:
        logger.warning("exec probe %s (pid %d): still not gone after SIGKILL", proc, proc.pid)


# ---------------------------------------------------------------- the probing loop


class ProbeFunction(Protocol):
    """The shape of :func:`probe`, so tests and other runtimes can supply their own."""

    def __call__(
        self,
        health: Health,
        host: str,
        port: int | None,
        *,
        env: Env | None = None,
        cwd: Cwd | None = None,
    ) -> Awaitable[ProbeResult]: ...


Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[object]]
OnChange = Callable[[Change], object]


class Prober:
    """Probes one instance over and over and reports readiness and unhealthiness transitions.

    One asyncio task per instance, named ``name`` (e.g. ``probe:catalog#2``, also the prefix of
    its log lines), referenced here, guarded (it logs how it ended) and stopped by :meth:`stop`,
    which cancels it and waits for it, killing a running exec probe on the way. Time comes from
    ``clock`` (default: the loop's monotonic clock, :meth:`asyncio.AbstractEventLoop.time`) and
    waits go through ``sleep`` (default: :func:`asyncio.sleep`), so tests can drive it in virtual
    time. ``started_at`` is when the instance started, **on that same clock**; default: when
    :meth:`start` is called. A ``started_at`` later than the clock's now (a wall-clock time given
    to a monotonic clock, say) would stretch the start period without end; it is clamped to now,
    with a warning. The cadence is :meth:`HealthTracker.next_probe_at`'s.

    ``on_change`` is called, in the task, with every :class:`Change`; an exception it raises is
    logged and probing goes on. A probe that raises, or overruns ``timeout + PROBE_GRACE``,
    counts as a failed probe. A prober runs once: after :meth:`stop` it cannot start again
    (the supervisor makes a new one for the next run of the instance).
    """

    def __init__(
        self,
        health: Health,
        *,
        name: str,
        port: int | None,
        on_change: OnChange,
        env: Env | None = None,
        cwd: Cwd | None = None,
        host: str = LOOPBACK,
        started_at: float | None = None,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        probe_function: ProbeFunction = probe,
    ) -> None:
        check_host(host)
        self.health = health
        self.name = name
        self._port = port
        self._host = host
        self._env = env
        self._cwd = cwd
        self._on_change = on_change
        self._started_at = started_at
        self._clock = clock
        self._sleep: Sleep = sleep if sleep is not None else asyncio.sleep
        self._probe = probe_function
        self._tracker: HealthTracker | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def tracker(self) -> HealthTracker:
        """The state machine this prober drives (ready, unhealthy, last_detail, ...)."""
        if self._tracker is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._tracker

    @property
    def running(self) -> bool:
        """The probing task exists and has not ended."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start probing in a named task of the running loop."""
        if self._task is not None:
            raise RuntimeError(f"{self.name} was already started")
        if self._clock is None:
            self._clock = asyncio.get_running_loop().time
        now = self._clock()
        started_at = now if self._started_at is None else self._started_at
        if started_at > now + 1.0:
            logger.warning(
                "[%s] started_at %.3f is %.3fs in the future of the probing clock (%.3f): "
                "is it on another clock? Counting the start period from now",
                self.name,
                started_at,
                started_at - now,
                now,
            )
        started_at = min(started_at, now)
        self._tracker = HealthTracker(self.health, started_at)
        self._task = asyncio.create_task(self._guarded(), name=self.name)

    async def stop(self) -> None:
        """Cancel the probing task and wait until it has ended. Safe to call more than once."""
        task = self._task
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # our caller is being cancelled too: let that through
        except Exception:  # noqa: S110
            pass  # a crash was logged by the guard when it happened

    async def __aenter__(self) -> Prober:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------ the task

    async def _guarded(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            logger.debug("[%s] health probing stopped", self.name)
            raise
        except BaseException:
            logger.exception("[%s] health probing crashed", self.name)
            raise
        logger.warning("[%s] health probing ended unexpectedly", self.name)  # pragma: no cover

    async def _run(self) -> None:
        tracker = self.tracker
        clock = self._clock
        assert clock is not None
        while True:
            now = clock()
            delay = tracker.next_probe_at(now) - now
            if delay > 0:
                await self._sleep(delay)
            result = await self._probe_once(clock)
            change = tracker.record(result.ok, clock(), result.detail)
            if change is not None:
                self._report(change)

    async def _probe_once(self, clock: Clock) -> ProbeResult:
        started = clock()
        limit = self.health.timeout + PROBE_GRACE
        try:
            async with asyncio.timeout(limit):
                return await self._probe(
                    self.health, self._host, self._port, env=self._env, cwd=self._cwd
                )
        except TimeoutError:
            detail = f"probe still running after {format_duration(limit)}, abandoned"
        except Exception as exc:
            logger.debug("[%s] health probe raised", self.name, exc_info=True)
            detail = f"probe raised {type(exc).__name__}: {exc}"
        return ProbeResult(ok=False, detail=detail, elapsed=clock() - started)

    def _report(self, change: Change) -> None:
        if change.became_unhealthy:
            logger.warning(
                "[%s] unhealthy after %d failed probes in a row: %s",
                self.name,
                change.consecutive_failures,
                change.detail,
            )
        elif change.ready:
            logger.info("[%s] ready: %s", self.name, change.detail)
        else:
            logger.info("[%s] not ready: %s", self.name, change.detail)
        try:
            self._on_change(change)
        except Exception:
            logger.exception("[%s] on_change callback failed on %s", self.name, change)


__all__ = [
    "LOOPBACK",
    "Clock",
    "Cwd",
    "Env",
    "OnChange",
    "ProbeFunction",
    "ProbeResult",
    "Prober",
    "Sleep",
    "check_host",
    "probe",
]
