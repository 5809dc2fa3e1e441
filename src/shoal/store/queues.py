"""The queue queries of the event bus that go beyond one message: mixed batches, due times,
dead letters and redrive. :class:`~shoal.store.store.Store` exposes each as a method.

Used by ``shoal.events``: the bus's group commit inserts a batch of messages for several
topics in one transaction (one fsync for all); the deliverers ask when their queue next has
something due; ``shoal dlq`` lists and redrives dead letters; ``/metrics`` reads queue figures.
Every function takes the :class:`~shoal.store.database.Database` and returns plain values or
records; time is an argument.
"""

# S608: the SQL below interpolates only constant column lists and "?" placeholders.
# ruff: noqa: S608

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from shoal.errors import StoreError
from shoal.store import rows
from shoal.store.database import Database
from shoal.store.records import Message

_INSERT = """
    INSERT INTO messages (topic, payload, created_at, visible_at, dead_letter_of, last_error)
    VALUES (?, ?, ?, ?, NULL, NULL)
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueFigures:
    """What ``/metrics`` and ``shoal topics`` show of one queue (topic)."""

    topic: str
    depth: int  # unacked messages (waiting or leased)
    leased: int  # of those, under a running lease at ``now``
    oldest_created_at: float | None  # the oldest unacked message (its age is the delivery lag)
    dead_letters: int  # unacked dead letters that came from this queue


def publish_batch(db: Database, items: Sequence[tuple[str, str]], now: float) -> list[int]:
    """Insert ``(topic, payload_json)`` pairs in one transaction; their ids, in order.

    Every topic must exist (StoreError names the first that does not; nothing is inserted).
    """
    if not items:
        return []
    with db.write(f"publish {len(items)} messages") as conn:
        for topic in {topic for topic, _ in items}:
            if conn.execute("SELECT 1 FROM topics WHERE name = ?", (topic,)).fetchone() is None:
                raise StoreError(
                    f"unknown topic {topic!r}; declare it under topics: in the manifest"
                )
        # One executemany: one C call for the whole batch. Calling execute() per row gives up
        # and retakes the GIL per row, and under load each retake waits for the event loop.
        conn.executemany(_INSERT, ((topic, payload, now, now) for topic, payload in items))
        # AUTOINCREMENT ids of one transaction, written alone (BEGIN IMMEDIATE), are consecutive.
        (last,) = conn.execute("SELECT last_insert_rowid()").fetchone()
    return list(range(last - len(items) + 1, last + 1))


def next_due(db: Database, topic: str) -> float | None:
    """When the first unacked message of ``topic`` becomes deliverable (visible and its lease
    over); ``None`` when the queue is empty. A time at or before now means: deliverable now."""
    with db.read(f"read when topic {topic!r} is next due") as conn:
        (due,) = conn.execute(
            "SELECT min(max(visible_at, coalesce(lease_until, 0))) FROM messages"
            " INDEXED BY messages_pending WHERE topic = ? AND acked_at IS NULL",
            (topic,),
        ).fetchone()
    return None if due is None else float(due)


def figures(db: Database, topics: Sequence[str], now: float) -> list[QueueFigures]:
    """Depth, leased count, oldest unacked message and dead letters of each topic."""
    out = []
    with db.read("read queue figures") as conn:
        for topic in topics:
            depth, leased, oldest = conn.execute(
                "SELECT count(*), coalesce(sum(lease_until > ?), 0), min(created_at)"
                " FROM messages INDEXED BY messages_pending"
                " WHERE topic = ? AND acked_at IS NULL",
                (now, topic),
            ).fetchone()
            (dead,) = conn.execute(
                "SELECT count(*) FROM messages WHERE dead_letter_of = ? AND acked_at IS NULL",
                (topic,),
            ).fetchone()
            out.append(
                QueueFigures(
                    topic=topic,
                    depth=int(depth),
                    leased=int(leased),
                    oldest_created_at=None if oldest is None else float(oldest),
                    dead_letters=int(dead),
                )
            )
    return out


def dead_letters(db: Database, source: str, limit: int = 1000) -> list[Message]:
    """The unacked dead letters that came from ``source``, oldest first."""
    with db.read(f"list dead letters of {source!r}") as conn:
        found = conn.execute(
            f"SELECT {rows.MESSAGE_COLUMNS} FROM messages"
            " WHERE dead_letter_of = ? AND acked_at IS NULL ORDER BY id LIMIT ?",
            (source, max(limit, 0)),
        ).fetchall()
    return [rows.message(row) for row in found]


def redrive(db: Database, source: str, now: float) -> int:
    """Send every unacked dead letter of ``source`` back to it, in one transaction: a fresh
    copy on ``source`` (visible now, no attempts) and the dead letter acked. The count moved."""
    with db.write(f"redrive dead letters of {source!r}") as conn:
        found: list[sqlite3.Row] = conn.execute(
            "SELECT id, payload FROM messages WHERE dead_letter_of = ? AND acked_at IS NULL"
            " ORDER BY id",
            (source,),
        ).fetchall()
        if not found:
            return 0
        if conn.execute("SELECT 1 FROM topics WHERE name = ?", (source,)).fetchone() is None:
            raise StoreError(f"cannot redrive to {source!r}: the topic no longer exists")
        for message_id, payload in found:
            conn.execute(_INSERT, (source, payload, now, now))
            conn.execute(
                "UPDATE messages SET acked_at = ?, lease_until = NULL WHERE id = ?",
                (now, message_id),
            )
    return len(found)


def settle(
    db: Database,
    acked: Sequence[int],
    retried: Sequence[tuple[int, float, str]],
    dead: Sequence[tuple[int, str, str]],
    now: float,
    *,
    durable: bool = True,
) -> int:
    """The end of one delivered batch, in one transaction: ack ``acked``; make each
    ``(id, visible_at, error)`` of ``retried`` visible again later; move each
    ``(id, dead_letter_topic, error)`` of ``dead`` to its dead-letter topic (the copy remembers
    the topic it came from and the error). Returns how many messages were dead-lettered.
    Messages acked meanwhile are left alone. ``durable=False``: see ``Database.write`` (a lost
    ack means one more delivery, which at-least-once allows)."""
    moved = 0
    size = len(acked) + len(retried) + len(dead)
    with db.write(f"settle a batch of {size} messages", durable=durable) as conn:
        conn.executemany(
            "UPDATE messages SET acked_at = ?, lease_until = NULL"
            " WHERE id = ? AND acked_at IS NULL",
            ((now, message_id) for message_id in acked),
        )
        conn.executemany(
            "UPDATE messages SET visible_at = ?, lease_until = NULL, last_error = ?"
            " WHERE id = ? AND acked_at IS NULL",
            ((visible_at, error, message_id) for message_id, visible_at, error in retried),
        )
        for message_id, target, error in dead:
            row = conn.execute(
                "SELECT topic, payload FROM messages WHERE id = ? AND acked_at IS NULL",
                (message_id,),
            ).fetchone()
            if row is None:
                continue
            if conn.execute("SELECT 1 FROM topics WHERE name = ?", (target,)).fetchone() is None:
                raise StoreError(f"unknown dead-letter topic {target!r}")
            conn.execute(
                "UPDATE messages SET acked_at = ?, lease_until = NULL, last_error = ? WHERE id = ?",
                (now, error, message_id),
            )
            conn.execute(
                "INSERT INTO messages (topic, payload, created_at, visible_at, dead_letter_of,"
                " last_error) VALUES (?, ?, ?, ?, ?, ?)",
                (target, row[1], now, now, row[0], error),
            )
            moved += 1
    return moved


def end_leases(db: Database) -> int:
    """End every running lease (a daemon starting: whoever held them is gone); the count."""
    with db.write("end the leases of a previous daemon") as conn:
        cursor = conn.execute(
            "UPDATE messages SET lease_until = NULL"
            " WHERE lease_until IS NOT NULL AND acked_at IS NULL"
        )
    return cursor.rowcount


__all__ = [
    "QueueFigures",
    "dead_letters",
    "end_leases",
    "figures",
    "next_due",
    "publish_batch",
    "redrive",
    "settle",
]
