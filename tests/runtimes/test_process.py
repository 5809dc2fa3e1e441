"""The process runtime with real children: exits, signals, stops with grace, process trees."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from shoal.errors import InstanceStartError
from shoal.runtimes import InstanceSpec, Runtime, load_runtime
from shoal.runtimes.process import GONE, ProcessRuntime
from shoal.runtimes.procfs import group_members

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(10)]

Eventually = Callable[..., Awaitable[None]]
MakeSpec = Callable[..., InstanceSpec]

SLEEPER = "import time\nprint('ready')\ntime.sleep(60)"
IGNORES_TERM = (
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready')\n"
    "time.sleep(60)"
)
FORKS = (
    "import os, signal, time\n"
    "for _ in range(3):\n"
    "    if os.fork() == 0:\n"
    "        signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "        time.sleep(60)\n"
    "        os._exit(0)\n"
    "print('ready')\n"
    "time.sleep(60)"
)

MAIN_EXITS = (
    "import os, time\n"
    "for _ in range(3):\n"
    "    if os.fork() == 0:\n"
    "        time.sleep(60)\n"
    "        os._exit(0)\n"
    "print('ready')\n"
    "time.sleep(0.3)\n"
    "raise SystemExit(7)"
)


def ready(path: Path) -> Callable[[], bool]:
    return lambda: path.exists() and "ready" in path.read_text()


async def test_load_runtime_gives_a_process_runtime() -> None:
    runtime = load_runtime("process", poll_interval=0.02)
    assert isinstance(runtime, ProcessRuntime)
    assert isinstance(runtime, Runtime)
    assert runtime.name == "process"
    await runtime.close()


async def test_exit_code_is_reported(runtime: ProcessRuntime, make_spec: MakeSpec) -> None:
    handle = await runtime.start(make_spec("import sys; sys.exit(3)"))
    exit_ = await runtime.wait(handle)
    assert (exit_.code, exit_.signal, exit_.oom_killed) == (3, None, False)
    assert exit_.reason == "exited with code 3"
    assert not exit_.success


async def test_success(runtime: ProcessRuntime, make_spec: MakeSpec) -> None:
    exit_ = await runtime.wait(await runtime.start(make_spec("pass")))
    assert exit_.success
    assert exit_.reason == "exited with code 0"


async def test_death_by_signal_is_reported(runtime: ProcessRuntime, make_spec: MakeSpec) -> None:
    code = "import os, signal; os.kill(os.getpid(), signal.SIGUSR1)"
    exit_ = await runtime.wait(await runtime.start(make_spec(code)))
    assert (exit_.code, exit_.signal) == (None, signal.SIGUSR1)
    assert exit_.reason == "killed by SIGUSR1"


async def test_handle_identifies_the_process(runtime: ProcessRuntime, make_spec: MakeSpec) -> None:
    handle = await runtime.start(make_spec(SLEEPER, host_port=43210))
    assert handle.pid is not None and handle.pid_start_time is not None
    assert handle.host_port == 43210
    assert abs(handle.pid_start_time - time.time()) < 5  # btime is whole seconds, may drift
    assert abs(handle.started_at - time.time()) < 5
    assert os.getpgid(handle.pid) == handle.pid  # leads its own process group...
    assert os.getsid(handle.pid) == handle.pid  # ...in its own session
    await runtime.stop(handle, grace=1)


async def test_stop_sends_sigterm_first(
    runtime: ProcessRuntime, make_spec: MakeSpec, eventually: Eventually
) -> None:
    spec = make_spec(SLEEPER)
    handle = await runtime.start(spec)
    await eventually(ready(spec.log_path))
    started = time.monotonic()
    exit_ = await runtime.stop(handle, grace=5)
    assert time.monotonic() - started < 2
    assert exit_.signal == signal.SIGTERM
    assert exit_.reason == "killed by SIGTERM"


async def test_graceful_shutdown_keeps_its_exit_code(
    runtime: ProcessRuntime, make_spec: MakeSpec, eventually: Eventually
) -> None:
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
        "print('ready')\n"
        "time.sleep(60)"
    )
    spec = make_spec(code)
    handle = await runtime.start(spec)
    await eventually(ready(spec.log_path))
    assert (await runtime.stop(handle, grace=5)).code == 0


async def test_sigterm_ignored_means_sigkill_after_grace(
    runtime: ProcessRuntime, make_spec: MakeSpec, eventually: Eventually
) -> None:
    spec = make_spec(IGNORES_TERM)
    handle = await runtime.start(spec)
    await eventually(ready(spec.log_path))
    started = time.monotonic()
    exit_ = await runtime.stop(handle, grace=0.5)
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 1.5, elapsed
    assert exit_.signal == signal.SIGKILL


async def test_stop_is_idempotent(runtime: ProcessRuntime, make_spec: MakeSpec) -> None:
    handle = await runtime.start(make_spec(SLEEPER))
    first = await runtime.stop(handle, grace=2)
    assert await runtime.stop(handle, grace=2) == first
    assert await runtime.wait(handle) == first


async def test_stop_after_the_process_exited(runtime: ProcessRuntime, make_spec: MakeSpec) -> None:
    handle = await runtime.start(make_spec("import sys; sys.exit(4)"))
    assert (await runtime.wait(handle)).code == 4
    assert (await runtime.stop(handle, grace=1)).code == 4


async def test_stop_of_an_unknown_handle_is_harmless(
    runtime: ProcessRuntime, make_spec: MakeSpec
) -> None:
    handle = await runtime.start(make_spec("pass"))
    await runtime.wait(handle)
    other = ProcessRuntime()
    assert await other.stop(handle, grace=1) == GONE
    await other.close()


async def test_concurrent_wait_and_stop_see_the_same_exit(
    runtime: ProcessRuntime, make_spec: MakeSpec
) -> None:
    handle = await runtime.start(make_spec(SLEEPER))
    waiting = asyncio.create_task(runtime.wait(handle))
    stopped = await runtime.stop(handle, grace=2)
    assert await waiting == stopped


@pytest.mark.parametrize("grace", [0.3, 5.0])
async def test_stop_leaves_no_process_of_the_group(
    runtime: ProcessRuntime,
    make_spec: MakeSpec,
    eventually: Eventually,
    is_alive: Callable[[int], bool],
    grace: float,
) -> None:
    spec = make_spec(FORKS)
    handle = await runtime.start(spec)
    assert handle.pid is not None
    await eventually(ready(spec.log_path))
    members = group_members(handle.pid)
    assert len(members) == 4  # the main process and three grandchildren
    started = time.monotonic()
    await runtime.stop(handle, grace=grace)
    assert time.monotonic() - started < grace + 1.5
    assert group_members(handle.pid) == []
    assert not any(is_alive(pid) for pid in members)


async def test_grandchildren_die_with_the_main_process(
    runtime: ProcessRuntime,
    make_spec: MakeSpec,
    eventually: Eventually,
    is_alive: Callable[[int], bool],
) -> None:
    spec = make_spec(MAIN_EXITS)
    handle = await runtime.start(spec)
    assert handle.pid is not None
    await eventually(ready(spec.log_path))
    members = group_members(handle.pid)
    assert len(members) == 4
    exit_ = await runtime.wait(handle)
    assert exit_.code == 7
    assert group_members(handle.pid) == []
    assert not any(is_alive(pid) for pid in members)


async def test_signal_reaches_the_instance(
    runtime: ProcessRuntime, make_spec: MakeSpec, eventually: Eventually
) -> None:
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGUSR1, lambda *_: print('got usr1', flush=True))\n"
        "print('ready')\n"
        "time.sleep(60)"
    )
    spec = make_spec(code)
    handle = await runtime.start(spec)
    await eventually(ready(spec.log_path))
    await runtime.signal(handle, signal.SIGUSR1)
    await eventually(lambda: "got usr1" in spec.log_path.read_text())
    await runtime.stop(handle, grace=1)
    await runtime.signal(handle, signal.SIGUSR1)  # gone: nothing happens


async def test_missing_executable_is_a_typed_error(
    runtime: ProcessRuntime, make_spec: MakeSpec
) -> None:
    spec = make_spec(command=("no-such-command-shoal", "--flag"))
    with pytest.raises(InstanceStartError) as caught:
        await runtime.start(spec)
    error = caught.value
    assert error.argv == ("no-such-command-shoal", "--flag")
    assert error.errno == errno.ENOENT
    assert error.label == "svc#0"
    assert not error.temporary
    assert "no-such-command-shoal" in str(error) and "PATH" in str(error)


async def test_not_executable_is_a_typed_error(
    runtime: ProcessRuntime, make_spec: MakeSpec, tmp_path: Path
) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    with pytest.raises(InstanceStartError) as caught:
        await runtime.start(make_spec(command=(str(script),)))
    assert caught.value.errno == errno.EACCES
    assert str(script) in caught.value.reason


async def test_bad_workdir_is_a_typed_error(
    runtime: ProcessRuntime, make_spec: MakeSpec, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(InstanceStartError) as caught:
        await runtime.start(make_spec("pass", workdir=missing))
    assert caught.value.workdir == str(missing)
    assert "workdir" in caught.value.reason


async def test_empty_command_is_a_typed_error(runtime: ProcessRuntime, make_spec: MakeSpec) -> None:
    with pytest.raises(InstanceStartError, match="no command"):
        await runtime.start(make_spec(command=()))


async def test_env_and_workdir_are_applied(make_spec: MakeSpec, tmp_path: Path) -> None:
    runtime = ProcessRuntime(
        environ={"PATH": os.environ["PATH"], "HOME": "/home/x", "DAEMON_TOKEN": "secret"}
    )
    code = (
        "import os\n"
        "print('cwd', os.getcwd())\n"
        "for k in ('PORT', 'LOG_LEVEL', 'HOME', 'DAEMON_TOKEN', 'PYTHONUNBUFFERED'):\n"
        "    print(k, os.environ.get(k))"
    )
    spec = make_spec(code, env={"PORT": "8123", "LOG_LEVEL": "debug"}, workdir=tmp_path)
    exit_ = await runtime.wait(await runtime.start(spec))
    await runtime.close()
    assert exit_.success
    output = spec.log_path.read_text().splitlines()
    assert f"cwd {tmp_path}" in output
    assert "PORT 8123" in output
    assert "LOG_LEVEL debug" in output
    assert "HOME /home/x" in output
    assert "DAEMON_TOKEN None" in output  # nothing but the listed variables is inherited
    assert "PYTHONUNBUFFERED 1" in output


async def test_stdout_and_stderr_are_appended_to_the_log(
    runtime: ProcessRuntime, make_spec: MakeSpec
) -> None:
    code = "import sys\nprint('to stdout')\nprint('to stderr', file=sys.stderr)"
    spec = make_spec(code)
    await runtime.wait(await runtime.start(spec))
    await runtime.wait(await runtime.start(spec))  # a restart appends, never truncates
    lines = spec.log_path.read_text().splitlines()
    assert lines.count("to stdout") == 2
    assert lines.count("to stderr") == 2


async def test_stdin_is_empty(runtime: ProcessRuntime, make_spec: MakeSpec) -> None:
    spec = make_spec("import sys; print('stdin', repr(sys.stdin.read()))")
    await runtime.wait(await runtime.start(spec))
    assert "stdin ''" in spec.log_path.read_text()


async def test_stats_of_a_running_instance(
    runtime: ProcessRuntime, make_spec: MakeSpec, eventually: Eventually
) -> None:
    code = "x = bytearray(20 * 1024 * 1024)\nprint('ready')\nimport time; time.sleep(60)"
    spec = make_spec(code)
    handle = await runtime.start(spec)
    await eventually(ready(spec.log_path))
    stats = await runtime.stats(handle)
    assert stats is not None
    assert stats.rss_bytes > 20 * 1024 * 1024
    assert stats.cpu_seconds >= 0
    await runtime.stop(handle, grace=1)
    assert await runtime.stats(handle) is None


async def test_script_without_interpreter_line_is_a_typed_error(
    runtime: ProcessRuntime, make_spec: MakeSpec, tmp_path: Path
) -> None:
    script = tmp_path / "run"
    script.write_text("echo hi\n")
    script.chmod(0o755)
    with pytest.raises(InstanceStartError) as caught:
        await runtime.start(make_spec(command=(str(script),)))
    assert caught.value.errno == errno.ENOEXEC
    assert "#!" in caught.value.reason
