"""Schedule expressions of the manifest: 5-field cron, AWS ``cron(...)`` and ``rate(...)``.

``parse_schedule(text)`` turns the string a user wrote under ``schedule:`` into a frozen
:class:`CronSchedule` or :class:`RateSchedule`, or raises :class:`ValueError` with a message that
quotes the text, names the field and value at fault and shows the form expected, e.g.
``'cron(0 25 * * ? *)': hour 25 is out of range 0-23``. The manifest schema turns that into a
located problem; the scheduler (``shoal.scheduler.timing``) computes fire times from the result.

Three forms are accepted:

* 5-field cron as Vixie cron and cronie read it: ``minute hour day-of-month month day-of-week``
  with ``*``, lists, ranges, steps (``*/5``, ``1-10/2``, ``5/15``), JAN-DEC and SUN-SAT (any
  case), day-of-week 0-7 with 0 and 7 both Sunday, and the macros ``@yearly`` (``@annually``),
  ``@monthly``, ``@weekly``, ``@daily`` (``@midnight``), ``@hourly``. If day-of-month and
  day-of-week are both restricted, a day matches when either does (the Vixie OR rule); a field
  counts as unrestricted when it starts with ``*``, as cronie decides it, so ``*/2`` is not.
* AWS EventBridge ``cron(minutes hours day-of-month month day-of-week year)``: exactly one of the
  two day fields is ``?``; day-of-week is 1-7 = SUN-SAT; ``L`` (last day of the month), ``LW``
  (last weekday, Monday to Friday) and ``15W`` (weekday nearest the 15th, not leaving the month)
  in day-of-month; ``L`` alone (the last day of the week: Saturday, as Quartz reads it), ``5L``
  or ``THUL`` (the last Thursday of the month) and ``3#2`` (the second Tuesday) in day-of-week;
  year 1970-2199. The special forms stand alone in their field, and day-of-week takes no ``/``.
* ``rate(value unit)``: a positive whole number and minute(s), hour(s) or day(s); the unit is
  singular exactly when the value is 1, as AWS requires.

Weekdays are stored 0=Sunday..6=Saturday whichever form was written. Pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, NoReturn, NotRequired, TypeAlias, TypedDict

_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, 1)}
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_MONTH_LENGTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # longest, so Feb has 29
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_UNIX_FORM = "minute hour day-of-month month day-of-week, like '0 2 * * *'"
_AWS_FORM = "cron(minutes hours day-of-month month day-of-week year), like cron(0 2 * * ? *)"
_NUMBER = re.compile(r"[0-9]+")
_RATE_UNITS: dict[str, Literal["minute", "hour", "day"]] = {u: u for u in ("minute", "hour", "day")}


@dataclass(frozen=True, repr=False)
class CronSchedule:
    """A parsed cron expression: the allowed values of each field plus the AWS day markers.

    A day matches when its day-of-month part and its day-of-week part both match, or either one
    when ``either_day`` is set (the Vixie OR rule). The day-of-month part matches a day in
    ``days``, the last day if ``last_day``, the last Monday-to-Friday if ``last_workday``, or the
    workday nearest any day in ``nearest_workdays``; the day-of-week part matches a weekday in
    ``weekdays``, the last such weekday of the month for ``last_in_month``, or the n-th for a
    ``(weekday, n)`` in ``nth_in_month``. ``years`` is None when any year will do.
    """

    text: str
    dialect: Literal["unix", "aws"]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    years: frozenset[int] | None = None
    either_day: bool = False
    last_day: bool = False
    last_workday: bool = False
    nearest_workdays: frozenset[int] = frozenset()
    last_in_month: frozenset[int] = frozenset()
    nth_in_month: frozenset[tuple[int, int]] = frozenset()

    def __repr__(self) -> str:
        return f"CronSchedule({self.text!r})"

    def describe(self) -> str:
        """Rough English: ``at 02:00 every day``, ``every 15 minutes on Mon-Fri``."""
        time, day = _time_phrase(self), _day_phrase(self)
        return time if day == "every day" and "every" in time else f"{time} {day}"


@dataclass(frozen=True)
class RateSchedule:
    """``rate(value unit)``: fires every ``value`` units of elapsed time (a day is 24 hours)."""

    text: str
    value: int
    unit: Literal["minute", "hour", "day"]

    @property
    def period(self) -> timedelta:
        """The time between two fires."""
        return timedelta(**{f"{self.unit}s": self.value})

    def describe(self) -> str:
        """``every minute``, ``every 5 minutes``."""
        return f"every {self.unit}" if self.value == 1 else f"every {self.value} {self.unit}s"


Schedule: TypeAlias = CronSchedule | RateSchedule


def parse_schedule(text: str) -> Schedule:
    """Parse ``text`` (5-field cron, ``@daily``, ``cron(...)`` or ``rate(...)``)."""
    if not isinstance(text, str):
        raise ValueError(
            f"{text!r} is not a schedule; write '0 2 * * *', cron(0 2 * * ? *) or rate(5 minutes)"
        )
    body = text.strip()
    kind = body[:5].lower()
    if kind in ("cron(", "rate("):
        if body[:5] != kind:
            _fail(text, f"write {kind}...) in lower case, as AWS does")
        if not body.endswith(")"):
            _fail(text, f"the closing parenthesis is missing: write {kind}...)")
        inner = body[5:-1]
        return _parse_rate(text, inner) if kind == "rate(" else _parse_aws(text, inner)
    if body.startswith("@"):
        if body.lower() not in _MACROS:
            _fail(text, f"unknown macro {body!r}; use one of {', '.join(_MACROS)}")
        return _parse_unix(text, _MACROS[body.lower()])
    if not body:
        _fail(text, f"the schedule is empty; write {_UNIX_FORM}, cron(...) or rate(...)")
    return _parse_unix(text, body)


def _fail(text: str, detail: str) -> NoReturn:
    raise ValueError(f"{text!r}: {detail}")


def _parse_rate(text: str, inner: str) -> RateSchedule:
    parts = inner.split()
    if len(parts) != 2:
        _fail(text, "write rate(value unit), like rate(5 minutes), rate(1 hour) or rate(2 days)")
    value_text, unit_text = parts
    if not _NUMBER.fullmatch(value_text) or int(value_text) < 1:
        _fail(
            text, f"rate value {value_text!r} must be a positive whole number, like rate(5 minutes)"
        )
    value, unit = int(value_text), _RATE_UNITS.get(unit_text.removesuffix("s"))
    if unit is None:
        _fail(text, f"rate unit {unit_text!r} is not one of minute(s), hour(s) or day(s)")
    if value == 1 and unit_text != unit:
        _fail(text, f"a value of 1 takes the singular unit: write rate(1 {unit})")
    if value != 1 and unit_text == unit:
        _fail(text, f"write rate({value} {unit}s) (singular unit only with 1: rate(1 {unit}))")
    return RateSchedule(text, value, unit)


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int] | None = None
    note: str = ""


_MINUTE = _Field("minute", 0, 59)
_HOUR = _Field("hour", 0, 23)
_DOM = _Field("day-of-month", 1, 31)
_MONTH = _Field("month", 1, 12, _MONTHS)
_UNIX_DOW = _Field("day-of-week", 0, 7, {n: i for i, n in enumerate(_DAYS)})
_AWS_DOW = _Field(
    "day-of-week", 1, 7, {n: i for i, n in enumerate(_DAYS, 1)}, " (AWS numbers SUN-SAT 1-7)"
)
_YEAR = _Field("year", 1970, 2199)


def _values(text: str, spec: _Field, field: str, steps: bool = True) -> frozenset[int]:
    """The values a list of items (``1,5-10,*/15``) allows, in the field's own numbering."""
    out: set[int] = set()
    for item in field.split(","):
        if not item:
            _fail(text, f"{spec.name} {field!r} has an empty item; write a list like 1,15")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not steps:
                _fail(text, f"{spec.name} {field!r}: AWS allows no / step in day-of-week")
            if not _NUMBER.fullmatch(step_text) or int(step_text) < 1:
                _fail(
                    text, f"{spec.name} step {step_text!r} in {item!r} must be a whole number >= 1"
                )
            step = int(step_text)
        if base == "*":
            low, high = spec.low, spec.high
        elif "-" in base:
            low_text, _, high_text = base.partition("-")
            low, high = _value(text, spec, low_text), _value(text, spec, high_text)
            if low > high:
                _fail(
                    text, f"{spec.name} range {base} runs backwards; write {high_text}-{low_text}"
                )
        else:
            low = _value(text, spec, base)
            high = spec.high if slash else low
        out.update(range(low, high + 1, step))
    return frozenset(out)


def _value(text: str, spec: _Field, token: str) -> int:
    if _NUMBER.fullmatch(token):
        value = int(token)
        if not spec.low <= value <= spec.high:
            _fail(text, f"{spec.name} {value} is out of range {spec.low}-{spec.high}{spec.note}")
        return value
    if spec.names and token.upper() in spec.names:
        return spec.names[token.upper()]
    what = "a number" + (f" or a name ({', '.join(spec.names)})" if spec.names else "")
    shown = repr(token) if token else "(empty)"
    _fail(
        text,
        f"{spec.name} {shown} is not {what}; write a value, a list 1,15, a range 1-5 or a step */5",
    )


def _split(text: str, body: str, count: int, form: str) -> list[str]:
    fields = body.split()
    if len(fields) != count:
        _fail(text, f"expected {count} fields ({form}) but found {len(fields)}")
    return fields


def _parse_unix(text: str, body: str) -> CronSchedule:
    minute, hour, dom, month, dow = _split(text, body, 5, _UNIX_FORM)
    for spec, field, aws_only in ((_DOM, dom, "?LW#"), (_UNIX_DOW, dow, "?L#")):
        if any(c in field.upper() for c in aws_only):
            _fail(
                text, f"{spec.name} {field!r}: ? L W and # exist only in AWS cron(...) expressions"
            )
    days = _values(text, _DOM, dom)
    months = _values(text, _MONTH, month)
    either = not dom.startswith("*") and not dow.startswith("*")
    if not either:
        _check_days_exist(text, days, months)
    return CronSchedule(
        text=text,
        dialect="unix",
        minutes=_values(text, _MINUTE, minute),
        hours=_values(text, _HOUR, hour),
        days=days,
        months=months,
        weekdays=frozenset(v % 7 for v in _values(text, _UNIX_DOW, dow)),
        either_day=either,
    )


def _parse_aws(text: str, inner: str) -> CronSchedule:
    minute, hour, dom, month, dow, year = _split(text, inner, 6, _AWS_FORM)
    if (dom == "?") == (dow == "?"):
        which = "both ?" if dom == "?" else "both set"
        _fail(
            text,
            f"day-of-month and day-of-week are {which}; AWS needs ? in exactly one of them, "
            "like cron(0 2 * * ? *) or cron(0 2 ? * MON-FRI *)",
        )
    months = _values(text, _MONTH, month)
    day_parts = _aws_dom(text, dom.upper(), months)
    return CronSchedule(
        text=text,
        dialect="aws",
        minutes=_values(text, _MINUTE, minute),
        hours=_values(text, _HOUR, hour),
        months=months,
        years=_values(text, _YEAR, year),
        **day_parts,
        **_aws_dow(text, dow.upper()),
    )


class _DomParts(TypedDict):
    days: frozenset[int]
    last_day: NotRequired[bool]
    last_workday: NotRequired[bool]
    nearest_workdays: NotRequired[frozenset[int]]


class _DowParts(TypedDict):
    weekdays: frozenset[int]
    last_in_month: NotRequired[frozenset[int]]
    nth_in_month: NotRequired[frozenset[tuple[int, int]]]


def _aws_dom(text: str, dom: str, months: frozenset[int]) -> _DomParts:
    if dom == "?":
        return {"days": frozenset(range(1, 32))}
    if dom == "L":
        return {"days": frozenset(), "last_day": True}
    if dom == "LW":
        return {"days": frozenset(), "last_workday": True}
    if match := re.fullmatch(r"([0-9]+)W", dom):
        day = _value(text, _DOM, match[1])
        _check_days_exist(text, frozenset([day]), months)
        return {"days": frozenset(), "nearest_workdays": frozenset([day])}
    if "L" in dom or "W" in dom:
        _fail(text, f"day-of-month {dom!r}: L, LW and W stand alone, like L, LW or 15W")
    days = _values(text, _DOM, dom)
    _check_days_exist(text, days, months)
    return {"days": days}


def _aws_dow(text: str, dow: str) -> _DowParts:
    if dow == "?":
        return {"weekdays": frozenset(range(7))}
    if dow == "L":  # the last day of the week: 7, Saturday
        return {"weekdays": frozenset([6])}
    if match := re.fullmatch(r"([0-9]+|[A-Z]{3})L", dow):
        return {
            "weekdays": frozenset(),
            "last_in_month": frozenset([_value(text, _AWS_DOW, match[1]) - 1]),
        }
    if match := re.fullmatch(r"([0-9]+|[A-Z]{3})#([0-9]+)", dow):
        nth = int(match[2])
        if not 1 <= nth <= 5:
            _fail(
                text, f"day-of-week {dow!r}: instance {nth} is out of range 1-5 (3#2 = 2nd Tuesday)"
            )
        weekday = _value(text, _AWS_DOW, match[1]) - 1
        return {"weekdays": frozenset(), "nth_in_month": frozenset([(weekday, nth)])}
    if "#" in dow:
        _fail(text, f"day-of-week {dow!r}: # takes one expression alone, like 3#2 (2nd Tuesday)")
    if "L" in dow:
        _fail(text, f"day-of-week {dow!r}: L stands alone or after one day, like L, 6L or FRIL")
    return {"weekdays": frozenset(v - 1 for v in _values(text, _AWS_DOW, dow, steps=False))}


def _check_days_exist(text: str, days: frozenset[int], months: frozenset[int]) -> None:
    """Refuse a day-of-month that no allowed month has (``30 2``), since it would never fire."""
    longest = max(_MONTH_LENGTH[m - 1] for m in months)
    if days and min(days) > longest:
        month_names = ", ".join(k.title() for k, v in _MONTHS.items() if v in months)
        _fail(
            text, f"day-of-month {min(days)} never occurs in {month_names}, so it would never fire"
        )


def _time_phrase(s: CronSchedule) -> str:
    minutes, hours = sorted(s.minutes), sorted(s.hours)
    if len(hours) == 24:
        if len(minutes) == 60:
            return "every minute"
        if len(minutes) == 1:
            return f"at minute {minutes[0]} of every hour"
        step = minutes[1] - minutes[0]
        if minutes == list(range(minutes[0], 60, step)) and minutes[0] < step and 60 % step == 0:
            return f"every {step} minutes"
    if len(hours) * len(minutes) <= 4:
        return "at " + ", ".join(f"{h:02d}:{m:02d}" for h in hours for m in minutes)
    return f"{len(hours) * len(minutes)} times a day"


def _day_phrase(s: CronSchedule) -> str:
    parts = []
    if s.days and len(s.days) < 31:
        parts.append("on day " + ",".join(map(str, sorted(s.days))))
    if s.last_day or s.last_workday:
        parts.append(f"on the last {'weekday' if s.last_workday else 'day'} of the month")
    parts += [f"on the weekday nearest day {d}" for d in sorted(s.nearest_workdays)]
    if s.weekdays and len(s.weekdays) < 7:
        parts.append("on " + ",".join(_DAYS[d].title() for d in sorted(s.weekdays)))
    parts += [f"on the last {_DAYS[d].title()}" for d in sorted(s.last_in_month)]
    parts += [f"on {_DAYS[d].title()} #{n}" for d, n in sorted(s.nth_in_month)]
    joiner = " or " if s.either_day else " "
    phrase = joiner.join(parts) or "every day"
    if len(s.months) < 12:
        phrase += " in " + ",".join(k.title() for k, v in _MONTHS.items() if v in s.months)
    if s.years is not None and len(s.years) < _YEAR.high - _YEAR.low + 1:
        phrase += f" in {min(s.years)}" + (f"-{max(s.years)}" if len(s.years) > 1 else "")
    return phrase
