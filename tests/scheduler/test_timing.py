"""Next fire times on real calendars: month ends, leap days, AWS markers, years, DST, missed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

import shoal.scheduler
from shoal.manifest.schedules import parse_schedule
from shoal.scheduler import fires_between, missed_fire, next_fire

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
SANTIAGO = ZoneInfo("America/Santiago")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def every(first: datetime, minutes: int, count: int) -> list[datetime]:
    return [first + timedelta(minutes=minutes * i) for i in range(count)]


def fires(
    text: str, start: datetime, end: datetime, tz: ZoneInfo | timezone = UTC
) -> list[datetime]:
    return list(fires_between(parse_schedule(text), start, end, tz))


def test_public_api() -> None:
    assert shoal.scheduler.__all__ == ["fires_between", "missed_fire", "next_fire"]


@pytest.mark.parametrize(
    ("text", "after", "expected"),
    [
        ("0 2 * * *", utc(2024, 1, 1), utc(2024, 1, 1, 2)),
        ("0 2 * * *", utc(2024, 1, 1, 2), utc(2024, 1, 2, 2)),  # strictly after
        ("0 2 * * *", utc(2024, 1, 1, 1, 59) + timedelta(seconds=59), utc(2024, 1, 1, 2)),
        ("* * * * *", utc(2024, 1, 1, 0, 0) + timedelta(seconds=30), utc(2024, 1, 1, 0, 1)),
        ("0 0 1 1 *", utc(2024, 12, 31, 23, 59), utc(2025, 1, 1)),
        ("59 23 31 12 *", utc(2024, 1, 1), utc(2024, 12, 31, 23, 59)),
        ("0 0 31 * *", utc(2024, 4, 15), utc(2024, 5, 31)),  # April has no 31st
        ("0 0 30 * *", utc(2024, 2, 1), utc(2024, 3, 30)),  # nor February a 30th
        ("0 0 29 2 *", utc(2024, 2, 28, 12), utc(2024, 2, 29)),
        ("0 0 29 2 *", utc(2024, 3, 1), utc(2028, 2, 29)),
        ("0 0 29 2 *", utc(2096, 3, 1), utc(2104, 2, 29)),  # 2100 is no leap year
        ("0 0 13 * 5", utc(2024, 9, 1), utc(2024, 9, 6)),  # Friday OR the 13th (Vixie)
        ("0 0 13 * 5", utc(2024, 9, 12), utc(2024, 9, 13)),
        ("0 0 */2 * 1", utc(2024, 1, 2), utc(2024, 1, 15)),  # odd days AND Mondays (cronie)
        ("0 9 * * 1-5", utc(2024, 1, 5, 10), utc(2024, 1, 8, 9)),  # Friday evening -> Monday
        ("0 12 * * 7", utc(2024, 1, 1), utc(2024, 1, 7, 12)),  # 7 is Sunday
        ("@weekly", utc(2024, 1, 1), utc(2024, 1, 7)),
        ("@monthly", utc(2024, 1, 31, 12), utc(2024, 2, 1)),
        ("@hourly", utc(2024, 1, 1, 23, 0) + timedelta(seconds=1), utc(2024, 1, 2)),
        ("cron(0 10 ? * 1 *)", utc(2024, 1, 1), utc(2024, 1, 7, 10)),  # AWS 1 is Sunday
        ("cron(0 10 ? * 7 *)", utc(2024, 1, 1), utc(2024, 1, 6, 10)),  # AWS 7 is Saturday
        ("cron(0 12 L * ? *)", utc(2024, 2, 10), utc(2024, 2, 29, 12)),
        ("cron(0 12 L * ? *)", utc(2023, 2, 10), utc(2023, 2, 28, 12)),
        ("cron(0 12 L * ? *)", utc(2024, 4, 30, 12), utc(2024, 5, 31, 12)),
        ("cron(0 9 LW * ? *)", utc(2024, 3, 1), utc(2024, 3, 29, 9)),  # 31st is a Sunday
        ("cron(0 9 LW * ? *)", utc(2024, 6, 1), utc(2024, 6, 28, 9)),  # 30th is a Sunday
        ("cron(0 9 LW * ? *)", utc(2024, 8, 1), utc(2024, 8, 30, 9)),  # 31st is a Saturday
        ("cron(0 9 15W * ? *)", utc(2024, 6, 1), utc(2024, 6, 14, 9)),  # Sat 15th -> Fri
        ("cron(0 9 16W * ? *)", utc(2024, 6, 1), utc(2024, 6, 17, 9)),  # Sun 16th -> Mon
        ("cron(0 9 1W * ? *)", utc(2024, 5, 31), utc(2024, 6, 3, 9)),  # Sat 1st -> Mon 3rd
        ("cron(0 9 30W * ? *)", utc(2024, 6, 1), utc(2024, 6, 28, 9)),  # Sun 30th -> Fri 28th
        ("cron(0 9 31W * ? *)", utc(2024, 4, 1), utc(2024, 5, 31, 9)),  # no 31st in April
        ("cron(0 9 ? * 3#2 *)", utc(2024, 1, 1), utc(2024, 1, 9, 9)),  # 2nd Tuesday
        ("cron(0 9 ? * 2#5 *)", utc(2024, 1, 30), utc(2024, 4, 29, 9)),  # next 5th Monday
        ("cron(0 9 ? * 6L *)", utc(2024, 2, 1), utc(2024, 2, 23, 9)),  # last Friday
        ("cron(0 9 ? * 5L *)", utc(2024, 2, 1), utc(2024, 2, 29, 9)),  # last Thursday
        ("cron(0 9 ? * THUL *)", utc(2024, 2, 1), utc(2024, 2, 29, 9)),
        ("cron(0 9 ? * L *)", utc(2024, 1, 1), utc(2024, 1, 6, 9)),  # L alone: Saturday
        ("cron(0 0 29 2 ? *)", utc(2097, 1, 1), utc(2104, 2, 29)),
        ("cron(0 0 1 1 ? 2030)", utc(2029, 12, 31), utc(2030, 1, 1)),
        ("cron(0 0 1 1 ? 2030)", utc(2030, 1, 1), None),  # the only year has passed
        ("cron(0 0 1 1 ? 2025,2030)", utc(2025, 1, 1), utc(2030, 1, 1)),
        ("cron(* * * * ? *)", utc(2199, 12, 31, 23, 58), utc(2199, 12, 31, 23, 59)),
        ("cron(* * * * ? *)", utc(2199, 12, 31, 23, 59), None),  # AWS years end with 2199
        ("cron(0 0 29 2 ? 2025-2027)", utc(2024, 1, 1), None),  # no leap year in range
    ],
)
def test_known_next_fires(text: str, after: datetime, expected: datetime | None) -> None:
    assert next_fire(parse_schedule(text), after) == expected


def test_results_are_utc_and_inputs_may_be_in_any_zone() -> None:
    schedule = parse_schedule("0 9 * * *")
    after = datetime(2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=5)))  # 07:00 UTC
    fire = next_fire(schedule, after)
    assert fire == utc(2024, 1, 1, 9)
    assert fire is not None
    assert fire.tzinfo is UTC


def test_fixed_offset_zone() -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    assert next_fire(parse_schedule("0 9 * * *"), utc(2024, 1, 1), india) == utc(2024, 1, 1, 3, 30)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="after must be an aware datetime"):
        next_fire(parse_schedule("* * * * *"), datetime(2024, 1, 1))


def test_fires_between_is_half_open() -> None:
    got = fires("0 * * * *", utc(2024, 1, 1), utc(2024, 1, 1, 3))
    assert got == [utc(2024, 1, 1, 1), utc(2024, 1, 1, 2), utc(2024, 1, 1, 3)]


# ---------------------------------------------------------------- DST, wall clock of the zone

DST_CASES = [
    # Berlin, spring: 02:00 CET -> 03:00 CEST at 01:00Z on 2024-03-31
    ("30 2 * * *", BERLIN, utc(2024, 3, 30), utc(2024, 4, 1, 12),
     [utc(2024, 3, 30, 1, 30), utc(2024, 3, 31, 1), utc(2024, 4, 1, 0, 30)]),
    ("0,30 2 * * *", BERLIN, utc(2024, 3, 30, 12), utc(2024, 3, 31, 12), [utc(2024, 3, 31, 1)]),
    ("0 3 * * *", BERLIN, utc(2024, 3, 30, 12), utc(2024, 3, 31, 12), [utc(2024, 3, 31, 1)]),
    ("30 * * * *", BERLIN, utc(2024, 3, 31), utc(2024, 3, 31, 2),
     [utc(2024, 3, 31, 0, 30), utc(2024, 3, 31, 1, 30)]),  # hourly: the gap is skipped
    ("*/15 * * * *", BERLIN, utc(2024, 3, 31, 0, 20), utc(2024, 3, 31, 1, 30),
     [utc(2024, 3, 31, 0, 30), utc(2024, 3, 31, 0, 45), utc(2024, 3, 31, 1),
      utc(2024, 3, 31, 1, 15), utc(2024, 3, 31, 1, 30)]),
    # Berlin, fall: 03:00 CEST -> 02:00 CET at 01:00Z on 2024-10-27; 02:00-02:59 comes twice
    ("30 2 * * *", BERLIN, utc(2024, 10, 26), utc(2024, 10, 28, 12),
     [utc(2024, 10, 26, 0, 30), utc(2024, 10, 27, 0, 30), utc(2024, 10, 28, 1, 30)]),
    ("0 2-3 * * *", BERLIN, utc(2024, 10, 26, 12), utc(2024, 10, 27, 12),
     [utc(2024, 10, 27), utc(2024, 10, 27, 2)]),
    ("30 * * * *", BERLIN, utc(2024, 10, 26, 23), utc(2024, 10, 27, 3),
     [utc(2024, 10, 26, 23, 30), utc(2024, 10, 27, 0, 30), utc(2024, 10, 27, 1, 30),
      utc(2024, 10, 27, 2, 30)]),
    ("*/15 * * * *", BERLIN, utc(2024, 10, 26, 23, 50), utc(2024, 10, 27, 1, 30),
     every(utc(2024, 10, 27), minutes=15, count=7)),
    # New York, spring: 02:00 EST -> 03:00 EDT at 07:00Z on 2024-03-10
    ("30 2 * * *", NEW_YORK, utc(2024, 3, 9), utc(2024, 3, 11, 12),
     [utc(2024, 3, 9, 7, 30), utc(2024, 3, 10, 7), utc(2024, 3, 11, 6, 30)]),
    ("*/30 * * * *", NEW_YORK, utc(2024, 3, 10, 5, 59), utc(2024, 3, 10, 8),
     [utc(2024, 3, 10, 6), utc(2024, 3, 10, 6, 30), utc(2024, 3, 10, 7),
      utc(2024, 3, 10, 7, 30), utc(2024, 3, 10, 8)]),
    # New York, fall: 02:00 EDT -> 01:00 EST at 06:00Z on 2024-11-03; 01:00-01:59 comes twice
    ("30 1 * * *", NEW_YORK, utc(2024, 11, 2), utc(2024, 11, 4, 12),
     [utc(2024, 11, 2, 5, 30), utc(2024, 11, 3, 5, 30), utc(2024, 11, 4, 6, 30)]),
    ("*/20 * * * *", NEW_YORK, utc(2024, 11, 3, 4, 50), utc(2024, 11, 3, 7),
     every(utc(2024, 11, 3, 5), minutes=20, count=7)),
    # Santiago: both changes at midnight (23:00-23:59 Saturday twice; Sunday 00:00-00:59 missing)
    ("30 23 * * *", SANTIAGO, utc(2024, 4, 6, 12), utc(2024, 4, 8, 12),
     [utc(2024, 4, 7, 2, 30), utc(2024, 4, 8, 3, 30)]),
    ("30 0 * * *", SANTIAGO, utc(2024, 9, 7, 12), utc(2024, 9, 9, 12),
     [utc(2024, 9, 8, 4), utc(2024, 9, 9, 3, 30)]),
]  # fmt: skip


@pytest.mark.parametrize(("text", "tz", "start", "end", "expected"), DST_CASES)
def test_dst_transitions(
    text: str, tz: ZoneInfo, start: datetime, end: datetime, expected: list[datetime]
) -> None:
    assert fires(text, start, end, tz) == expected


def test_a_repeated_interval_across_midnight() -> None:
    # Goose Bay, 2007-11-04 03:01Z: 00:00:59 ADT -> 23:01 AST, so 23:01-00:00 comes twice
    goose_bay = ZoneInfo("America/Goose_Bay")
    hourly, daily = parse_schedule("0 * * * *"), parse_schedule("0 0 * * *")
    start, end = utc(2007, 11, 4, 1, 30), utc(2007, 11, 4, 5, 30)
    assert list(fires_between(hourly, start, end, goose_bay)) == every(utc(2007, 11, 4, 2), 60, 4)
    assert list(fires_between(daily, start, end, goose_bay)) == [utc(2007, 11, 4, 3)]
    every_minute = parse_schedule("* * * * *")
    just_before = utc(2007, 11, 4, 2, 59) + timedelta(seconds=30)  # 23:59:30 ADT on the 3rd
    assert next_fire(every_minute, just_before, goose_bay) == utc(2007, 11, 4, 3)  # 00:00 ADT
    second_pass = utc(2007, 11, 4, 3, 30)  # 23:29 AST on the 3rd
    assert next_fire(every_minute, second_pass, goose_bay) == utc(2007, 11, 4, 3, 31)


def test_step_jobs_keep_real_spacing_across_both_transitions() -> None:
    for tz, day in ((BERLIN, utc(2024, 3, 31)), (BERLIN, utc(2024, 10, 27)),
                    (NEW_YORK, utc(2024, 3, 10)), (NEW_YORK, utc(2024, 11, 3))):  # fmt: skip
        got = fires("*/15 * * * *", day - timedelta(hours=6), day + timedelta(hours=18), tz)
        gaps = {later - earlier for earlier, later in pairwise(got)}
        assert gaps == {timedelta(minutes=15)}, (tz, day)


def test_a_fixed_time_in_the_second_pass_waits_for_the_next_day() -> None:
    schedule = parse_schedule("30 1 * * *")
    after = utc(2024, 11, 3, 6, 10)  # 01:10 EST, the second 01:10 of the night
    assert next_fire(schedule, after, NEW_YORK) == utc(2024, 11, 4, 6, 30)
    assert next_fire(parse_schedule("30 * * * *"), after, NEW_YORK) == utc(2024, 11, 3, 6, 30)


# ---------------------------------------------------------------- rate(...)


def test_rate_default_anchor_is_after_rounded_to_the_minute() -> None:
    schedule = parse_schedule("rate(5 minutes)")
    half_past_two = utc(2024, 1, 1, 10, 2) + timedelta(seconds=30)
    assert next_fire(schedule, half_past_two) == utc(2024, 1, 1, 10, 7)


def test_rate_counts_from_the_anchor() -> None:
    schedule, anchor = parse_schedule("rate(5 minutes)"), utc(2024, 1, 1, 10)
    half_past_two = utc(2024, 1, 1, 10, 2) + timedelta(seconds=30)
    assert next_fire(schedule, half_past_two, anchor=anchor) == utc(2024, 1, 1, 10, 5)
    assert next_fire(schedule, utc(2024, 1, 1, 10, 5), anchor=anchor) == utc(2024, 1, 1, 10, 10)
    assert next_fire(schedule, utc(2024, 1, 1, 9), anchor=anchor) == anchor  # not started yet


def test_rate_days_are_24_hours_whatever_the_zone() -> None:
    schedule, anchor = parse_schedule("rate(1 day)"), utc(2024, 3, 30, 12)
    got = list(fires_between(schedule, anchor, utc(2024, 4, 2, 12), BERLIN, anchor))
    assert got == [utc(2024, 3, 31, 12), utc(2024, 4, 1, 12), utc(2024, 4, 2, 12)]


def test_rate_at_the_end_of_time() -> None:
    after = datetime.max.replace(tzinfo=UTC) - timedelta(hours=1)
    assert next_fire(parse_schedule("rate(1 day)"), after) is None


# ---------------------------------------------------------------- missed fires


@pytest.mark.parametrize(
    ("text", "last_fire", "now", "deadline", "expected"),
    [
        ("0 2 * * *", utc(2024, 1, 1, 2), utc(2024, 1, 5, 2, 10), 900, utc(2024, 1, 5, 2)),
        ("0 2 * * *", utc(2024, 1, 1, 2), utc(2024, 1, 5, 2, 20), 900, None),  # too late
        ("0 2 * * *", utc(2024, 1, 1, 2), utc(2024, 1, 5, 2, 15), 900, utc(2024, 1, 5, 2)),
        ("0 2 * * *", utc(2024, 1, 1, 2), utc(2024, 1, 5, 23), None, utc(2024, 1, 5, 2)),
        ("0 2 * * *", utc(2024, 1, 5, 2), utc(2024, 1, 5, 23), None, None),  # nothing missed
        ("0 2 * * *", utc(2024, 1, 4, 2), utc(2024, 1, 5, 2), 0, utc(2024, 1, 5, 2)),  # due now
        (
            "* * * * *",
            utc(2023, 1, 1),
            utc(2024, 6, 1, 12, 0) + timedelta(seconds=30),
            None,
            utc(2024, 6, 1, 12),
        ),
        ("0 0 1 1 *", utc(2020, 1, 1), utc(2024, 6, 1), None, utc(2024, 1, 1)),
        ("0 0 1 1 *", utc(2020, 1, 1), utc(2024, 6, 1), 86400, None),
        ("rate(1 hour)", utc(2024, 1, 1, 10), utc(2024, 1, 1, 13, 30), 3600, utc(2024, 1, 1, 13)),
        ("rate(1 hour)", utc(2024, 1, 1, 10), utc(2024, 1, 1, 10, 30), 3600, None),
    ],
)
def test_missed_fire(
    text: str, last_fire: datetime, now: datetime, deadline: float | None, expected: datetime | None
) -> None:
    assert missed_fire(parse_schedule(text), last_fire, now, UTC, deadline) == expected


def test_missed_fire_in_a_zone() -> None:
    schedule = parse_schedule("30 2 * * *")  # the Berlin spring gap moves it to 03:00 CEST
    got = missed_fire(schedule, utc(2024, 3, 30, 1, 30), utc(2024, 3, 31, 1, 5), BERLIN, 600)
    assert got == utc(2024, 3, 31, 1)
