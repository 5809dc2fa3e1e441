"""When a schedule fires: the pure core of the scheduler, with the clock passed in.

``next_fire(schedule, after, tz)`` is the first fire instant strictly after ``after``;
``fires_between`` lists the fires in ``(start, end]``; ``missed_fire`` picks the one fire that a
daemon coming back up still owes (the latest in ``(last_fire, now]``, if it is no older than the
starting deadline: a schedule missed while the daemon was down runs once on start). The ticking
loop above this module owns the clock; nothing here reads it, sleeps or does I/O. Instants go in
as aware datetimes (any zone) and come out as aware UTC datetimes.

``rate(...)`` counts elapsed time: fires are ``anchor + k * period`` (``k >= 0``), a day is 24
hours whatever the zone does (as EventBridge Scheduler counts it), and ``anchor`` is when the
schedule started, by default ``after`` rounded down to the minute.

Cron is read on the wall clock of ``tz``. The date fields pick days (``shoal.scheduler.days``);
the times of day on a day follow these rules where the zone's offset changes (DST):

* A **fixed-time** schedule (its hour field leaves out some hour: ``30 2 * * *``) fires once for
  each matching wall time. A wall time that does not exist (the spring-forward gap) fires once,
  at the first instant after the gap: ``30 2 * * *`` in Europe/Berlin on 2024-03-31 fires at
  03:00 CEST. A wall time that occurs twice (fall-back) fires at its first occurrence only.
* An **hourly or finer** schedule (all 24 hours: ``*/15 * * * *``, ``30 * * * *``) follows
  elapsed time instead: it fires on both passes through a repeated hour, as they are different
  hours of real time, and skips the wall times of a gap, which no clock ever shows. So
  ``*/15 * * * *`` fires every real 15 minutes across both transitions, with no instant twice
  and none missing except inside the gap, and ``30 * * * *`` stays one real hour apart.

This is how Vixie cron and cronie treat DST ("fixed-time jobs" versus "wildcard jobs", whose
hour or minute field starts with ``*``: ours is the semantic test on the hour field). Others
differ: Kubernetes CronJob (robfig/cron) steps through real hours, so it skips a fixed time in
the gap and runs it twice in a repeated hour (kubernetes/kubernetes#121594); EventBridge
Scheduler skips an invocation whose time does not exist and runs a repeated time once.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

from shoal.manifest.schedules import CronSchedule, RateSchedule, Schedule
from shoal.scheduler.days import next_date

_MINUTE = timedelta(minutes=1)
_DAY = timedelta(days=1)
_TICK = timedelta(microseconds=1)
_ZERO = timedelta(0)


def next_fire(
    schedule: Schedule,
    after: datetime,
    tz: ZoneInfo | timezone = UTC,
    anchor: datetime | None = None,
) -> datetime | None:
    """The first fire strictly after ``after`` (UTC), or None when the schedule has no more.

    ``tz`` is the zone a cron schedule's wall clock runs in; ``anchor`` is when a rate schedule
    started (default: ``after`` rounded down to the minute). Each ignores the other.
    """
    after = _utc(after, "after")
    if isinstance(schedule, RateSchedule):
        return _next_rate(schedule, after, anchor)
    return _next_cron(schedule, after, tz)


def fires_between(
    schedule: Schedule,
    start: datetime,
    end: datetime,
    tz: ZoneInfo | timezone = UTC,
    anchor: datetime | None = None,
) -> Iterator[datetime]:
    """Every fire in ``(start, end]``, in order; a rate schedule anchors at ``start`` by default."""
    current, end = _utc(start, "start"), _utc(end, "end")
    if anchor is None:
        anchor = current.replace(second=0, microsecond=0)
    while (fire := next_fire(schedule, current, tz, anchor)) is not None and fire <= end:
        yield fire
        current = fire


def missed_fire(
    schedule: Schedule,
    last_fire: datetime,
    now: datetime,
    tz: ZoneInfo | timezone = UTC,
    starting_deadline_s: float | None = None,
    *,
    anchor: datetime | None = None,
) -> datetime | None:
    """The fire a restarted daemon should still run: the latest in ``(last_fire, now]``.

    Fires older than ``starting_deadline_s`` seconds before ``now`` are too late to start (as a
    Kubernetes CronJob's ``startingDeadlineSeconds``); None means no deadline. The search
    gallops back from ``now`` (1 minute, 2, 4, ...), so a long outage costs a few dozen steps.
    """
    last_fire, now = _utc(last_fire, "last_fire"), _utc(now, "now")
    if anchor is None:
        anchor = last_fire.replace(second=0, microsecond=0)
    floor = last_fire
    if starting_deadline_s is not None:  # a fire exactly at the deadline still counts
        floor = max(floor, now - timedelta(seconds=starting_deadline_s) - _TICK)
    if floor >= now:
        return None
    window = _MINUTE
    while True:
        start = max(floor, now - window)
        fire = next_fire(schedule, start, tz, anchor)
        if fire is not None and fire <= now:
            while (later := next_fire(schedule, fire, tz, anchor)) is not None and later <= now:
                fire = later
            return fire
        if start == floor:
            return None
        window *= 2


def _utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(
            f"{name} must be an aware datetime (with a zone), got {moment.isoformat()}"
        )
    return moment.astimezone(UTC)


def _next_rate(schedule: RateSchedule, after: datetime, anchor: datetime | None) -> datetime | None:
    start = after.replace(second=0, microsecond=0) if anchor is None else _utc(anchor, "anchor")
    if after < start:
        return start
    periods = (after - start) // schedule.period + 1
    try:
        return start + periods * schedule.period
    except OverflowError:
        return None


def _next_cron(schedule: CronSchedule, after: datetime, tz: tzinfo) -> datetime | None:
    today = after.astimezone(tz).date()
    day: date | None = today
    if today > date.min and _layout(today - _DAY, tz)[2] is not None:
        day = today - _DAY  # yesterday's gap or repeated hour may straddle midnight into today
    while day is not None and (day := next_date(schedule, day)) is not None:
        fire = _first_fire_on(schedule, day, after, tz)
        if fire is not None:
            # A repeated hour can straddle midnight: then tomorrow's first pass comes earlier.
            tomorrow = day + _DAY
            if fire >= _day_start(tomorrow, tz) and next_date(schedule, tomorrow) == tomorrow:
                earlier = _first_fire_on(schedule, tomorrow, after, tz)
                fire = min(fire, earlier) if earlier is not None else fire
            return fire
        day += _DAY
    return None


def _first_fire_on(
    schedule: CronSchedule, day: date, after: datetime, tz: tzinfo
) -> datetime | None:
    """The first fire after ``after`` among the wall times of ``day``, by the DST rules above."""
    before, since, change = _layout(day, tz)
    if change is None:
        return _first_in(schedule, day, _ZERO, _DAY, after=after, offset=before)
    midnight = datetime.combine(day, time())
    end_before = _clip(change.replace(tzinfo=None) + before - midnight)  # wall clock at change
    start_since = _clip(change.replace(tzinfo=None) + since - midnight)  # ... and just after
    fire = _first_in(schedule, day, _ZERO, end_before, after=after, offset=before)
    if fire is not None:
        return fire
    hourly = len(schedule.hours) == 24
    if since > before:  # spring forward: wall times in [end_before, start_since) do not exist
        in_gap = _first_minute(schedule, -(-end_before // _MINUTE), start_since)
        if not hourly and in_gap is not None and change > after:
            return change
    elif not hourly:  # fall back: [start_since, end_before) comes twice; fire on the first pass
        start_since = end_before
    return _first_in(schedule, day, start_since, _DAY, after=after, offset=since)


def _first_in(
    schedule: CronSchedule,
    day: date,
    low: timedelta,
    high: timedelta,
    *,
    after: datetime,
    offset: timedelta,
) -> datetime | None:
    """First matching wall time W of ``day`` with low <= W < high and W - offset > after."""
    midnight = datetime.combine(day, time())
    threshold = after.replace(tzinfo=None) + offset - midnight  # W must be later than this
    first = max(-(-low // _MINUTE), threshold // _MINUTE + 1)
    minute = _first_minute(schedule, first, high)
    if minute is None:
        return None
    return (midnight + minute * _MINUTE - offset).replace(tzinfo=UTC)


def _first_minute(schedule: CronSchedule, first: int, high: timedelta) -> int | None:
    """The first matching minute of the day from minute ``first`` on that starts before ``high``."""
    minutes = _times(schedule.minutes, schedule.hours)
    index = bisect_left(minutes, first)
    if index == len(minutes) or minutes[index] * _MINUTE >= high:
        return None
    return minutes[index]


@lru_cache(maxsize=512)
def _times(minutes: frozenset[int], hours: frozenset[int]) -> tuple[int, ...]:
    """The matching minutes of the day (0..1439), ascending."""
    return tuple(sorted(hour * 60 + minute for hour in hours for minute in minutes))


@lru_cache(maxsize=4096)
def _layout(day: date, tz: tzinfo) -> tuple[timedelta, timedelta, datetime | None]:
    """The UTC offsets in force as ``day`` starts and ends, and the instant it changes (if it does).

    One change per day at most, as in every zone's rules; the instant is found to the second by
    bisection between the day's earliest possible start and latest possible end.
    """
    start = _day_start(day, tz)
    end = max(_wall_to_utc(datetime.combine(day + _DAY, time()), tz, fold) for fold in (0, 1))
    before, since = _offset(start.timestamp(), tz), _offset(end.timestamp(), tz)
    if before == since:
        return before, since, None
    low, high = int(start.timestamp()), int(end.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if _offset(middle, tz) == before:
            low = middle
        else:
            high = middle
    return before, since, datetime.fromtimestamp(high, UTC)


@lru_cache(maxsize=4096)
def _day_start(day: date, tz: tzinfo) -> datetime:
    """The earliest instant that could read midnight starting ``day`` (either fold)."""
    return min(_wall_to_utc(datetime.combine(day, time()), tz, fold) for fold in (0, 1))


def _wall_to_utc(wall: datetime, tz: tzinfo, fold: int) -> datetime:
    return wall.replace(tzinfo=tz, fold=fold).astimezone(UTC)


def _offset(timestamp: float, tz: tzinfo) -> timedelta:
    offset = datetime.fromtimestamp(timestamp, tz).utcoffset()
    assert offset is not None  # an aware zone always has one
    return offset


def _clip(wall: timedelta) -> timedelta:
    return min(max(wall, _ZERO), _DAY)
