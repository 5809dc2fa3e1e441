"""Revisions, instances and invocations round-trip through the store."""

from __future__ import annotations

import dataclasses

import pytest

from shoal.errors import StoreError
from shoal.store import (
    INSTANCE_KINDS,
    INSTANCE_STATES,
    INVOCATION_STATUSES,
    RUNTIME_NAMES,
    InstanceRecord,
    InvocationRecord,
    Revision,
    Store,
)


def test_revisions_are_numbered_and_read_back(store: Store) -> None:
    assert store.latest_revision() is None
    assert store.get_revision(1) is None
    first = store.record_revision("sha256:aa", '{"name": "shop"}', "/srv/shop/shoal.yaml", 100.0)
    second = store.record_revision("sha256:bb", '{"name": "shop2"}', "shoal.yaml", 200.5)
    assert first == Revision(
        id=1,
        created_at=100.0,
        manifest_hash="sha256:aa",
        manifest_json='{"name": "shop"}',
        source="/srv/shop/shoal.yaml",
    )
    assert second.id == 2
    assert isinstance(second.created_at, float)
    assert store.latest_revision() == second
    assert store.get_revision(1) == first
    assert store.list_revisions() == [second, first]
    assert store.list_revisions(limit=1) == [second]
    assert store.list_revisions(limit=0) == []


def test_records_are_frozen(store: Store) -> None:
    revision = store.record_revision("h", "{}", "s", 1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        revision.id = 5  # type: ignore[misc]


def _instance(**changes: object) -> InstanceRecord:
    base = InstanceRecord(
        kind="service",
        name="catalog",
        ordinal=0,
        runtime="process",
        state="starting",
        updated_at=10.0,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_an_instance_round_trips_every_field(store: Store) -> None:
    revision = store.record_revision("h", "{}", "shoal.yaml", 1.0)
    record = InstanceRecord(
        kind="service",
        name="catalog",
        ordinal=2,
        runtime="container",
        state="running",
        updated_at=12.5,
        revision_id=revision.id,
        ready=True,
        pid=4242,
        pid_start_time=1700000000.25,
        port=8081,
        restarts=3,
        started_at=11.0,
        stopped_at=None,
        exit_code=None,
        stop_reason=None,
        runtime_ref="c0ffee",
    )
    store.upsert_instance(record)
    assert store.get_instance("service", "catalog", 2) == record
    assert store.list_instances() == [record]


def test_upsert_replaces_every_field_of_the_same_identity(store: Store) -> None:
    store.upsert_instance(_instance(pid=1, ready=True, port=9000))
    stopped = _instance(
        state="exited",
        ready=False,
        pid=None,
        port=None,
        exit_code=-9,
        stop_reason="killed",
        stopped_at=20.0,
        restarts=1,
        updated_at=20.0,
    )
    store.upsert_instance(stopped)
    assert store.list_instances() == [stopped]


def test_list_instances_filters_and_orders(store: Store) -> None:
    records = [
        _instance(kind="function", name="thumb", ordinal=1, runtime="function"),
        _instance(kind="service", name="catalog", ordinal=1),
        _instance(kind="function", name="thumb", ordinal=0, runtime="function"),
        _instance(kind="service", name="catalog", ordinal=0),
        _instance(kind="template", name="thumb", ordinal=0, runtime="function"),
        _instance(kind="job", name="report", ordinal=0),
    ]
    for record in records:
        store.upsert_instance(record)
    key = [(r.kind, r.name, r.ordinal) for r in store.list_instances()]
    assert key == sorted(key)
    assert len(key) == len(records)
    assert [r.ordinal for r in store.list_instances(kind="service")] == [0, 1]
    assert {r.kind for r in store.list_instances(name="thumb")} == {"function", "template"}
    assert [r.ordinal for r in store.list_instances(kind="function", name="thumb")] == [0, 1]
    assert store.list_instances(kind="job", name="nope") == []


def test_delete_instance(store: Store) -> None:
    store.upsert_instance(_instance())
    assert store.delete_instance("service", "catalog", 0) is True
    assert store.delete_instance("service", "catalog", 0) is False
    assert store.get_instance("service", "catalog", 0) is None


def test_every_allowed_word_is_stored(store: Store) -> None:
    ordinal = 0
    for kind in INSTANCE_KINDS:
        for runtime in RUNTIME_NAMES:
            for state in INSTANCE_STATES:
                store.upsert_instance(
                    _instance(kind=kind, runtime=runtime, state=state, ordinal=ordinal)
                )
                ordinal += 1
    assert len(store.list_instances()) == ordinal


@pytest.mark.parametrize(
    ("field", "value"),
    [("kind", "daemon"), ("runtime", "lambda"), ("state", "RUNNING"), ("ordinal", -1)],
)
def test_words_outside_the_schema_are_refused(store: Store, field: str, value: object) -> None:
    with pytest.raises(StoreError, match="CHECK constraint"):
        store.upsert_instance(_instance(**{field: value}))
    assert store.list_instances() == []


def test_an_instance_of_an_unknown_revision_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="FOREIGN KEY"):
        store.upsert_instance(_instance(revision_id=99))


def _invocation(request_id: str, started_at: float, **changes: object) -> InvocationRecord:
    base = InvocationRecord(
        request_id=request_id,
        function="thumb",
        ordinal=0,
        started_at=started_at,
        duration_ms=12.34,
        billed_ms=13,
        max_memory_bytes=40 << 20,
        cold=False,
        status="ok",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_invocations_round_trip_newest_first(store: Store) -> None:
    cold = _invocation("r1", 1.0, cold=True, init_duration_ms=3.5, duration_ms=20.0)
    failed = _invocation("r2", 3.0, status="error", error_type="ValueError")
    throttled = _invocation(
        "r3", 2.0, status="throttled", ordinal=None, max_memory_bytes=None, duration_ms=0.0
    )
    other = _invocation("r4", 5.0, function="resize")
    for record in (cold, failed, throttled):
        store.record_invocation(record)
    store.record_invocations([other])
    assert store.list_invocations("thumb") == [failed, throttled, cold]
    assert store.list_invocations("thumb", limit=2) == [failed, throttled]
    assert store.list_invocations("resize") == [other]
    assert store.list_invocations("missing") == []


def test_every_invocation_status_is_stored(store: Store) -> None:
    store.record_invocations(
        _invocation(f"r-{status}", float(n), status=status)
        for n, status in enumerate(INVOCATION_STATUSES)
    )
    assert {r.status for r in store.list_invocations("thumb")} == set(INVOCATION_STATUSES)


def test_a_request_id_is_recorded_once(store: Store) -> None:
    store.record_invocation(_invocation("dup", 1.0))
    with pytest.raises(StoreError, match="UNIQUE"):
        store.record_invocation(_invocation("dup", 2.0))
    # a failed batch records nothing of itself
    with pytest.raises(StoreError):
        store.record_invocations([_invocation("fresh", 3.0), _invocation("dup", 4.0)])
    assert [r.request_id for r in store.list_invocations("thumb")] == ["dup"]


def test_trim_invocations_keeps_the_newest(store: Store) -> None:
    store.record_invocations(_invocation(f"r{n}", float(n)) for n in range(10))
    store.record_invocation(_invocation("other", 0.0, function="resize"))
    assert store.trim_invocations("thumb", keep=3) == 7
    assert [r.request_id for r in store.list_invocations("thumb")] == ["r9", "r8", "r7"]
    assert store.trim_invocations("thumb", keep=3) == 0
    assert len(store.list_invocations("resize")) == 1
