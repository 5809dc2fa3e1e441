"""Schedule expressions: what parses to what, and what each bad expression is told."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from shoal.manifest.schedules import CronSchedule, RateSchedule, parse_schedule

ALL_DAYS = frozenset(range(1, 32))
ALL_WEEKDAYS = frozenset(range(7))


def cron(text: str) -> CronSchedule:
    schedule = parse_schedule(text)
    assert isinstance(schedule, CronSchedule)
    return schedule


@pytest.mark.parametrize(
    ("text", "minutes", "hours"),
    [
        ("0 2 * * *", {0}, {2}),
        ("*/15 * * * *", {0, 15, 30, 45}, set(range(24))),
        ("5/15 * * * *", {5, 20, 35, 50}, set(range(24))),
        ("1-10/3 */6 * * *", {1, 4, 7, 10}, {0, 6, 12, 18}),
        ("0,30 9-11,14 * * *", {0, 30}, {9, 10, 11, 14}),
        ("59 23 * * *", {59}, {23}),
        ("  0   2 * * *  ", {0}, {2}),
        ("cron(0/20 8-17 * * ? *)", {0, 20, 40}, set(range(8, 18))),
        ("cron(* * * * ? *)", set(range(60)), set(range(24))),
    ],
)
def test_time_fields(text: str, minutes: set[int], hours: set[int]) -> None:
    schedule = cron(text)
    assert schedule.minutes == minutes
    assert schedule.hours == hours
    assert schedule.text == text


@pytest.mark.parametrize(
    ("text", "months", "weekdays"),
    [
        ("0 0 * jan-mar *", {1, 2, 3}, ALL_WEEKDAYS),
        ("0 0 * JUL,Dec *", {7, 12}, ALL_WEEKDAYS),
        ("0 0 * */4 *", {1, 5, 9}, ALL_WEEKDAYS),
        ("0 0 * * MON-FRI", set(range(1, 13)), {1, 2, 3, 4, 5}),
        ("0 0 * * sun", set(range(1, 13)), {0}),
        ("0 0 * * 7", set(range(1, 13)), {0}),  # 7 is Sunday too
        ("0 0 * * 5-7", set(range(1, 13)), {5, 6, 0}),
        ("0 0 * * 0,7", set(range(1, 13)), {0}),
        ("0 0 * * */2", set(range(1, 13)), {0, 2, 4, 6}),
        ("cron(0 0 ? * 1 *)", set(range(1, 13)), {0}),  # AWS: 1 is Sunday
        ("cron(0 0 ? * 7 *)", set(range(1, 13)), {6}),  # ... and 7 Saturday
        ("cron(0 0 ? * MON-FRI *)", set(range(1, 13)), {1, 2, 3, 4, 5}),
        ("cron(0 0 ? * 2-6 *)", set(range(1, 13)), {1, 2, 3, 4, 5}),
        ("cron(0 0 ? FEB,Aug sat,SUN *)", {2, 8}, {0, 6}),
        ("cron(0 0 * 1/5 ? *)", {1, 6, 11}, ALL_WEEKDAYS),
    ],
)
def test_months_and_weekdays(text: str, months: set[int], weekdays: set[int]) -> None:
    schedule = cron(text)
    assert schedule.months == months
    assert schedule.weekdays == weekdays


@pytest.mark.parametrize(
    ("text", "either"),
    [
        ("0 0 13 * 5", True),  # Friday or the 13th: the Vixie OR rule
        ("0 0 1,15 * MON", True),
        ("0 0 * * 5", False),
        ("0 0 13 * *", False),
        ("0 0 */2 * 1", False),  # a field starting with * is unrestricted, as cronie decides
        ("0 0 1 * */2", False),
        ("cron(0 0 13 * ? *)", False),
        ("cron(0 0 ? * 6 *)", False),
    ],
)
def test_vixie_or_rule(text: str, either: bool) -> None:
    assert cron(text).either_day is either


@pytest.mark.parametrize(
    ("macro", "expanded"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@DAILY", "0 0 * * *"),
    ],
)
def test_macros(macro: str, expanded: str) -> None:
    schedule, plain = cron(macro), cron(expanded)
    assert schedule.text == macro
    assert (schedule.minutes, schedule.hours, schedule.days) == (
        plain.minutes,
        plain.hours,
        plain.days,
    )
    assert (schedule.months, schedule.weekdays) == (plain.months, plain.weekdays)


def test_aws_question_mark_leaves_the_other_day_field_in_charge() -> None:
    by_date, by_weekday = cron("cron(0 10 15 * ? *)"), cron("cron(0 10 ? * MON *)")
    assert (by_date.days, by_date.weekdays) == (frozenset({15}), ALL_WEEKDAYS)
    assert (by_weekday.days, by_weekday.weekdays) == (ALL_DAYS, frozenset({1}))
    assert by_date.dialect == by_weekday.dialect == "aws"
    assert by_date.years == frozenset(range(1970, 2200))


def test_aws_day_markers() -> None:
    assert cron("cron(0 12 L * ? *)").last_day
    assert cron("cron(0 12 lw * ? *)").last_workday
    assert cron("cron(0 12 15W * ? *)").nearest_workdays == {15}
    assert cron("cron(0 12 ? * 5L *)").last_in_month == {4}  # AWS 5 = Thursday
    assert cron("cron(0 12 ? * FRIL *)").last_in_month == {5}
    assert cron("cron(0 12 ? * L *)").weekdays == {6}  # L alone: the week's last day, Saturday
    assert cron("cron(0 12 ? * 3#2 *)").nth_in_month == {(2, 2)}  # AWS 3 = Tuesday
    assert cron("cron(0 12 ? * mon#1 *)").nth_in_month == {(1, 1)}
    assert cron("cron(0 12 L * ? *)").days == frozenset()


@pytest.mark.parametrize(
    ("text", "years"),
    [
        ("cron(0 0 1 1 ? 2030)", {2030}),
        ("cron(0 0 1 1 ? 2025-2027)", {2025, 2026, 2027}),
        ("cron(0 0 1 1 ? 2025,2199)", {2025, 2199}),
        ("cron(0 0 1 1 ? 2020/50)", {2020, 2070, 2120, 2170}),
        ("0 0 1 1 *", None),
    ],
)
def test_years(text: str, years: set[int] | None) -> None:
    assert cron(text).years == years


@pytest.mark.parametrize(
    ("text", "value", "unit", "period"),
    [
        ("rate(1 minute)", 1, "minute", timedelta(minutes=1)),
        ("rate(5 minutes)", 5, "minute", timedelta(minutes=5)),
        ("rate(1 hour)", 1, "hour", timedelta(hours=1)),
        ("rate(12 hours)", 12, "hour", timedelta(hours=12)),
        ("rate(1 day)", 1, "day", timedelta(days=1)),
        ("rate(7 days)", 7, "day", timedelta(days=7)),
        (" rate( 10  minutes ) ", 10, "minute", timedelta(minutes=10)),
    ],
)
def test_rates(text: str, value: int, unit: str, period: timedelta) -> None:
    schedule = parse_schedule(text)
    assert schedule == RateSchedule(text, value, unit)  # type: ignore[arg-type]
    assert isinstance(schedule, RateSchedule)
    assert schedule.period == period


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        # the example of the brief, to the letter
        ("cron(0 25 * * ? *)", ["'cron(0 25 * * ? *)': hour 25 is out of range 0-23"]),
        ("60 * * * *", ["minute 60 is out of range 0-59"]),
        ("0 0 32 * *", ["day-of-month 32 is out of range 1-31"]),
        ("0 0 0 * *", ["day-of-month 0 is out of range 1-31"]),
        ("0 0 * 13 *", ["month 13 is out of range 1-12"]),
        ("0 0 * * 8", ["day-of-week 8 is out of range 0-7"]),
        ("0 0 * * FUN", ["day-of-week 'FUN' is not a number or a name (SUN, MON"]),
        ("0 0 * SEPT *", ["month 'SEPT' is not a number or a name (JAN"]),
        ("1-x * * * *", ["minute 'x' is not a number", "a range 1-5"]),
        ("10-5 * * * *", ["minute range 10-5 runs backwards; write 5-10"]),
        ("*/0 * * * *", ["minute step '0' in '*/0'", ">= 1"]),
        ("*/x * * * *", ["minute step 'x'"]),
        ("0 0 1,,2 * *", ["day-of-month '1,,2' has an empty item"]),
        ("0 0 * *", ["expected 5 fields (minute hour day-of-month month day-of-week", "found 4"]),
        ("0 0 * * * *", ["expected 5 fields", "found 6"]),
        ("", ["the schedule is empty"]),
        ("0 0 30 2 *", ["day-of-month 30 never occurs in Feb"]),
        ("0 0 31 4,6 *", ["day-of-month 31 never occurs in Apr, Jun"]),
        ("0 2 * * ?", ["day-of-week '?'", "only in AWS cron(...)"]),
        ("0 2 L * *", ["day-of-month 'L'", "only in AWS cron(...)"]),
        ("0 2 * * 5L", ["day-of-week '5L'", "only in AWS cron(...)"]),
        ("0 2 * * 3#2", ["day-of-week '3#2'", "only in AWS cron(...)"]),
        ("@reboot", ["unknown macro '@reboot'", "@daily"]),
        ("cron(0 2 * * ? *", ["closing parenthesis is missing"]),
        ("CRON(0 2 * * ? *)", ["write cron(...) in lower case"]),
        ("cron(0 2 * * ?)", ["expected 6 fields (cron(minutes hours day-of-month", "found 5"]),
        ("cron(0 2 * * * *)", ["day-of-month and day-of-week are both set", "? in exactly one"]),
        ("cron(0 2 1 * MON *)", ["both set"]),
        ("cron(0 2 ? * ? *)", ["day-of-month and day-of-week are both ?"]),
        ("cron(0 2 ? * 0 *)", ["day-of-week 0 is out of range 1-7 (AWS numbers SUN-SAT 1-7)"]),
        ("cron(0 2 ? * 8 *)", ["day-of-week 8 is out of range 1-7"]),
        ("cron(0 2 ? * 1/2 *)", ["day-of-week '1/2'", "no / step"]),
        ("cron(0 2 ? * 3#6 *)", ["instance 6 is out of range 1-5"]),
        ("cron(0 2 ? * 3#1,6#3 *)", ["day-of-week '3#1,6#3'", "# takes one expression alone"]),
        ("cron(0 2 ? * 8L *)", ["day-of-week 8 is out of range 1-7"]),
        ("cron(0 2 ? * 2,L *)", ["day-of-week '2,L'", "L stands alone"]),
        ("cron(0 2 L,15 * ? *)", ["day-of-month 'L,15'", "stand alone"]),
        ("cron(0 2 1-5W * ? *)", ["day-of-month '1-5W'", "stand alone"]),
        ("cron(0 2 32W * ? *)", ["day-of-month 32 is out of range 1-31"]),
        ("cron(0 2 30W 2 ? *)", ["day-of-month 30 never occurs in Feb"]),
        ("cron(0 2 * * ? 1969)", ["year 1969 is out of range 1970-2199"]),
        ("cron(0 2 * * ? 2200)", ["year 2200 is out of range 1970-2199"]),
        ("rate(5 minute)", ["'rate(5 minute)'", "write rate(5 minutes)", "rate(1 minute)"]),
        ("rate(2 hour)", ["write rate(2 hours)"]),
        ("rate(1 minutes)", ["a value of 1 takes the singular unit: write rate(1 minute)"]),
        ("rate(1 days)", ["write rate(1 day)"]),
        ("rate(0 minutes)", ["rate value '0' must be a positive whole number"]),
        ("rate(-5 minutes)", ["rate value '-5'"]),
        ("rate(1.5 hours)", ["rate value '1.5'"]),
        ("rate(5 weeks)", ["rate unit 'weeks' is not one of minute(s), hour(s) or day(s)"]),
        ("rate(5)", ["write rate(value unit)"]),
        ("Rate(5 minutes)", ["write rate(...) in lower case"]),
    ],
)
def test_bad_expressions_say_what_and_where(text: str, fragments: list[str]) -> None:
    with pytest.raises(ValueError, match=re.escape(f"{text!r}: ")) as caught:
        parse_schedule(text)
    message = str(caught.value)
    assert message.startswith(f"{text!r}: ")
    for fragment in fragments:
        assert fragment in message


def test_non_string_is_refused() -> None:
    with pytest.raises(ValueError, match="not a schedule"):
        parse_schedule(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "description"),
    [
        ("0 2 * * *", "at 02:00 every day"),
        ("*/15 * * * *", "every 15 minutes"),
        ("* * * * *", "every minute"),
        ("30 * * * *", "at minute 30 of every hour"),
        ("0 9 * * MON-FRI", "at 09:00 on Mon,Tue,Wed,Thu,Fri"),
        ("0 0 13 * 5", "at 00:00 on day 13 or on Fri"),
        ("cron(0 12 L * ? *)", "at 12:00 on the last day of the month"),
        ("cron(0 10 ? * 3#2 2025-2027)", "at 10:00 on Tue #2 in 2025-2027"),
        ("rate(1 minute)", "every minute"),
        ("rate(5 minutes)", "every 5 minutes"),
    ],
)
def test_describe(text: str, description: str) -> None:
    assert parse_schedule(text).describe() == description


def test_schedules_are_frozen_hashable_and_short_in_repr() -> None:
    schedule = cron("0 2 * * *")
    assert repr(schedule) == "CronSchedule('0 2 * * *')"
    assert hash(schedule) == hash(cron("0 2 * * *"))
    with pytest.raises(AttributeError):
        schedule.text = "x"  # type: ignore[misc]
