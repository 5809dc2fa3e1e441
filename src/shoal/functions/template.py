"""The zygotes: ``python -m shoal.functions.template --root --fd N``, and what it forks.

Three generations of processes, each forked from the one before (SOCK-style zygotes):

1. **the forkserver** (one per daemon, started by
   :class:`shoal.functions.forkserver.Forkserver`): an interpreter that has imported the
   instance machinery (and the ``--preload`` modules, none by default) and frozen its heap
   (``gc.freeze()``). On a ``template`` command it forks; the child becomes:
2. **a function's template**: its own session and process group, the function's environment,
   working directory and log file (stdout and stderr go straight to it). It imports the
   handler module once (the init phase, timed), freezes the heap again and reports ``ready``
   (or ``failed``, with Lambda's error shape). On each ``spawn`` it calls the module's
   ``before_fork()`` if there is one, and forks:
3. **an instance** (``shoal.functions.instance``), which serves invocations until told to stop.
   A ``spawn`` marked ``standby`` forks one ahead of demand: it waits, running nothing of the
   function, until the dispatcher takes it (its first frame) or drops it (end-of-stream).

Commands come on a control socket; each ``template`` / ``spawn`` command carries the socket its
child will use (SCM_RIGHTS). The loop is single-threaded and blocking: ``poll`` on the control
socket and on a self-pipe SIGCHLD writes to (``signal.set_wakeup_fd``), so children are reaped
and their exits reported (``{"op": "exit", "pid": ..., "code": ...}``, a negative code being a
signal) without a second thread. A forked child closes every descriptor the loop held.

**Memory cgroups** are made by the template, one per instance, off the critical path: see
``shoal.functions.hopping``. ``spawned`` names the child's cgroup to the dispatcher.

Every module imported here is in every fork, and a larger parent forks slower: no ``typing``,
``dataclasses``, ``argparse``, ``contextlib`` or ``hashlib`` on this side.

At end-of-stream on its control socket (the daemon closed it, or died) a process kills its
children (the forkserver each template's process group) and exits: nothing outlives the
daemon. The forkserver is also a child subreaper, so it reaps instances orphaned by a template.
"""

from __future__ import annotations

import gc
import importlib
import os
import select
import signal
import socket
import sys
import time
import traceback

from shoal.functions import instance, protocol
from shoal.functions.hopping import Hopper, write_file
from shoal.functions.loading import load_handler

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, NoReturn

    FrameHandler = Callable[[protocol.Header, bytes, list[int]], None]

PR_SET_CHILD_SUBREAPER = 36
DEFER_MS = 3
"""Milliseconds of quiet after a fork before the template does its chores (report ``spawned``,
hop to the next cgroup): a child's first invocation takes about that long, and on a small
machine that work (and the dispatcher's, woken by the report) would compete with the child for
a CPU. The child's ``hello`` gives the dispatcher its pid meanwhile; a new command, or the
control socket closing, does the chores at once."""
_SIGCHLD = int(signal.SIGCHLD)
_SIG_DFL = int(signal.SIG_DFL)
_raw_signal: Callable[[int, int], object] = sys.modules["_signal"].signal  # no enum wrapping


def set_comm(name: str) -> None:
    """Name this process in ``ps`` and ``top`` (15 bytes at most)."""
    try:
        write_file("/proc/self/comm", name[:15])
    except OSError:
        return


def _noop(signum: int, frame: object) -> None:
    """SIGCHLD only has to wake ``poll`` up (through the wakeup fd); the loop reaps."""


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        return


class CommandLoop:
    """One process's blocking command loop (see the module docstring)."""

    def __init__(self, ctrl: socket.socket) -> None:
        self.ctrl = ctrl
        self.reader = protocol.FrameReader(ctrl, fds=True)
        self.children: set[int] = set()
        self.claimed: set[int] = set()  # descriptors taken by a frame, not yet given to a child
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.deferred: Callable[[], None] | None = None  # work for the next quiet moment
        signal.signal(signal.SIGCHLD, _noop)
        signal.set_wakeup_fd(self.wake_w)

    def send(self, header: protocol.Header, body: bytes = b"") -> None:
        try:
            protocol.send_frame(self.ctrl, header, body)
        except OSError:
            return  # the daemon is gone: the next read sees end-of-stream

    def run(self, on_frame: FrameHandler) -> None:
        """Serve commands until the control socket closes."""
        poller = select.poll()
        poller.register(self.ctrl.fileno(), select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        while True:
            events = poller.poll(None if self.deferred is None else DEFER_MS)
            if not events and self.deferred is not None:
                self.run_deferred()
            for fd, _ in events:
                if fd == self.wake_r:
                    self.reap()
                    continue
                try:
                    more = self.reader.fill()
                except ConnectionError:
                    more = False
                while (frame := self.reader.next_frame()) is not None:
                    header, body = frame
                    fds = self.reader.take_fds(header)
                    self.claimed.update(fds)
                    on_frame(header, body, fds)
                if not more:
                    self.run_deferred()
                    return

    def run_deferred(self) -> None:
        """Do now what was put off until nothing else was happening."""
        work, self.deferred = self.deferred, None
        if work is not None:
            work()

    def reap(self) -> None:
        """Collect every exited child; report the ones this loop forked."""
        try:
            os.read(self.wake_r, 4096)
        except BlockingIOError:
            return  # nothing was written: a spurious wakeup
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.children:
                self.children.discard(pid)
                self.send({"op": "exit", "pid": pid, "code": os.waitstatus_to_exitcode(status)})

    def forked(self, fd: int) -> None:
        """In the parent after a fork: the child has its own copy of ``fd``."""
        self.claimed.discard(fd)
        _close(fd)

    def become_child(self, keep: int) -> None:
        """In a forked child: drop everything this loop held, except the child's ``keep``.
        (Not ``signal.signal``: its enum conversions would copy a few dozen pages.)"""
        signal.set_wakeup_fd(-1)  # the C function itself
        _raw_signal(_SIGCHLD, _SIG_DFL)
        for fd in (self.wake_r, self.wake_w, *self.claimed, *self.reader.pending_fds):
            if fd != keep:
                _close(fd)
        _close(self.ctrl.detach())

    def stop_children(self, *, groups: bool) -> None:
        """SIGKILL every child (each one's process group with ``groups``) and reap them all."""
        for pid in list(self.children):
            try:
                if groups:
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                continue
        deadline = time.monotonic() + 5.0
        while self.children and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            self.children.discard(pid)


def _run_child(body: Callable[[], int]) -> NoReturn:
    """Run a forked child's life and exit, never returning into the parent's loop."""
    status = 70
    try:
        status = body()
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            status = status or 1
    os._exit(status)


# ---------------------------------------------------------------- the forkserver


def serve_root(fd: int, preload: Sequence[str]) -> int:
    """The forkserver's life: preload, freeze, fork templates on demand."""
    _become_subreaper()
    for name in preload:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
    gc.collect()
    gc.freeze()
    set_comm("shoal-fn-root")
    loop = CommandLoop(socket.socket(fileno=fd))
    loop.send({"op": "ready", "pid": os.getpid()})

    def on_frame(header: protocol.Header, body: bytes, fds: list[int]) -> None:
        if header.get("op") != "template" or len(fds) != 1:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as exc:
            loop.forked(fds[0])
            loop.send({"op": "fork_failed", "seq": header["seq"], "reason": str(exc)})
            return
        if pid == 0:
            loop.become_child(keep=fds[0])
            _run_child(lambda: serve_template(fds[0], header["config"]))
        loop.forked(fds[0])
        loop.children.add(pid)
        loop.send({"op": "forked", "seq": header["seq"], "pid": pid})

    loop.run(on_frame)
    loop.stop_children(groups=True)
    return 0


def _trim_heap() -> None:
    """Give the heap's free pages back before forking starts: fewer pages, faster forks."""
    ctypes = sys.modules.get("ctypes")  # loaded by the forkserver (_become_subreaper)
    if ctypes is None:
        return
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        return


def _become_subreaper() -> None:
    """Orphaned instances (their template died) are re-parented here and reaped."""
    try:
        import ctypes  # noqa: PLC0415 (only the forkserver needs it)

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (ImportError, OSError, AttributeError):
        return


# ---------------------------------------------------------------- a function's template


def serve_template(fd: int, config: dict[str, Any]) -> int:
    """A template's life: set up, import the handler (init), then fork instances on demand."""
    os.setsid()
    set_comm(f"fn:{config['name']}")  # its instances inherit the name
    ctrl = socket.socket(fileno=fd)
    ctrl.setblocking(True)
    _redirect_output(config.get("log"))
    hopper = Hopper(config.get("cgroup"))
    hopper.hop()  # the init phase runs under the memory limit, in a cgroup of its own
    os.environ.clear()
    os.environ.update(config["env"])
    os.chdir(config["workdir"])
    sys.path.insert(0, os.path.dirname(config["file"]))
    if config.get("concurrency", 1) > 1:
        importlib.import_module("threading")
        importlib.import_module("queue")
    started = time.perf_counter()
    module, handler, error = load_handler(config["file"], config["function"])
    init_ms = (time.perf_counter() - started) * 1000
    if handler is None or module is None:
        protocol.send_frame(ctrl, {"op": "failed", "error": error, "init_ms": init_ms})
        return 0
    hopper.hop(leave_behind=True)  # the first instance's cgroup, without the init's charges
    gc.collect()
    _trim_heap()
    gc.freeze()
    loop = CommandLoop(ctrl)
    setup = instance.Setup(config, module, handler)
    instance.lambda_logging(setup)
    before_fork = getattr(module, "before_fork", None)
    ready = {"op": "ready", "pid": os.getpid(), "init_ms": init_ms}
    loop.send({**ready, "cgroup_error": hopper.problem} if hopper.problem else ready)

    def on_frame(header: protocol.Header, body: bytes, fds: list[int]) -> None:
        if header.get("op") != "spawn" or len(fds) != 1:
            return
        loop.run_deferred()  # the previous child's hop: this one needs a cgroup of its own
        if callable(before_fork):
            try:
                before_fork()
            except Exception:
                traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        stream = header.get("stream")
        if stream:  # set here, not in the child: see instance.serve
            os.environ["AWS_LAMBDA_LOG_STREAM_NAME"] = stream
        try:
            pid = os.fork()
        except OSError as exc:
            loop.forked(fds[0])
            loop.send({"op": "spawn_failed", "seq": header["seq"], "reason": str(exc)})
            return
        if pid == 0:
            loop.become_child(keep=fds[0])
            standby = bool(header.get("standby"))
            _run_child(lambda: instance.serve(fds[0], setup, stream or "", standby=standby))
        loop.forked(fds[0])
        loop.children.add(pid)
        spawned = {"op": "spawned", "seq": header["seq"], "pid": pid, "cgroup": hopper.current}

        def chores() -> None:  # deferred: the child runs its first invocation meanwhile
            loop.send(spawned)
            hopper.hop()

        loop.deferred = chores

    loop.run(on_frame)
    loop.stop_children(groups=False)
    return 0


def _redirect_output(path: str | None) -> None:
    """stdout and stderr straight to the function's log file (appended), line by line."""
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if callable(reconfigure):
            reconfigure(line_buffering=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``--root --fd N [--tag T] [--preload a,b]``: parsed by hand (argparse would be in every
    fork)."""
    args = list(sys.argv[1:] if argv is None else argv)
    options: dict[str, str] = {}
    while args:
        flag = args.pop(0)
        if flag == "--root":
            options["root"] = "1"
        elif flag in ("--fd", "--tag", "--preload") and args:
            options[flag[2:]] = args.pop(0)
        else:
            print(
                f"usage: python -m shoal.functions.template --root --fd N: {flag}?", file=sys.stderr
            )
            return 2
    if "root" not in options or not options.get("fd", "").isdigit():
        print("usage: python -m shoal.functions.template --root --fd N", file=sys.stderr)
        return 2
    preload = [name for name in options.get("preload", "").split(",") if name]
    return serve_root(int(options["fd"]), preload)


if __name__ == "__main__":
    sys.exit(main())
