"""Jobs in the daemon: `shoal run`, concurrency policies, timeout, history with exit codes, logs,
and a schedule missed while the daemon was down run once on start."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

import pytest

from shoal.store import Store
from tests.daemon.conftest import Project, wait_until

pytestmark = pytest.mark.timeout(90)

JOB = """
import os, sys, time
print(f"run {os.environ['SHOAL_RUN']} of {os.environ['SHOAL_JOB']} says hello", flush=True)
time.sleep(float(sys.argv[1]))
sys.exit(int(sys.argv[2]))
"""

MANIFEST = """
name: demo
jobs:
  quick: {{command: [{py}, job.py, "0", "0"]}}
  failing: {{command: [{py}, job.py, "0", "3"]}}
  lone: {{command: [{py}, job.py, "30", "0"], concurrency_policy: forbid}}
  newest: {{command: [{py}, job.py, "30", "0"], concurrency_policy: replace}}
  slow: {{command: [{py}, job.py, "30", "0"], timeout: 500ms}}
  report:
    command: [{py}, job.py, "0", "0"]
    schedule: "0 * * * *"
    starting_deadline: 3h
"""


def runs(project: Project, job: str) -> list[dict[str, Any]]:
    result = project.shoal("jobs", job, "--json", check=True)
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def finished(project: Project, job: str, count: int) -> list[dict[str, Any]]:
    rows = [r for r in runs(project, job) if r["finished_at"] is not None]
    return rows if len(rows) >= count else []


def test_runs_policies_timeout_history_and_missed_schedule(project: Project) -> None:
    (project.root / "job.py").write_text(JOB)
    project.write(MANIFEST.format(py=json.dumps(sys.executable)))
    with Store.open(project.root / ".shoal" / "state.db") as store:  # a daemon ran 2 h ago
        store.set_schedule_fired("job:report", "0 * * * *", time.time() - 7200, None)
    project.shoal("up", "-d", check=True)
    # the hourly fire missed while "down" runs once, marked missed
    [missed] = wait_until(lambda: finished(project, "report", 1), 15)
    assert missed["trigger"] == "missed" and missed["exit_code"] == 0
    # by hand: exit codes and reasons kept
    assert project.shoal("run", "quick").returncode == 0
    assert project.shoal("run", "failing").returncode == 0
    [ok] = wait_until(lambda: finished(project, "quick", 1), 15)
    [bad] = wait_until(lambda: finished(project, "failing", 1), 15)
    assert ok["exit_code"] == 0 and ok["reason"] == "completed" and ok["trigger"] == "manual"
    assert bad["exit_code"] == 3
    logs = project.shoal("logs", "quick").stdout
    assert f"run {ok['id']} of quick says hello" in logs
    # forbid: a second run while one runs is refused
    assert project.shoal("run", "lone").returncode == 0
    second = project.shoal("run", "lone")
    assert second.returncode == 4 and "forbid" in second.stderr
    [row] = [r for r in project.ps() if r["kind"] == "job" and r["name"] == "lone"]
    assert row["state"] in ("starting", "running") and row["runtime"] == "process"
    # replace: the running one is stopped, the new one runs
    project.shoal("run", "newest", check=True)
    wait_until(lambda: any(r["finished_at"] is None for r in runs(project, "newest")), 10)
    project.shoal("run", "newest", check=True)
    [replaced] = wait_until(lambda: finished(project, "newest", 1), 15)
    assert "replaced" in (replaced["reason"] or "")
    # timeout: stopped and recorded as such
    project.shoal("run", "slow", check=True)
    [slow] = wait_until(lambda: finished(project, "slow", 1), 15)
    assert "timed out after 0.5s" in slow["reason"]
    table = project.shoal("jobs", check=True).stdout
    assert "report" in table and "0 * * * *" in table and "forbid" in table
    listing = json.loads(project.shoal("jobs", "--json", check=True).stdout)
    assert next(j for j in listing if j["name"] == "lone")["running"]
    assert next(j for j in listing if j["name"] == "report")["next_fire_at"] > time.time()
    assert project.shoal("run", "nope").returncode == 3


def test_a_run_left_by_a_killed_daemon_is_stopped_and_recorded_lost(project: Project) -> None:
    (project.root / "job.py").write_text(JOB)
    project.write(MANIFEST.format(py=json.dumps(sys.executable)))
    project.shoal("up", "-d", check=True)
    project.shoal("run", "lone", check=True)
    [row] = wait_until(
        lambda: [r for r in project.ps() if r["kind"] == "job" and r["pid"] is not None], 10
    )
    os.kill(project.daemon_pid(), signal.SIGKILL)
    project.shoal("up", "-d", check=True)
    [lost] = wait_until(lambda: finished(project, "lone", 1), 15)
    assert lost["reason"].startswith("lost: the daemon stopped while it ran")
    assert f"its process {row['pid']} was killed" in lost["reason"]
    wait_until(lambda: not os.path.exists(f"/proc/{row['pid']}"), 5)


def test_apply_brings_new_jobs_and_schedules(project: Project) -> None:
    (project.root / "job.py").write_text(JOB)
    py = json.dumps(sys.executable)
    project.write(f"name: demo\njobs:\n  quick: {{command: [{py}, job.py, '0', '0']}}\n")
    project.shoal("up", "-d", check=True)
    assert project.shoal("run", "added").returncode == 3
    project.write(
        f"name: demo\njobs:\n  quick: {{command: [{py}, job.py, '0', '0']}}\n"
        f"  added: {{command: [{py}, job.py, '0', '5'], schedule: '*/5 * * * *'}}\n"
    )
    project.shoal("apply", check=True)
    project.shoal("run", "added", check=True)
    [run] = wait_until(lambda: finished(project, "added", 1), 15)
    assert run["exit_code"] == 5
    listing = json.loads(project.shoal("jobs", "--json", check=True).stdout)
    added = next(j for j in listing if j["name"] == "added")
    assert added["schedule"] == "*/5 * * * *" and added["next_fire_at"] > time.time()
