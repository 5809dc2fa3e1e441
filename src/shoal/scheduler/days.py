"""Which calendar days a cron schedule fires on: the date half of cron, with no clock or zone.

``shoal.scheduler.timing`` asks :func:`next_date` for the next day whose year, month and day
fields match, then works out the times of day on it in the schedule's zone. Dates are found by
jumping over years and months that cannot match and looking up the matching days of a month
(cached), never by stepping day after day through the calendar.

The AWS day markers are read as Quartz and EventBridge document them: ``L`` is the month's last
day, ``LW`` its last Monday-to-Friday, ``15W`` the Monday-to-Friday nearest the 15th without
leaving the month (a Saturday 1st moves to Monday the 3rd, a Sunday on the last day to the Friday
before), and a ``15W`` in a month shorter than 15 days never matches (nor does ``31W`` in
April), as a plain ``31`` would not. ``5L`` is the last Thursday and ``3#2`` the second Tuesday.
"""

from __future__ import annotations

import calendar
from bisect import bisect_left
from datetime import MAXYEAR, date
from functools import lru_cache

from shoal.manifest.schedules import CronSchedule

CYCLE_YEARS = 400
"""The Gregorian calendar, weekdays included, repeats every 400 years: a schedule with no year
field that has not fired within that many years never will."""


def next_date(schedule: CronSchedule, start: date) -> date | None:
    """The first date on or after ``start`` that ``schedule`` fires on, or None if none comes.

    With a year field the search ends after its last year; without one, after 400 years (the
    calendar's cycle), or at the last year ``datetime`` can hold.
    """
    last_year = min(MAXYEAR - 1, start.year + CYCLE_YEARS)
    if schedule.years is not None:
        last_year = min(last_year, max(schedule.years))
    year, month, day = start.year, start.month, start.day
    while year <= last_year:
        if schedule.years is not None and year not in schedule.years:
            later = [y for y in schedule.years if y > year]
            if not later:
                return None
            year, month, day = min(later), 1, 1
            continue
        if month in schedule.months:
            days = month_days(schedule, year, month)
            index = bisect_left(days, day)
            if index < len(days):
                return date(year, month, days[index])
        year, month, day = (year + 1, 1, 1) if month == 12 else (year, month + 1, 1)
    return None


@lru_cache(maxsize=4096)
def month_days(schedule: CronSchedule, year: int, month: int) -> tuple[int, ...]:
    """The days of ``month`` in ``year`` (1-based, ascending) on which ``schedule`` fires."""
    first_weekday, length = calendar.monthrange(year, month)  # Monday=0
    first_weekday = (first_weekday + 1) % 7  # Sunday=0, as the schedule stores weekdays
    marked = {_nearest_workday(day, first_weekday, length) for day in schedule.nearest_workdays}
    if schedule.last_day:
        marked.add(length)
    if schedule.last_workday:
        marked.add(_nearest_workday(length, first_weekday, length))
    out = []
    for day in range(1, length + 1):
        weekday = (first_weekday + day - 1) % 7
        by_date = day in schedule.days or day in marked
        by_weekday = (
            weekday in schedule.weekdays
            or (weekday in schedule.last_in_month and day + 7 > length)
            or (weekday, (day + 6) // 7) in schedule.nth_in_month
        )
        if (by_date or by_weekday) if schedule.either_day else (by_date and by_weekday):
            out.append(day)
    return tuple(out)


def _nearest_workday(day: int, first_weekday: int, length: int) -> int:
    """The Monday-to-Friday nearest ``day`` inside the month; 0 (no day) past its end."""
    if day > length:
        return 0
    weekday = (first_weekday + day - 1) % 7
    if weekday == 6:  # Saturday: the Friday before, unless that leaves the month
        return day - 1 if day > 1 else day + 2
    if weekday == 0:  # Sunday: the Monday after, unless that leaves the month
        return day + 1 if day < length else day - 2
    return day
