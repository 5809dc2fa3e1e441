"""next_fire against a brute-force oracle: random expressions, random instants, DST zones.

The oracle is written apart from the code under test and as plainly as possible: it walks UTC
minute by minute, reads the wall clock of the zone and matches the expression's fields from the
structure hypothesis drew (not from the parser's output), applying the DST rules of
``shoal.scheduler.timing`` literally. A second oracle checks the AWS day markers day by day.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from functools import cached_property
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.manifest.schedules import CronSchedule, parse_schedule
from shoal.scheduler import fires_between, next_fire
from shoal.scheduler.days import month_days

ZONES = [UTC, ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York"),
         ZoneInfo("America/Santiago"), ZoneInfo("Australia/Lord_Howe")]  # fmt: skip
WINDOW = timedelta(days=1)
MONTH_LENGTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


@dataclass(frozen=True)
class Item:
    """One comma item: ``*``, ``a``, ``a-b``, ``*/s``, ``a-b/s`` or ``a/s``."""

    low: int | None  # None: *
    high: int | None  # None: a single value (or a/s: up to the field's end)
    step: int | None

    def render(self) -> str:
        base = "*" if self.low is None else str(self.low)
        if self.low is not None and self.high is not None:
            base += f"-{self.high}"
        return base if self.step is None else f"{base}/{self.step}"

    def matches(self, value: int, field_low: int) -> bool:
        first = field_low if self.low is None else self.low
        if self.low is None and self.step is None:
            return True
        if self.high is not None:
            inside = first <= value <= self.high
        else:
            inside = value == first if self.step is None else value >= first
        return inside and (value - first) % (self.step or 1) == 0


@dataclass(frozen=True)
class Field:
    items: tuple[Item, ...]
    low: int

    def render(self) -> str:
        return ",".join(item.render() for item in self.items)

    def matches(self, value: int) -> bool:
        return any(item.matches(value, self.low) for item in self.items)


@st.composite
def items(draw: st.DrawFn, low: int, high: int) -> Item:
    kind = draw(
        st.sampled_from(
            ["star", "value", "value", "range", "star_step", "range_step", "start_step"]
        )
    )
    a, b = sorted(draw(st.lists(st.integers(low, high), min_size=2, max_size=2)))
    step = draw(st.integers(1, high - low + 1))
    return {
        "star": Item(None, None, None),
        "value": Item(a, None, None),
        "range": Item(a, b, None),
        "star_step": Item(None, None, step),
        "range_step": Item(a, b, step),
        "start_step": Item(a, None, step),
    }[kind]


def fields(low: int, high: int, star_weight: int) -> st.SearchStrategy[Field]:
    star = st.just(Field((Item(None, None, None),), low))
    listed = st.lists(items(low, high), min_size=1, max_size=3).map(lambda i: Field(tuple(i), low))
    return st.one_of(*[star] * star_weight, listed)


@dataclass(frozen=True)
class Expression:
    minute: Field
    hour: Field
    dom: Field
    month: Field
    dow: Field

    def render(self) -> str:
        return " ".join(
            f.render() for f in (self.minute, self.hour, self.dom, self.month, self.dow)
        )

    @cached_property
    def either_day(self) -> bool:
        """Vixie: both day fields restricted (neither starts with *) means either may match."""
        return not (self.dom.render().startswith("*") or self.dow.render().startswith("*"))

    @cached_property
    def hourly(self) -> bool:
        return all(self.hour.matches(h) for h in range(24))

    def day_matches(self, wall: datetime) -> bool:
        weekday = (wall.weekday() + 1) % 7
        by_date = self.dom.matches(wall.day)
        by_weekday = self.dow.matches(weekday) or (weekday == 0 and self.dow.matches(7))
        by_day = (by_date or by_weekday) if self.either_day else (by_date and by_weekday)
        return self.month.matches(wall.month) and by_day

    def matches(self, wall: datetime) -> bool:
        return (
            self.minute.matches(wall.minute)
            and self.hour.matches(wall.hour)
            and self.day_matches(wall)
        )

    def can_fire(self) -> bool:
        """False when the parser must refuse it: a day-of-month no allowed month has."""
        if self.either_day:
            return True
        longest = max(MONTH_LENGTH[m - 1] for m in range(1, 13) if self.month.matches(m))
        return any(self.dom.matches(d) for d in range(1, longest + 1))


expressions = st.builds(
    Expression,
    fields(0, 59, 1),
    fields(0, 23, 2),
    fields(1, 31, 4),
    fields(1, 12, 4),
    fields(0, 7, 3),
)


def oracle(expr: Expression, after: datetime, tz: ZoneInfo | timezone) -> list[datetime]:
    """Every fire in (after, after + WINDOW], found one UTC minute at a time."""
    out = []
    moment = after.replace(second=0, microsecond=0)
    previous = moment.astimezone(tz).replace(tzinfo=None)
    moment += timedelta(minutes=1)
    while moment <= after + WINDOW:
        wall = moment.astimezone(tz)
        naive = wall.replace(tzinfo=None)
        if expr.matches(naive) and (expr.hourly or wall.fold == 0):
            out.append(moment)  # a repeated wall time fires on its 2nd pass only if hourly
        elif not expr.hourly and naive - previous > timedelta(minutes=1):
            skipped = previous + timedelta(minutes=1)  # the clock jumped: walls it never showed
            while skipped < naive and not expr.matches(skipped):
                skipped += timedelta(minutes=1)
            if skipped < naive:
                out.append(moment)
        moment, previous = moment + timedelta(minutes=1), naive
    return out


CHANGES = [  # (zone, an instant where it changes its offset): spring and fall of 2024
    (ZoneInfo("Europe/Berlin"), datetime(2024, 3, 31, 1, tzinfo=UTC)),
    (ZoneInfo("Europe/Berlin"), datetime(2024, 10, 27, 1, tzinfo=UTC)),
    (ZoneInfo("America/New_York"), datetime(2024, 3, 10, 7, tzinfo=UTC)),
    (ZoneInfo("America/New_York"), datetime(2024, 11, 3, 6, tzinfo=UTC)),
    (ZoneInfo("America/Santiago"), datetime(2024, 4, 7, 3, tzinfo=UTC)),  # at midnight
    (ZoneInfo("America/Santiago"), datetime(2024, 9, 8, 4, tzinfo=UTC)),
    (ZoneInfo("Australia/Lord_Howe"), datetime(2024, 4, 6, 15, tzinfo=UTC)),  # 30 minutes
    (ZoneInfo("Australia/Lord_Howe"), datetime(2024, 10, 5, 15, 30, tzinfo=UTC)),
    (ZoneInfo("America/Goose_Bay"), datetime(2007, 3, 11, 4, 1, tzinfo=UTC)),  # at 00:01 local
    (ZoneInfo("America/Goose_Bay"), datetime(2007, 11, 4, 3, 1, tzinfo=UTC)),  # 23:01-00:00 twice
]
instants = st.datetimes(datetime(1990, 1, 1), datetime(2060, 1, 1)).map(
    lambda d: d.replace(tzinfo=UTC)
)


def check_against_oracle(expr: Expression, after: datetime, tz: ZoneInfo | timezone) -> None:
    if not expr.can_fire():
        with pytest.raises(ValueError, match="never occurs"):
            parse_schedule(expr.render())
        return
    schedule = parse_schedule(expr.render())
    expected = oracle(expr, after, tz)
    assert list(fires_between(schedule, after, after + WINDOW, tz)) == expected
    fire = next_fire(schedule, after, tz)
    if expected:
        assert fire == expected[0]
    else:
        assert fire is None or fire > after + WINDOW


@settings(max_examples=100, deadline=None)
@given(expr=expressions, after=instants, tz=st.sampled_from(ZONES))
def test_next_fire_matches_the_oracle(
    expr: Expression, after: datetime, tz: ZoneInfo | timezone
) -> None:
    check_against_oracle(expr, after, tz)


STAR = Field((Item(None, None, None),), 1)
near_changes = st.lists(st.one_of(items(0, 3), items(22, 23)), min_size=1, max_size=3)
dst_expressions = st.builds(
    Expression,
    fields(0, 59, 1),
    st.one_of(fields(0, 23, 1), near_changes.map(lambda i: Field(tuple(i), 0))),
    st.just(STAR),
    st.just(STAR),
    st.just(Field((Item(None, None, None),), 0)),
)


@settings(max_examples=100, deadline=None)
@given(expr=dst_expressions, change=st.sampled_from(CHANGES), before=st.integers(1, 86400))
def test_dst_days_match_the_oracle(
    expr: Expression, change: tuple[ZoneInfo, datetime], before: int
) -> None:
    tz, instant = change
    check_against_oracle(expr, instant - timedelta(seconds=before), tz)


# ---------------------------------------------------------------- AWS day markers, day by day


def aws_oracle(dom: str, dow: str, year: int, month: int) -> list[int]:
    """The matching days by definition, one day at a time (AWS weekday numbers: SUN=1)."""
    length = calendar.monthrange(year, month)[1]
    days = [date(year, month, d) for d in range(1, length + 1)]
    workdays = [d for d in days if d.weekday() < 5]
    out = []
    for day in days:
        aws_weekday = (day.weekday() + 1) % 7 + 1
        if dom == "L":
            ok = day.day == length
        elif dom == "LW":
            ok = day == workdays[-1]
        elif dom.endswith("W"):
            target = int(dom[:-1])
            ok = target <= length and day == min(workdays, key=lambda w: abs(w.day - target))
        elif dow == "L":
            ok = aws_weekday == 7
        elif dow.endswith("L"):
            ok = aws_weekday == int(dow[:-1]) and day.day + 7 > length
        else:
            weekday, nth = map(int, dow.split("#"))
            same = [d for d in days if (d.weekday() + 1) % 7 + 1 == weekday and d <= day]
            ok = aws_weekday == weekday and len(same) == nth
        if ok:
            out.append(day.day)
    return out


aws_days = st.one_of(
    st.sampled_from(["L", "LW"]).map(lambda d: (d, "?")),
    st.integers(1, 31).map(lambda n: (f"{n}W", "?")),
    st.just(("?", "L")),
    st.integers(1, 7).map(lambda n: ("?", f"{n}L")),
    st.tuples(st.integers(1, 7), st.integers(1, 5)).map(lambda p: ("?", f"{p[0]}#{p[1]}")),
)


@settings(max_examples=300, deadline=None)
@given(spec=aws_days, year=st.integers(1970, 2199), month=st.integers(1, 12))
def test_aws_day_markers_match_their_definitions(
    spec: tuple[str, str], year: int, month: int
) -> None:
    dom, dow = spec
    schedule = parse_schedule(f"cron(0 0 {dom} * {dow} *)")
    assert isinstance(schedule, CronSchedule)
    assert list(month_days(schedule, year, month)) == aws_oracle(dom, dow, year, month)
