"""The message operations against a plain-Python model, in random order (hypothesis).

The model is the specification in a dozen lines: a message is deliverable when it is unacked,
visible and not under a running lease; lease takes the deliverable ones by (visible_at, id).
Every step runs on a real database file and compares the store with the model.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from shoal.store import Store


@dataclass
class Model:
    topic: str
    visible_at: float
    attempts: int = 0
    lease_until: float | None = None
    acked_at: float | None = None
    last_error: str | None = None
    dead_letter_of: str | None = None

    def deliverable(self, now: float) -> bool:
        return (
            self.acked_at is None
            and self.visible_at <= now
            and (self.lease_until is None or self.lease_until <= now)
        )


TOPICS = ("a", "b")
DLQ = "dead"


class MessageMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="shoal-store-model-"))
        self.store = Store.open(self.folder / "state.db")
        for name in (*TOPICS, DLQ):
            self.store.ensure_topic(name, 1e9)
        self.now = 0.0
        self.model: dict[int, Model] = {}

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _known(self) -> list[int]:
        return sorted(self.model)

    @rule(seconds=st.integers(min_value=0, max_value=20))
    def advance(self, seconds: int) -> None:
        self.now += seconds

    @rule(topic=st.sampled_from(TOPICS), count=st.integers(min_value=1, max_value=3))
    def publish(self, topic: str, count: int) -> None:
        ids = self.store.publish_many(topic, ["{}"] * count, self.now)
        for message_id in ids:
            assert message_id not in self.model
            self.model[message_id] = Model(topic=topic, visible_at=self.now)

    @rule(
        topic=st.sampled_from((*TOPICS, DLQ)),
        limit=st.integers(min_value=0, max_value=4),
        lease_s=st.integers(min_value=1, max_value=30),
    )
    def lease(self, topic: str, limit: int, lease_s: int) -> None:
        expected = sorted(
            (m.visible_at, message_id)
            for message_id, m in self.model.items()
            if m.topic == topic and m.deliverable(self.now)
        )[:limit]
        leased = self.store.lease(topic, limit, float(lease_s), self.now)
        assert [m.id for m in leased] == [message_id for _, message_id in expected]
        for message in leased:
            model = self.model[message.id]
            model.attempts += 1
            model.lease_until = self.now + lease_s
            assert message.attempts == model.attempts
            assert message.lease_until == model.lease_until

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        ids = data.draw(st.lists(st.sampled_from(self._known()), max_size=3, unique=True))
        expected = 0
        for message_id in ids:
            model = self.model[message_id]
            if model.acked_at is None:
                model.acked_at, model.lease_until = self.now, None
                expected += 1
        assert self.store.ack(ids, self.now) == expected

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data(), delay=st.integers(min_value=0, max_value=10))
    def release(self, data: st.DataObject, delay: int) -> None:
        message_id = data.draw(st.sampled_from(self._known()))
        model = self.model[message_id]
        changed = self.store.release(message_id, self.now + delay, f"error {self.now}")
        assert changed == (model.acked_at is None)
        if changed:
            model.visible_at, model.lease_until = self.now + delay, None
            model.last_error = f"error {self.now}"

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def dead_letter(self, data: st.DataObject) -> None:
        message_id = data.draw(st.sampled_from(self._known()))
        model = self.model[message_id]
        new_id = self.store.dead_letter(message_id, DLQ, "gave up", self.now)
        if model.acked_at is not None:
            assert new_id is None
            return
        assert new_id is not None
        model.acked_at, model.lease_until, model.last_error = self.now, None, "gave up"
        self.model[new_id] = Model(
            topic=DLQ, visible_at=self.now, last_error="gave up", dead_letter_of=model.topic
        )

    @invariant()
    def store_matches_model(self) -> None:
        for topic in (*TOPICS, DLQ):
            unacked = [
                i for i, m in sorted(self.model.items()) if m.topic == topic and m.acked_at is None
            ]
            assert [m.id for m in self.store.list_messages(topic)] == unacked
            assert self.store.depth(topic) == len(unacked)
        for topic in (*TOPICS, DLQ):
            for message in self.store.list_messages(topic, include_acked=True):
                model = self.model[message.id]
                assert (
                    message.visible_at,
                    message.attempts,
                    message.lease_until,
                    message.acked_at,
                    message.last_error,
                    message.dead_letter_of,
                ) == (
                    model.visible_at,
                    model.attempts,
                    model.lease_until,
                    model.acked_at,
                    model.last_error,
                    model.dead_letter_of,
                )


MessageMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestMessageModel = MessageMachine.TestCase
