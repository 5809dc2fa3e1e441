"""Several connections on one database: visibility, exclusive leases, lock timeouts."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from shoal.errors import StoreError
from shoal.store import InstanceRecord, Store

MESSAGES = 400


def test_two_stores_see_each_others_committed_writes(db_path: Path) -> None:
    with Store.open(db_path) as one, Store.open(db_path) as two:
        one.ensure_topic("orders", 60.0)
        message_id = two.publish("orders", "1", now=1.0)
        assert [m.id for m in one.list_messages("orders")] == [message_id]
        record = InstanceRecord(
            kind="service", name="api", ordinal=0, runtime="process", state="running", updated_at=1
        )
        one.upsert_instance(record)
        assert two.list_instances() == [record]
        revision = two.record_revision("h", "{}", "shoal.yaml", 2.0)
        assert one.latest_revision() == revision
        one.ack([message_id], now=3.0)
        assert two.depth("orders") == 0


def _fill(db_path: Path) -> set[int]:
    with Store.open(db_path) as store:
        store.ensure_topic("orders", 3600.0)
        return set(store.publish_many("orders", [str(n) for n in range(MESSAGES)], now=0.0))


def test_concurrent_leases_from_threads_never_share_a_message(db_path: Path) -> None:
    published = _fill(db_path)
    workers = 4
    start = threading.Barrier(workers)
    taken: list[list[int]] = [[] for _ in range(workers)]
    failures: list[BaseException] = []

    def consume(slot: int) -> None:
        try:
            with Store.open(db_path) as store:  # one connection per thread
                start.wait()
                while leased := store.lease("orders", limit=3, lease_s=3600.0, now=1.0):
                    taken[slot].extend(m.id for m in leased)
        except BaseException as exc:  # reported below, on the test's thread
            failures.append(exc)

    threads = [
        threading.Thread(target=consume, args=(n,), name=f"consumer-{n}") for n in range(workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not failures
    everything = [message_id for ids in taken for message_id in ids]
    assert len(everything) == len(set(everything)), "a message was leased twice"
    assert set(everything) == published


def test_one_store_shared_by_threads_serialises_its_calls(store: Store) -> None:
    store.ensure_topic("orders", 3600.0)
    per_thread = 50

    def publish(n: int) -> None:
        for k in range(per_thread):
            store.publish("orders", f"{n * 1000 + k}", now=0.0)

    threads = [threading.Thread(target=publish, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert store.depth("orders") == 4 * per_thread


CONSUMER = """
import sys
from pathlib import Path

from shoal.store import Store

with Store.open(Path(sys.argv[1])) as store:
    print("ready", flush=True)
    sys.stdin.readline()  # start together
    while leased := store.lease("orders", 2, 3600.0, 1.0):
        for message in leased:
            print(message.id, flush=True)
"""


def test_concurrent_leases_from_processes_never_share_a_message(
    db_path: Path, child_env: dict[str, str]
) -> None:
    published = _fill(db_path)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CONSUMER, str(db_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=child_env,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline() == "ready\n"
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outputs = [child.communicate(timeout=30)[0] for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert [child.returncode for child in children] == [0, 0]
    everything = [int(line) for out in outputs for line in out.split()]
    assert len(everything) == len(set(everything)), "a message was leased twice"
    assert set(everything) == published


def test_reads_go_on_while_another_connection_writes(db_path: Path) -> None:
    with Store.open(db_path, busy_timeout_s=0.2) as store:
        store.ensure_topic("orders", 60.0)
        store.publish("orders", "1", now=0.0)
        other = sqlite3.connect(db_path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("INSERT INTO topics (name, retention_s) VALUES ('uncommitted', 1)")
            # WAL: readers are not blocked, and see only committed data
            assert [t.name for t in store.list_topics()] == ["orders"]
            assert store.depth("orders") == 1
            # a writer waits busy_timeout, then gives up with a temporary error
            with pytest.raises(StoreError, match="locked") as caught:
                store.publish("orders", "2", now=1.0)
            assert caught.value.temporary is True
            other.execute("COMMIT")
        finally:
            other.close()
        # nothing half-done was left behind; the store works again
        assert store.publish("orders", "3", now=2.0) > 0
        assert [t.name for t in store.list_topics()] == ["orders", "uncommitted"]
        assert store.depth("orders") == 2
