"""Schedule expressions in the dialect each target reads. Pure.

The manifest accepts 5-field cron, AWS ``cron(...)`` and ``rate(...)``
(:mod:`shoal.manifest.schedules`). Kubernetes CronJobs and Knative PingSources read 5-field cron;
EventBridge Scheduler (SAM's ``ScheduleV2``) reads ``cron(...)`` and ``rate(...)``; systemd
timers read ``OnCalendar``. Each function answers ``(expression, note)``: the expression, or
None when the target cannot say it at all, and a note ("" when the conversion is exact) that the
exporter reports as a gap.
"""

from __future__ import annotations

from shoal.manifest.schedules import CronSchedule, RateSchedule, parse_schedule

_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def five_field(text: str) -> tuple[str | None, str]:
    """5-field cron (Kubernetes, Knative, Vixie cron) for any manifest schedule."""
    schedule = parse_schedule(text)
    if isinstance(schedule, RateSchedule):
        return _rate_as_cron(schedule)
    if schedule.dialect == "unix":
        return text.strip(), ""
    return _aws_as_unix(schedule)


def aws_expression(text: str) -> tuple[str | None, str]:
    """``cron(...)`` or ``rate(...)`` (EventBridge Scheduler) for any manifest schedule."""
    schedule = parse_schedule(text)
    if isinstance(schedule, RateSchedule) or schedule.dialect == "aws":
        return text.strip(), ""
    body = _MACROS.get(text.strip().lower(), text.strip())
    minute, hour, dom, month, _dow = body.split()
    days = _weekday_names(schedule)
    note = ""
    if schedule.either_day:
        note = (
            "EventBridge cannot match day-of-month OR day-of-week (the cron rule); "
            "kept the day-of-month only"
        )
        days = "?"
    elif days != "?":
        dom = "?"
    return f"cron({minute} {hour} {dom} {month} {days} *)", note


def _weekday_names(schedule: CronSchedule) -> str:
    if len(schedule.weekdays) == 7:
        return "?"
    return ",".join(_DAYS[d] for d in sorted(schedule.weekdays))


def _rate_as_cron(rate: RateSchedule) -> tuple[str | None, str]:
    minutes = int(rate.period.total_seconds() // 60)
    if minutes < 60:
        if 60 % minutes == 0:
            return ("* * * * *" if minutes == 1 else f"*/{minutes} * * * *"), ""
        return f"*/{minutes} * * * *", (
            f"cron has no period of {minutes} minutes; fires at minutes divisible by "
            f"{minutes}, restarting each hour"
        )
    hours, extra = divmod(minutes, 60)
    if extra == 0 and hours < 24:
        if 24 % hours == 0:
            return ("0 * * * *" if hours == 1 else f"0 */{hours} * * *"), ""
        return f"0 */{hours} * * *", f"cron has no period of {hours} hours; restarts each day"
    if minutes % 1440 == 0:
        days = minutes // 1440
        if days == 1:
            return "0 0 * * *", ""
        return f"0 0 */{days} * *", f"cron has no period of {days} days; restarts each month"
    return None, f"cron cannot express {rate.text}"


def _aws_as_unix(schedule: CronSchedule) -> tuple[str | None, str]:
    inner = schedule.text.strip()[5:-1].split()
    minute, hour, dom, month, dow, year = inner
    special = [
        word
        for word, used in (
            ("L", schedule.last_day or bool(schedule.last_in_month)),
            ("W", schedule.last_workday or bool(schedule.nearest_workdays)),
            ("#", bool(schedule.nth_in_month)),
        )
        if used
    ]
    if special:
        return None, f"5-field cron has no {', '.join(special)} (AWS day markers)"
    note = "" if year == "*" else f"5-field cron has no year; year {year} dropped"
    dom = "*" if dom == "?" else dom
    if dow == "?" or len(schedule.weekdays) == 7:
        days = "*"
    else:
        days = ",".join(str(d) for d in sorted(schedule.weekdays))
    return f"{minute} {hour} {dom} {month} {days}", note


def on_calendar(text: str) -> tuple[str | None, str]:
    """systemd ``OnCalendar=`` (or ``OnUnitActiveSec=`` seconds for a rate, as ``rate:N``)."""
    schedule = parse_schedule(text)
    if isinstance(schedule, RateSchedule):
        return f"rate:{int(schedule.period.total_seconds())}", ""
    unix, note = five_field(text)
    if unix is None:
        return None, note
    body = _MACROS.get(unix.lower(), unix)
    minute, hour, dom, month, _dow = body.split()
    if schedule.either_day:
        return None, "systemd calendar events cannot match day-of-month OR day-of-week"
    days = "" if len(schedule.weekdays) == 7 else _weekday_range(schedule) + " "

    def field(value: str) -> str:
        return value.replace("*/", "0/") if value.startswith("*/") else value

    return f"{days}*-{field(month)}-{field(dom)} {field(hour)}:{field(minute)}:00", note


def _weekday_range(schedule: CronSchedule) -> str:
    return ",".join(_DAYS[d].title() for d in sorted(schedule.weekdays))


__all__ = ["aws_expression", "five_field", "on_calendar"]
