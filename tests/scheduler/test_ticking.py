"""The ticker in virtual time: cron and rate fire on time for days in milliseconds, a fire missed
while the daemon was down runs once within the starting deadline, state is kept in the store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shoal.scheduler.ticking import Entry, FireKind, Ticker
from shoal.store import Store
from tests.scheduler.clock import VirtualClock

pytestmark = [pytest.mark.timeout(30), pytest.mark.asyncio]

START = datetime(2026, 3, 1, 0, 0, 30, tzinfo=UTC).timestamp()
HOUR = 3600.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "state.db") as opened:
        yield opened


class Fires:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, FireKind]] = []

    def __call__(self, entry: Entry, at: float, kind: FireKind) -> None:
        stamp = datetime.fromtimestamp(at, UTC).strftime("%m-%d %H:%M")
        self.seen.append((entry.target, stamp, kind))

    def of(self, target: str) -> list[str]:
        return [stamp for t, stamp, _ in self.seen if t == target]


async def test_cron_and_rate_fire_on_time_for_a_day(store: Store) -> None:
    clock = VirtualClock(START)
    fires = Fires()
    entries = [
        Entry(key="job:report", target="report", expression="0 2 * * *"),
        Entry(key="function:beat:0", target="beat", expression="rate(5 minutes)"),
        Entry(key="function:aws:0", target="aws", expression="cron(0 */6 ? * * *)"),
        Entry(key="job:berlin", target="berlin", expression="30 9 * * *", timezone="Europe/Berlin"),
    ]
    ticker = Ticker(entries, store, fires, clock)
    ticker.start()
    try:
        await clock.advance(24 * HOUR)
    finally:
        await ticker.stop()
    assert fires.of("report") == ["03-01 02:00"]
    assert fires.of("aws") == ["03-01 06:00", "03-01 12:00", "03-01 18:00", "03-02 00:00"]
    assert fires.of("berlin") == ["03-01 08:30"]  # 09:30 CET
    beats = fires.of("beat")
    assert len(beats) == 24 * 12 and beats[:2] == ["03-01 00:05", "03-01 00:10"]
    saved = store.get_schedule("job:report")
    assert (
        saved is not None and saved.last_fire_at == datetime(2026, 3, 1, 2, tzinfo=UTC).timestamp()
    )
    assert saved.next_fire_at == datetime(2026, 3, 2, 2, tzinfo=UTC).timestamp()


async def test_dst_spring_forward_runs_a_fixed_time_once(store: Store) -> None:
    start = datetime(2024, 3, 30, 12, tzinfo=UTC).timestamp()
    clock = VirtualClock(start)
    fires = Fires()
    entry = Entry(key="job:j", target="j", expression="30 2 * * *", timezone="Europe/Berlin")
    ticker = Ticker([entry], store, fires, clock)
    ticker.start()
    try:
        await clock.advance(48 * HOUR)
    finally:
        await ticker.stop()
    assert fires.of("j") == ["03-31 01:00", "04-01 00:30"]  # 03:00 CEST in the gap, then 02:30


async def test_a_missed_fire_runs_once_on_start_within_the_deadline(store: Store) -> None:
    entry = Entry(
        key="job:hourly",
        target="hourly",
        expression="0 * * * *",
        catch_up=True,
        starting_deadline_s=2 * HOUR,
    )
    store.set_schedule_fired(entry.key, entry.expression, START - 5 * HOUR, None)  # down 5 h
    clock = VirtualClock(START)
    fires = Fires()
    ticker = Ticker([entry], store, fires, clock)
    ticker.prime()
    assert fires.seen == [("hourly", "03-01 00:00", "missed")]  # the latest missed, once
    assert ticker.next[entry.key] == START - 30 + HOUR


async def test_a_missed_fire_older_than_the_deadline_is_skipped(store: Store) -> None:
    entry = Entry(
        key="job:daily",
        target="daily",
        expression="0 20 * * *",
        catch_up=True,
        starting_deadline_s=HOUR,
    )
    store.set_schedule_fired(entry.key, entry.expression, START - 2 * 86400, None)
    fires = Fires()
    Ticker([entry], store, fires, VirtualClock(START)).prime()
    assert fires.seen == []  # 20:00 yesterday is 4 h late: past the 1 h deadline


async def test_functions_are_not_caught_up_and_a_changed_schedule_starts_afresh(
    store: Store,
) -> None:
    beat = Entry(key="function:beat:0", target="beat", expression="rate(1 minute)")
    store.set_schedule_fired(beat.key, beat.expression, START - HOUR, None)
    job = Entry(key="job:j", target="j", expression="0 * * * *", catch_up=True)
    store.set_schedule_fired(job.key, "0 0 * * *", START - 5 * HOUR, None)  # another schedule
    fires = Fires()
    ticker = Ticker([beat, job], store, fires, VirtualClock(START))
    ticker.prime()
    assert fires.seen == []
    saved = store.get_schedule("job:j")
    assert saved is not None and saved.expression == "0 * * * *"


async def test_a_broken_target_never_stops_the_other_schedules(store: Store) -> None:
    clock = VirtualClock(START)
    fires = Fires()

    def fire(entry: Entry, at: float, kind: FireKind) -> None:
        if entry.target == "broken":
            raise RuntimeError("boom")
        fires(entry, at, kind)

    entries = [
        Entry(key="a", target="broken", expression="* * * * *"),
        Entry(key="b", target="fine", expression="*/10 * * * *"),
    ]
    ticker = Ticker(entries, store, fire, clock)
    ticker.start()
    try:
        await clock.advance(HOUR)
    finally:
        await ticker.stop()
    assert len(fires.of("fine")) == 6
