"""Finding the benchmark scripts and running each as a child process with a time limit.

The runner half of ``python -m bench`` (``bench.__main__``): ``discover`` lists the scripts,
``run_script`` runs one and turns whatever happened into an ``Outcome``: its parsed ``Result``,
or why it failed (exit status, bad output, time limit, processes left behind) with the tail of
its stderr. Each script runs in its own session so that, at its end or at its time limit, the
whole process group it started is stopped too: no benchmark leaves a server running.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bench.figures import Result

STDERR_TAIL_LINES = 20
GRACE_SECONDS = 5.0
Status = Literal["ok", "failed", "timeout"]


@dataclass(frozen=True)
class Outcome:
    """How running one script went."""

    name: str
    status: Status
    seconds: float
    result: Result | None = None
    error: str = ""
    stderr_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def is_benchmark(source: str) -> bool:
    """Whether a module's source has a top-level ``if __name__ == "__main__":`` block."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return True  # let it run and fail loudly rather than vanish from the table
    for node in tree.body:
        if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
            continue
        test = node.test
        sides = [test.left, *test.comparators]
        if (
            len(sides) == 2
            and isinstance(test.ops[0], ast.Eq)
            and any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides)
            and any(isinstance(s, ast.Constant) and s.value == "__main__" for s in sides)
        ):
            return True
    return False


def discover(directory: Path) -> list[str]:
    """The names of the benchmark scripts in ``directory``, sorted (dunder/underscore skipped)."""
    return [
        path.stem
        for path in sorted(directory.glob("*.py"))
        if not path.stem.startswith("_") and is_benchmark(path.read_text(encoding="utf-8"))
    ]


def parse_output(name: str, stdout: str, *, quick: bool) -> Result:
    """The one JSON line a script printed, checked; ValueError says what is wrong."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if len(lines) != 1:
        raise ValueError(f"stdout must be exactly one JSON line, got {len(lines)} lines")
    try:
        data = json.loads(lines[0])
    except json.JSONDecodeError as exc:
        raise ValueError(f"stdout is not JSON: {exc}: {lines[0][:200]!r}") from exc
    result = Result.from_json(data)
    if result.bench != name:
        raise ValueError(f"bench/{name}.py reported itself as {result.bench!r}")
    if result.quick != quick:
        raise ValueError(f"asked for quick={quick}, the script reported quick={result.quick}")
    return result


def tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` (0: none, just look) to a process group; False if no process is left in it."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member changed credentials: nothing we may stop
        return False
    return True


def _stop_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the script's process group, then SIGKILL whatever is left after a grace period."""
    if not _signal_group(proc.pid, signal.SIGTERM):
        return
    deadline = time.monotonic() + GRACE_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None and not _signal_group(proc.pid, 0):
            return
        time.sleep(0.05)
    _signal_group(proc.pid, signal.SIGKILL)


def run_script(
    path: Path,
    *,
    quick: bool,
    timeout: float,
    cwd: Path,
    verbose: bool = False,
) -> Outcome:
    """Run ``python <path> [--quick]`` and judge what came out."""
    name = path.stem
    argv = [sys.executable, str(path), *(["--quick"] if quick else [])]
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=None if verbose else subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    error = ""
    status: Status = "failed"
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        exited = proc.poll() is not None
        _stop_group(proc)
        stdout, stderr = proc.communicate()
        if exited:
            error = "exited, but processes it started kept its output open (stopped them)"
        else:
            status, error = "timeout", f"timed out after {timeout:g} s (stopped it)"
    else:
        if _signal_group(proc.pid, 0):  # does anyone remain?
            _stop_group(proc)
            error = "left processes running after it exited (stopped them)"
    seconds = round(time.perf_counter() - start, 3)
    stderr_tail = tail(stderr or "")
    if not error and proc.returncode != 0:
        error = f"exited with status {proc.returncode}"
    if error:
        return Outcome(name, status, seconds, None, error, stderr_tail)
    try:
        result = parse_output(name, stdout, quick=quick)
    except ValueError as exc:
        return Outcome(name, "failed", seconds, None, f"bad output: {exc}", stderr_tail)
    return Outcome(name, "ok", seconds, result, "", stderr_tail)
