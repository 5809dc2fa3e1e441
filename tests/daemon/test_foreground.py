"""`shoal up` in the foreground: Ctrl-C stops everything, a second Ctrl-C forces; `logs -f`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.daemon.conftest import Project, processes_in, wait_until

pytestmark = pytest.mark.timeout(60)


def start_foreground(project: Project) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "shoal", "up"],
        cwd=project.root,
        env={**os.environ, "NO_COLOR": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_second_ctrl_c_forces_a_stop_that_would_wait_for_grace(project: Project) -> None:
    project.write(f"""
        name: demo
        services:
          stubborn:
            command: [{json.dumps(sys.executable)}, app.py]
            env: {{IGNORE_TERM: "1"}}
            health: {{http: /healthz}}
            stop_grace_period: 30s
    """)
    up = start_foreground(project)
    try:
        wait_until(
            lambda: (project.root / ".shoal" / "api-url").exists() and project.ready("stubborn"), 20
        )
        daemon = up.pid
        os.kill(daemon, signal.SIGINT)
        time.sleep(0.5)
        assert up.poll() is None  # waiting for the grace period of an instance ignoring SIGTERM
        started = time.monotonic()
        os.kill(daemon, signal.SIGINT)
        out, _ = up.communicate(timeout=15)
        assert time.monotonic() - started < 10
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
    text = out.decode(errors="replace")
    assert "forced: killing every instance" in text and "daemon stopped" in text
    wait_until(lambda: processes_in(project.root) == [], 5)


def test_logs_follow_streams_new_lines(project: Project) -> None:
    project.write(f"""
        name: demo
        services:
          web:
            command: [{json.dumps(sys.executable)}, app.py]
            health: {{http: /healthz, interval: 100ms}}
    """)
    project.shoal("up", "-d", check=True)
    follow = subprocess.Popen(
        [sys.executable, "-m", "shoal", "logs", "-f", "web"],
        cwd=project.root,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert follow.stdout is not None
        deadline = time.monotonic() + 10
        seen = 0
        while time.monotonic() < deadline and seen < 3:  # health checks keep writing lines
            line = follow.stdout.readline()
            if "GET /healthz" in line:
                seen += 1
        assert seen == 3
    finally:
        follow.kill()
        follow.wait()
        assert follow.stdout is not None
        follow.stdout.close()
