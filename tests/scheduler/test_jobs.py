"""Job policies as pure decisions: allow / forbid / replace, outcomes, retries."""

from __future__ import annotations

from shoal.scheduler.jobs import Due, on_due, run_outcome, should_retry


def test_nothing_running_always_starts() -> None:
    for policy in ("allow", "forbid", "replace"):
        assert on_due(policy, []) == Due(start=True)


def test_allow_starts_beside_running_runs() -> None:
    assert on_due("allow", [3, 4]) == Due(start=True)


def test_forbid_skips_and_says_why() -> None:
    due = on_due("forbid", [7])
    assert not due.start and due.stop == () and "run #7 still running" in due.reason


def test_replace_stops_the_running_ones_first() -> None:
    due = on_due("replace", [2, 5])
    assert due.start and due.stop == (2, 5)


def test_outcomes() -> None:
    assert run_outcome(0, "exited with code 0") == run_outcome(0, "")
    assert run_outcome(0, "").success and run_outcome(0, "").reason == "completed"
    failed = run_outcome(3, "exited with code 3")
    assert not failed.success and failed.exit_code == 3 and failed.reason == "exited with code 3"
    slow = run_outcome(None, "killed by SIGTERM", timed_out=True, timeout_s=1.5)
    assert not slow.success and slow.reason == "timed out after 1.5s and was stopped"
    assert "replaced" in run_outcome(None, "", replaced=True).reason


def test_retries() -> None:
    failed = run_outcome(1, "")
    assert should_retry(failed, attempt=1, retries=2)
    assert should_retry(failed, attempt=2, retries=2)
    assert not should_retry(failed, attempt=3, retries=2)
    assert not should_retry(run_outcome(0, ""), attempt=1, retries=2)
    assert not should_retry(run_outcome(None, "", replaced=True), attempt=1, retries=2)
