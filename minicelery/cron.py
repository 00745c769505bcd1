"""Crontab fields in Celery's syntax (``*/15``, ``1-5``, ``mon-fri``, ``0,30``) parsed into
sets of numbers, and the search for the next wall-clock minute that matches all five."""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass

from .exceptions import ImproperlyConfigured

MINUTE = dt.timedelta(minutes=1)
DAY_NAMES = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
MONTH_NAMES = tuple(calendar.month_name[1:])
_PART = re.compile(r"(?P<start>\*|[\w]+)(?:-(?P<end>[\w]+))?(?:/(?P<step>[^/]*))?")
SEARCH_YEARS = 29  # a 29 February falls on every weekday within 28 years


class ParseException(ImproperlyConfigured):
    """A crontab field that cannot be parsed or is out of range (also a ``ValueError``)."""


@dataclass(frozen=True)
class Field:
    """One crontab field: its name and the numbers it may hold (``low`` to ``high``)."""

    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()


MINUTES = Field("minute", 0, 59)
HOURS = Field("hour", 0, 23)
DAYS_OF_WEEK = Field("day_of_week", 0, 6, DAY_NAMES)
DAYS_OF_MONTH = Field("day_of_month", 1, 31)
MONTHS = Field("month_of_year", 1, 12, tuple(m.lower() for m in MONTH_NAMES))


class crontab_parser:  # Celery's lower-case name
    """Expand one field's spec into its numbers: ``crontab_parser(60).parse('*/15')`` is
    ``{0, 15, 30, 45}``; ``crontab_parser(31, 1)`` parses 1-based fields. A range whose end
    is below its start wraps around (``hour='22-2'``)."""

    ParseException = ParseException

    def __init__(self, max_: int = 60, min_: int = 0, field: Field | None = None) -> None:
        self.field = field or Field("field", min_, min_ + max_ - 1)

    def parse(self, spec: str) -> set[int]:
        numbers: set[int] = set()
        for part in spec.split(","):
            part = part.strip()
            if not part:
                raise self._error(spec, "an empty item in the list")
            numbers.update(self._part(spec, part))
        return numbers

    def _part(self, spec: str, part: str) -> list[int]:
        match = _PART.fullmatch(part)
        if match is None:
            raise self._error(spec, f"cannot parse {part!r}")
        start, end, step = match["start"], match["end"], match["step"]
        if start == "*":
            if end is not None:
                raise self._error(spec, f"cannot parse {part!r}")
            values = list(range(self.field.low, self.field.high + 1))
        elif end is not None:
            values = self._range(spec, self._number(spec, start), self._number(spec, end))
        elif step is not None:
            raise self._error(
                spec, f"a step needs '*' or a range before it ('*/{step}' or '{start}-.../{step}')"
            )
        else:
            values = [self._number(spec, start)]
        if step is None:
            return values
        if not step.isdigit() or int(step) == 0:
            raise self._error(spec, f"the step in {part!r} must be a positive whole number")
        return values[:: int(step)]

    def _range(self, spec: str, first: int, last: int) -> list[int]:
        if last >= first:
            return list(range(first, last + 1))
        return list(range(first, self.field.high + 1)) + list(range(self.field.low, last + 1))

    def _number(self, spec: str, token: str) -> int:
        value = int(token) if token.isdigit() else self._name(spec, token)
        if not self.field.low <= value <= self.field.high:
            raise self._error(
                spec, f"{value} is out of range (valid: {self.field.low}-{self.field.high})"
            )
        return value

    def _name(self, spec: str, token: str) -> int:
        lowered = token.lower()
        if len(lowered) >= 3:
            for index, name in enumerate(self.field.names):
                if name.startswith(lowered):
                    return index + self.field.low
        if self.field.names == DAY_NAMES:
            raise self._error(spec, f"invalid weekday literal {token!r}")
        if self.field.names:
            raise self._error(spec, f"invalid month literal {token!r}")
        raise self._error(spec, f"{token!r} is not a number")

    def _error(self, spec: str, reason: str) -> Exception:
        return ParseException(f"Invalid crontab {self.field.name} {spec!r}: {reason}")


def expand(spec: object, field: Field) -> frozenset[int]:
    """A field given as an int, a string spec or an iterable of ints, checked for range."""
    if isinstance(spec, bool):
        raise ParseException(f"Invalid crontab {field.name}: {spec!r}")
    if isinstance(spec, int):
        values = {spec}
    elif isinstance(spec, str):
        values = crontab_parser(field=field).parse(spec)
    elif isinstance(spec, Iterable):
        values = set(spec)
    else:
        raise TypeError(
            f"crontab {field.name} must be an int, a str or an iterable, not {type(spec)!r}"
        )
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParseException(f"Invalid crontab {field.name}: {value!r} is not a number")
        if not field.low <= value <= field.high:
            raise ParseException(
                f"Invalid crontab {field.name}: {value} is out of range "
                f"(valid: {field.low}-{field.high})"
            )
    if not values:
        raise ParseException(f"Invalid crontab {field.name}: no values")
    return frozenset(values)


@dataclass(frozen=True)
class CronFields:
    """The five expanded fields; every one must match (Celery's rule, unlike cron's OR of the
    two day fields)."""

    minute: frozenset[int]
    hour: frozenset[int]
    day_of_week: frozenset[int]  # 0 = Sunday
    day_of_month: frozenset[int]
    month_of_year: frozenset[int]

    def check_possible(self) -> None:
        """Refuse a date that never comes (``day_of_month=31, month_of_year=2``)."""
        for month in self.month_of_year:
            longest = calendar.monthrange(2000, month)[1]  # a leap year
            if any(day <= longest for day in self.day_of_month):
                return
        raise ParseException(
            f"Invalid crontab: day_of_month {sorted(self.day_of_month)} never falls in "
            f"month_of_year {sorted(self.month_of_year)}"
        )

    def next_fire(self, after: dt.datetime) -> dt.datetime:
        """The first wall-clock minute strictly after ``after`` (naive) matching every field."""
        when = after.replace(second=0, microsecond=0) + MINUTE
        limit = when.year + SEARCH_YEARS
        while when.year <= limit:
            moved = self._advance(when)
            if moved is None:
                return when
            when = moved
        raise ParseException("Invalid crontab: no matching time")  # check_possible prevents

    def _advance(self, when: dt.datetime) -> dt.datetime | None:
        """The next candidate after ``when`` if it does not match, else None."""
        if when.month not in self.month_of_year:
            return _first_of_next_month(when)
        weekday = (when.weekday() + 1) % 7
        if when.day not in self.day_of_month or weekday not in self.day_of_week:
            return _next_day(when)
        if when.hour not in self.hour:
            hour = _following(self.hour, when.hour)
            return _next_day(when) if hour is None else when.replace(hour=hour, minute=0)
        if when.minute not in self.minute:
            minute = _following(self.minute, when.minute)
            if minute is None:
                return when.replace(minute=0) + dt.timedelta(hours=1)
            return when.replace(minute=minute)
        return None


def _following(values: frozenset[int], current: int) -> int | None:
    return min((v for v in values if v > current), default=None)


def _next_day(when: dt.datetime) -> dt.datetime:
    return when.replace(hour=0, minute=0) + dt.timedelta(days=1)


def _first_of_next_month(when: dt.datetime) -> dt.datetime:
    year, month = (when.year + 1, 1) if when.month == 12 else (when.year, when.month + 1)
    return dt.datetime(year, month, 1)
