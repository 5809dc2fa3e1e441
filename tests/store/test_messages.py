"""Topics and messages: publish, lease, ack, release, dead-letter, retention."""

from __future__ import annotations

import pytest

from shoal.errors import StoreError
from shoal.store import Message, Store, Topic


@pytest.fixture
def bus(store: Store) -> Store:
    store.ensure_topic("orders", retention_s=3600.0)
    store.ensure_topic("orders.failed", retention_s=7200.0)
    return store


def test_topics_are_created_updated_listed_and_deleted(store: Store) -> None:
    assert store.ensure_topic("b", 60.0) == Topic(name="b", retention_s=60.0)
    assert store.ensure_topic("a", 1.5) == Topic(name="a", retention_s=1.5)
    assert store.ensure_topic("b", 120) == Topic(name="b", retention_s=120.0)
    assert store.list_topics() == [
        Topic(name="a", retention_s=1.5),
        Topic(name="b", retention_s=120.0),
    ]
    assert store.delete_topic("a") is True
    assert store.delete_topic("a") is False
    assert [t.name for t in store.list_topics()] == ["b"]


def test_retention_must_be_positive(store: Store) -> None:
    with pytest.raises(StoreError, match="CHECK"):
        store.ensure_topic("t", 0)


def test_publish_round_trips(bus: Store) -> None:
    first = bus.publish("orders", '{"id": 1}', now=100.0)
    second = bus.publish("orders", '{"id": 2}', now=101.0)
    assert second > first
    assert bus.list_messages("orders") == [
        Message(
            id=first,
            topic="orders",
            payload_json='{"id": 1}',
            created_at=100.0,
            visible_at=100.0,
            attempts=0,
            lease_until=None,
            acked_at=None,
            dead_letter_of=None,
            last_error=None,
        ),
        Message(
            id=second,
            topic="orders",
            payload_json='{"id": 2}',
            created_at=101.0,
            visible_at=101.0,
            attempts=0,
            lease_until=None,
            acked_at=None,
            dead_letter_of=None,
            last_error=None,
        ),
    ]
    assert bus.get_message(first) == bus.list_messages("orders")[0]
    assert bus.get_message(999) is None
    assert bus.depth("orders") == 2
    assert bus.depth("orders.failed") == 0


def test_publish_many_is_one_batch_in_order(bus: Store) -> None:
    ids = bus.publish_many("orders", [f'{{"n": {n}}}' for n in range(5)], now=1.0)
    assert ids == sorted(ids)
    assert len(set(ids)) == 5
    assert [m.payload_json for m in bus.list_messages("orders")] == [
        f'{{"n": {n}}}' for n in range(5)
    ]
    assert bus.publish_many("orders", [], now=1.0) == []


def test_publish_to_an_unknown_topic_is_refused(bus: Store) -> None:
    with pytest.raises(StoreError, match="unknown topic 'nope'"):
        bus.publish("nope", "{}", now=1.0)
    with pytest.raises(StoreError, match="unknown topic"):
        bus.publish_many("nope", ["{}", "{}"], now=1.0)


def test_a_payload_that_is_not_json_is_refused_and_the_batch_with_it(bus: Store) -> None:
    with pytest.raises(StoreError, match="json_valid"):
        bus.publish("orders", "{not json", now=1.0)
    with pytest.raises(StoreError):
        bus.publish_many("orders", ['{"ok": true}', "nope"], now=1.0)
    assert bus.depth("orders") == 0


def test_ids_are_never_reused_after_a_purge(bus: Store) -> None:
    first = bus.publish("orders", "1", now=0.0)
    assert bus.purge_expired(now=1e9) == 1
    assert bus.publish("orders", "2", now=1e9) > first


def test_lease_takes_visible_messages_oldest_first_and_counts_attempts(bus: Store) -> None:
    ids = [bus.publish("orders", str(n), now=float(n)) for n in range(5)]
    leased = bus.lease("orders", limit=3, lease_s=30.0, now=10.0)
    assert [m.id for m in leased] == ids[:3]
    assert all(m.attempts == 1 and m.lease_until == 40.0 for m in leased)
    # leased messages are not handed out again while their lease runs
    assert [m.id for m in bus.lease("orders", limit=10, lease_s=30.0, now=39.9)] == ids[3:]
    assert bus.lease("orders", limit=10, lease_s=30.0, now=39.9) == []
    # still unacked, so still counted
    assert bus.depth("orders") == 5


def test_lease_skips_messages_not_yet_visible(bus: Store) -> None:
    bus.publish("orders", '"later"', now=100.0)
    assert bus.lease("orders", limit=10, lease_s=5.0, now=99.0) == []
    assert len(bus.lease("orders", limit=10, lease_s=5.0, now=100.0)) == 1


def test_lease_only_looks_at_its_topic(bus: Store) -> None:
    bus.publish("orders.failed", '"x"', now=1.0)
    assert bus.lease("orders", limit=10, lease_s=5.0, now=2.0) == []


def test_lease_with_no_room_takes_nothing(bus: Store) -> None:
    bus.publish("orders", '"x"', now=1.0)
    assert bus.lease("orders", limit=0, lease_s=5.0, now=2.0) == []
    assert bus.list_messages("orders")[0].attempts == 0


def test_an_expired_lease_hands_the_message_out_again(bus: Store) -> None:
    message_id = bus.publish("orders", '"x"', now=0.0)
    (first,) = bus.lease("orders", limit=1, lease_s=10.0, now=1.0)
    assert bus.lease("orders", limit=1, lease_s=10.0, now=10.999) == []
    (second,) = bus.lease("orders", limit=1, lease_s=10.0, now=11.0)  # expires at 11.0
    assert first.id == second.id == message_id
    assert (first.attempts, second.attempts) == (1, 2)
    assert second.lease_until == 21.0


def test_ack_marks_done_once(bus: Store) -> None:
    ids = [bus.publish("orders", str(n), now=0.0) for n in range(3)]
    bus.lease("orders", limit=3, lease_s=10.0, now=1.0)
    assert bus.ack(ids[:2], now=2.0) == 2
    assert bus.ack(ids[:2], now=3.0) == 0  # twice is harmless, first time kept
    assert bus.ack([], now=3.0) == 0
    assert bus.ack([12345], now=3.0) == 0
    assert [m.id for m in bus.list_messages("orders")] == [ids[2]]
    acked = [m for m in bus.list_messages("orders", include_acked=True) if m.acked_at]
    assert [(m.id, m.acked_at, m.lease_until) for m in acked] == [
        (ids[0], 2.0, None),
        (ids[1], 2.0, None),
    ]
    assert bus.depth("orders") == 1
    # acked messages are never leased again, even after the lease ran out
    assert [m.id for m in bus.lease("orders", limit=10, lease_s=10.0, now=100.0)] == [ids[2]]


def test_release_makes_the_message_visible_again_later_with_the_error(bus: Store) -> None:
    message_id = bus.publish("orders", '"x"', now=0.0)
    bus.lease("orders", limit=1, lease_s=30.0, now=1.0)
    assert bus.release(message_id, visible_at=5.0, error="boom") is True
    released = bus.get_message(message_id)
    assert released is not None
    assert (released.visible_at, released.lease_until, released.last_error) == (5.0, None, "boom")
    assert bus.lease("orders", limit=1, lease_s=30.0, now=4.9) == []
    (again,) = bus.lease("orders", limit=1, lease_s=30.0, now=5.0)
    assert (again.attempts, again.last_error) == (2, "boom")
    # error=None keeps the last one
    assert bus.release(message_id, visible_at=6.0, error=None) is True
    kept = bus.get_message(message_id)
    assert kept is not None
    assert kept.last_error == "boom"


def test_release_of_an_acked_or_unknown_message_does_nothing(bus: Store) -> None:
    message_id = bus.publish("orders", '"x"', now=0.0)
    bus.ack([message_id], now=1.0)
    assert bus.release(message_id, visible_at=5.0, error="late") is False
    assert bus.release(4242, visible_at=5.0, error="late") is False
    acked = bus.get_message(message_id)
    assert acked is not None
    assert acked.last_error is None


def test_dead_letter_moves_the_message_in_one_step(bus: Store) -> None:
    message_id = bus.publish("orders", '{"id": 7}', now=0.0)
    bus.lease("orders", limit=1, lease_s=30.0, now=1.0)
    dlq_id = bus.dead_letter(message_id, "orders.failed", error="ValueError: bad", now=2.0)
    assert dlq_id is not None
    assert dlq_id > message_id
    assert bus.list_messages("orders") == []
    source = bus.get_message(message_id)
    assert source is not None
    assert (source.acked_at, source.lease_until, source.last_error) == (
        2.0,
        None,
        "ValueError: bad",
    )
    assert bus.list_messages("orders.failed") == [
        Message(
            id=dlq_id,
            topic="orders.failed",
            payload_json='{"id": 7}',
            created_at=2.0,
            visible_at=2.0,
            attempts=0,
            lease_until=None,
            acked_at=None,
            dead_letter_of="orders",
            last_error="ValueError: bad",
        )
    ]
    # the message was acked by the move: a second move finds nothing to do
    assert bus.dead_letter(message_id, "orders.failed", error="again", now=3.0) is None
    assert bus.depth("orders.failed") == 1


def test_dead_letter_to_an_unknown_topic_changes_nothing(bus: Store) -> None:
    message_id = bus.publish("orders", "1", now=0.0)
    before = bus.get_message(message_id)
    with pytest.raises(StoreError, match="unknown topic 'nowhere'"):
        bus.dead_letter(message_id, "nowhere", error="e", now=1.0)
    assert bus.get_message(message_id) == before
    assert bus.depth("orders") == 1


def test_dead_letter_of_an_unknown_message_is_an_error(bus: Store) -> None:
    with pytest.raises(StoreError, match="no such message"):
        bus.dead_letter(999, "orders.failed", error="e", now=1.0)


def test_purge_expired_applies_each_topics_retention(bus: Store) -> None:
    # orders keeps 3600 s, orders.failed 7200 s
    old_order = bus.publish("orders", "1", now=0.0)
    new_order = bus.publish("orders", "2", now=1000.0)
    old_failure = bus.publish("orders.failed", "3", now=0.0)
    bus.ack([new_order], now=1001.0)
    assert bus.purge_expired(now=3599.0) == 0
    assert bus.purge_expired(now=3600.0) == 1  # unacked, but past retention
    assert bus.get_message(old_order) is None
    assert bus.get_message(old_failure) is not None
    assert bus.purge_expired(now=4600.0) == 1  # acked: it goes at retention too
    assert bus.get_message(new_order) is None
    assert bus.get_message(old_failure) is not None
    assert bus.purge_expired(now=7200.0) == 1
    assert bus.get_message(old_failure) is None
    assert bus.purge_expired(now=1e12) == 0


def test_purge_acked_removes_only_acked_messages(bus: Store) -> None:
    done = bus.publish("orders", "1", now=0.0)
    pending = bus.publish("orders", "2", now=0.0)
    bus.ack([done], now=10.0)
    assert bus.purge_acked(before=9.0) == 0
    assert bus.purge_acked(before=10.0) == 1
    assert [m.id for m in bus.list_messages("orders", include_acked=True)] == [pending]


def test_deleting_a_topic_deletes_its_messages(bus: Store) -> None:
    message_id = bus.publish("orders", "1", now=0.0)
    assert bus.delete_topic("orders") is True
    assert bus.get_message(message_id) is None
    with pytest.raises(StoreError, match="unknown topic"):
        bus.publish("orders", "1", now=0.0)
