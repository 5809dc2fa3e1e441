"""Schedules and job runs round-trip through the store."""

from __future__ import annotations

import pytest

from shoal.errors import StoreError
from shoal.store import JOB_TRIGGERS, JobRun, Schedule, Store


def test_a_schedule_is_registered_fired_and_read_back(store: Store) -> None:
    assert store.get_schedule("nightly") is None
    registered = store.set_schedule_fired("nightly", "0 2 * * *", None, 7200.0)
    assert registered == Schedule(
        name="nightly", expression="0 2 * * *", last_fire_at=None, next_fire_at=7200.0
    )
    fired = store.set_schedule_fired("nightly", "0 2 * * *", 7200.0, 93600.0)
    assert fired == Schedule(
        name="nightly", expression="0 2 * * *", last_fire_at=7200.0, next_fire_at=93600.0
    )
    assert store.get_schedule("nightly") == fired


def test_reregistering_keeps_the_last_firing(store: Store) -> None:
    store.set_schedule_fired("tick", "rate(5 minutes)", 100.0, 400.0)
    changed = store.set_schedule_fired("tick", "rate(1 minute)", None, 160)
    assert changed == Schedule(
        name="tick", expression="rate(1 minute)", last_fire_at=100.0, next_fire_at=160.0
    )


def test_schedules_are_listed_and_deleted(store: Store) -> None:
    store.set_schedule_fired("b", "rate(1 minute)", None, None)
    store.set_schedule_fired("a", "rate(2 minutes)", None, None)
    assert [s.name for s in store.list_schedules()] == ["a", "b"]
    assert store.delete_schedule("a") is True
    assert store.delete_schedule("a") is False
    assert [s.name for s in store.list_schedules()] == ["b"]


def test_a_job_run_starts_and_finishes(store: Store) -> None:
    run_id = store.start_job_run("report", "schedule", now=10.0)
    running = store.get_job_run(run_id)
    assert running == JobRun(
        id=run_id,
        job="report",
        started_at=10.0,
        finished_at=None,
        exit_code=None,
        trigger="schedule",
        reason=None,
    )
    assert store.unfinished_job_runs() == [running]
    finished = store.finish_job_run(run_id, exit_code=0, reason=None, now=12.5)
    assert finished == JobRun(
        id=run_id,
        job="report",
        started_at=10.0,
        finished_at=12.5,
        exit_code=0,
        trigger="schedule",
        reason=None,
    )
    assert store.get_job_run(run_id) == finished
    assert store.unfinished_job_runs() == []
    assert store.get_job_run(run_id + 1) is None


def test_a_run_can_end_without_an_exit_code(store: Store) -> None:
    run_id = store.start_job_run("report", "missed", now=1.0)
    run = store.finish_job_run(run_id, None, "skipped: concurrency_policy forbid", now=1.0)
    assert (run.exit_code, run.reason, run.trigger) == (
        None,
        "skipped: concurrency_policy forbid",
        "missed",
    )


def test_finishing_twice_or_an_unknown_run_is_an_error(store: Store) -> None:
    run_id = store.start_job_run("report", "manual", now=1.0)
    store.finish_job_run(run_id, 1, "failed", now=2.0)
    with pytest.raises(StoreError, match="already finished"):
        store.finish_job_run(run_id, 0, None, now=3.0)
    with pytest.raises(StoreError, match="no such run"):
        store.finish_job_run(999, 0, None, now=3.0)
    run = store.get_job_run(run_id)
    assert run is not None
    assert (run.exit_code, run.finished_at) == (1, 2.0)


def test_every_trigger_is_stored_and_others_refused(store: Store) -> None:
    for trigger in JOB_TRIGGERS:
        store.start_job_run("j", trigger, now=0.0)
    assert {r.trigger for r in store.list_job_runs("j")} == set(JOB_TRIGGERS)
    with pytest.raises(StoreError, match="CHECK"):
        store.start_job_run("j", "webhook", now=0.0)  # type: ignore[arg-type]


def test_job_runs_are_listed_newest_first_per_job(store: Store) -> None:
    ids = [store.start_job_run("report", "schedule", now=float(n)) for n in range(5)]
    other = store.start_job_run("backup", "manual", now=2.5)
    assert [r.id for r in store.list_job_runs("report")] == ids[::-1]
    assert [r.id for r in store.list_job_runs("report", limit=2)] == ids[::-1][:2]
    assert [r.id for r in store.list_job_runs("backup")] == [other]
    assert [r.id for r in store.unfinished_job_runs("backup")] == [other]
    assert [r.id for r in store.unfinished_job_runs()] == sorted([*ids, other])


def test_trimming_keeps_the_newest_runs_and_every_unfinished_one(store: Store) -> None:
    ids = [store.start_job_run("report", "schedule", now=float(n)) for n in range(6)]
    for run_id in ids[1:]:
        store.finish_job_run(run_id, 0, None, now=10.0)
    other = store.start_job_run("backup", "manual", now=0.0)
    store.finish_job_run(other, 0, None, now=1.0)
    # ids[0] is still running: it is old, but it stays
    assert store.trim_job_runs("report", keep=2) == 3
    assert [r.id for r in store.list_job_runs("report")] == [ids[5], ids[4], ids[0]]
    assert store.trim_job_runs("report", keep=2) == 0
    assert [r.id for r in store.list_job_runs("backup")] == [other]
    assert store.trim_job_runs("report", keep=0) == 2
    assert [r.id for r in store.list_job_runs("report")] == [ids[0]]
