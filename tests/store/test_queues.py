"""The event bus's queue queries: mixed batches, due times, settling a batch, figures, dead
letters and redrive, leases of a dead daemon, and writes that do not wait for the disk."""

from __future__ import annotations

import pytest

from shoal.errors import StoreError
from shoal.store import Store


def test_publish_batch_returns_consecutive_ids_across_topics(store: Store) -> None:
    store.ensure_topic("a", 60.0)
    store.ensure_topic("b", 60.0)
    first = store.publish("a", "{}", now=1.0)
    ids = store.publish_batch([("a", '{"n": 1}'), ("b", '{"n": 2}'), ("a", '{"n": 3}')], 2.0)
    assert ids == [first + 1, first + 2, first + 3]
    assert [store.get_message(i).payload_json for i in ids] == [  # type: ignore[union-attr]
        '{"n": 1}',
        '{"n": 2}',
        '{"n": 3}',
    ]
    with pytest.raises(StoreError, match="unknown topic 'nope'"):
        store.publish_batch([("a", "{}"), ("nope", "{}")], 3.0)
    assert store.depth("a") == 3  # the failed batch left nothing
    assert store.publish_batch([], 4.0) == []


def test_next_due_settle_and_figures(store: Store) -> None:
    store.ensure_topic("q", 60.0)
    store.ensure_topic("q.dlq", 60.0)
    assert store.next_due("q") is None
    ok, retry, dead = store.publish_batch([("q", "1"), ("q", "2"), ("q", "3")], 10.0)
    assert store.next_due("q") == 10.0
    assert len(store.lease("q", 10, 30.0, now=10.0, durable=False)) == 3
    assert store.next_due("q") == 40.0  # leased until then
    [figure] = store.queue_figures(["q"], now=11.0)
    assert (figure.depth, figure.leased, figure.oldest_created_at) == (3, 3, 10.0)
    moved = store.settle([ok], [(retry, 20.0, "later")], [(dead, "q.dlq", "gave up")], 12.0)
    assert moved == 1
    assert store.next_due("q") == 20.0
    assert store.get_message(ok).acked_at == 12.0  # type: ignore[union-attr]
    assert store.get_message(retry).last_error == "later"  # type: ignore[union-attr]
    [letter] = store.dead_letters("q")
    assert letter.topic == "q.dlq" and letter.last_error == "gave up" and letter.payload_json == "3"
    figures = {f.topic: f for f in store.queue_figures(["q", "q.dlq"], now=13.0)}
    assert figures["q"].depth == 1 and figures["q"].dead_letters == 1
    assert figures["q.dlq"].depth == 1
    assert store.redrive("q", now=14.0) == 1
    assert store.dead_letters("q") == []
    # oldest visible first: the redriven one (visible at 14) before the retry (at 20)
    assert [m.payload_json for m in store.lease("q", 10, 5.0, now=30.0)] == ["3", "2"]


def test_end_leases_frees_what_a_dead_daemon_held(store: Store) -> None:
    store.ensure_topic("q", 60.0)
    store.publish_many("q", ["1", "2"], now=1.0)
    store.lease("q", 1, 3600.0, now=1.0)
    assert store.end_leases() == 1
    assert len(store.lease("q", 10, 10.0, now=2.0)) == 2


def test_writes_that_do_not_wait_for_the_disk_leave_the_store_durable(store: Store) -> None:
    store.ensure_topic("q", 60.0)
    store.publish("q", "{}", now=1.0)
    store.lease("q", 1, 10.0, now=1.0, durable=False)
    assert store.sqlite_settings()["synchronous"] == 2  # FULL again after the relaxed write
    with pytest.raises(StoreError):
        store.settle([], [], [(1, "missing-topic", "x")], 2.0, durable=False)
    assert store.sqlite_settings()["synchronous"] == 2
