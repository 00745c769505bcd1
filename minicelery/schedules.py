"""Schedules of periodic tasks, as in Celery: ``schedule`` (every N seconds), ``crontab`` and
their ``is_due(last_run_at) -> (is_due, next)`` contract, evaluated in the app's timezone."""

from __future__ import annotations

import datetime as dt
import math
import numbers
import time
from collections.abc import Callable
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ._state import get_current_app
from .cron import (
    DAYS_OF_MONTH,
    DAYS_OF_WEEK,
    HOURS,
    MINUTES,
    MONTHS,
    CronFields,
    ParseException,
    crontab_parser,
    expand,
)
from .exceptions import ImproperlyConfigured
from .utils.time import remaining

UTC = dt.timezone.utc


class schedstate(NamedTuple):  # Celery's lower-case name
    """What ``is_due`` answers: due now or not, and seconds until it is worth asking again."""

    is_due: bool
    next: float


# -- timezones ----------------------------------------------------------------------------
class LocalTimezone(dt.tzinfo):
    """The system's local time, DST included (``enable_utc=False`` with no ``timezone``)."""

    def _local(self, when: dt.datetime) -> time.struct_time:
        fields = (when.year, when.month, when.day, when.hour, when.minute, when.second, 0, 0, -1)
        return time.localtime(time.mktime(fields))

    def utcoffset(self, when: dt.datetime | None) -> dt.timedelta:
        local = self._local(when) if when is not None else time.localtime()
        return dt.timedelta(seconds=local.tm_gmtoff)

    def dst(self, when: dt.datetime | None) -> dt.timedelta:
        local = self._local(when) if when is not None else time.localtime()
        return dt.timedelta(hours=1) if local.tm_isdst > 0 else dt.timedelta(0)

    def tzname(self, when: dt.datetime | None) -> str:
        local = self._local(when) if when is not None else time.localtime()
        return local.tm_zone

    def __repr__(self) -> str:
        return "<LocalTimezone>"


def timezone_for(name: str | dt.tzinfo | None, enable_utc: bool = True) -> dt.tzinfo:
    """The timezone of Celery's ``timezone`` and ``enable_utc`` settings: the zone given (by
    name, or as a ``tzinfo`` object), else UTC, else (``enable_utc=False``) the system's
    local time."""
    if isinstance(name, dt.tzinfo):
        return name
    if name:
        if name.upper() == "UTC":
            return UTC
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ImproperlyConfigured(f"setting 'timezone': unknown timezone {name!r}") from exc
    return UTC if enable_utc else LocalTimezone()


# -- the schedules ------------------------------------------------------------------------
class BaseSchedule:
    """What every schedule shares: the clock (``nowfun``) and the app's timezone."""

    def __init__(self, nowfun: Callable[[], dt.datetime] | None = None, app: Any = None) -> None:
        self.nowfun = nowfun
        self._app = app

    @property
    def app(self) -> Any:
        return self._app or get_current_app()

    @app.setter
    def app(self, app: Any) -> None:
        self._app = app

    @property
    def tz(self) -> dt.tzinfo:
        conf = self.app.conf
        return timezone_for(conf.timezone, conf.enable_utc)

    def now(self) -> dt.datetime:
        """The current time, aware, in the app's timezone: from ``nowfun``, else from
        ``app.now()`` (so replacing the app's clock moves every schedule of the app)."""
        return self.maybe_make_aware((self.nowfun or self.app.now)())

    def maybe_make_aware(self, when: dt.datetime) -> dt.datetime:
        """``when`` in the schedule's timezone; a naive time is taken as UTC, as in Celery."""
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return when.astimezone(self.tz)

    def remaining_estimate(self, last_run_at: dt.datetime) -> dt.timedelta:
        raise NotImplementedError

    def is_due(self, last_run_at: dt.datetime) -> schedstate:
        raise NotImplementedError

    def run_time(self, last_run_at: dt.datetime) -> dt.datetime:
        """The time a run sent now stands for, recorded as the next ``last_run_at``."""
        return self.now()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, BaseSchedule):
            return other.nowfun == self.nowfun
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


def _seconds_between(start: dt.datetime, end: dt.datetime) -> float:
    # Through timestamps: subtracting two times of one tzinfo ignores a DST change between.
    return end.timestamp() - start.timestamp()


class schedule(BaseSchedule):  # Celery's lower-case name
    """Run every ``run_every`` (seconds or a ``timedelta``); the first run comes one interval
    after the entry is first seen. ``relative=True`` rounds run times to the interval's
    resolution (an hourly task runs on the hour)."""

    def __init__(
        self,
        run_every: float | dt.timedelta | None = None,
        relative: bool = False,
        nowfun: Callable[[], dt.datetime] | None = None,
        app: Any = None,
    ) -> None:
        self.run_every = _as_interval(run_every)
        self.relative = relative
        super().__init__(nowfun=nowfun, app=app)

    @property
    def seconds(self) -> float:
        return self.run_every.total_seconds()

    @property
    def human_seconds(self) -> str:
        return humanize_seconds(self.seconds)

    def remaining_estimate(self, last_run_at: dt.datetime) -> dt.timedelta:
        return remaining(
            self.maybe_make_aware(last_run_at), self.run_every, self.now(), self.relative
        )

    def is_due(self, last_run_at: dt.datetime) -> schedstate:
        """Due once the interval has passed; the next check is one interval later, or for a
        relative schedule at the next rounded boundary (which a DST change or a late run
        moves away from one interval)."""
        last_run_at = self.maybe_make_aware(last_run_at)
        left = max(self.remaining_estimate(last_run_at).total_seconds(), 0.0)
        if left > 0:
            return schedstate(False, left)
        if not self.relative:
            return schedstate(True, self.seconds)
        following = self.remaining_estimate(self.now()).total_seconds()
        return schedstate(True, following if following > 0 else self.seconds)

    def run_time(self, last_run_at: dt.datetime) -> dt.datetime:
        """The latest run time on the interval's grid that has come: runs stay on the grid
        (no drift from send latency), and runs missed while no beat ran count as one."""
        if self.relative:
            return self.now()
        last = self.maybe_make_aware(last_run_at)
        behind = _seconds_between(last, self.now())
        steps = max(math.floor(behind / self.seconds), 1)
        # In UTC: adding to a local time adds wall-clock time, off by an hour across DST.
        return (last.astimezone(UTC) + self.run_every * steps).astimezone(last.tzinfo)

    def __repr__(self) -> str:
        return f"<freq: {self.human_seconds}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, schedule):
            return self.run_every == other.run_every
        return self.run_every == other

    def __reduce__(self) -> Any:
        return self.__class__, (self.run_every, self.relative, self.nowfun)


def _as_interval(value: Any) -> dt.timedelta:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = dt.timedelta(seconds=float(value))
    if not isinstance(value, dt.timedelta):
        raise ImproperlyConfigured(
            f"schedule: run_every must be seconds or a timedelta, got {value!r}"
        )
    if value.total_seconds() <= 0:
        raise ImproperlyConfigured(f"schedule: run_every must be positive, got {value}")
    return value


def humanize_seconds(seconds: float) -> str:
    """``'10.00 seconds'``, ``'5.00 minutes'``: how beat's banner and reprs say an interval."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            amount = seconds / size
            return f"{amount:.2f} {unit}{'' if amount == 1 else 's'}"
    return f"{seconds:.2f} second{'' if seconds == 1 else 's'}"


class crontab(BaseSchedule):  # Celery's lower-case name
    """Run at the minutes matching all five fields, in the app's timezone, with Celery's
    syntax: ``crontab(minute='*/15')``, ``crontab(hour=7, minute=30, day_of_week='mon-fri')``,
    ``crontab(0, 0, day_of_month='1-7,15-21')``. Sunday is day 0."""

    def __init__(
        self,
        minute: Any = "*",
        hour: Any = "*",
        day_of_week: Any = "*",
        day_of_month: Any = "*",
        month_of_year: Any = "*",
        nowfun: Callable[[], dt.datetime] | None = None,
        app: Any = None,
    ) -> None:
        self._orig = tuple(
            "*" if spec is None else spec
            for spec in (minute, hour, day_of_week, day_of_month, month_of_year)
        )
        fields = (MINUTES, HOURS, DAYS_OF_WEEK, DAYS_OF_MONTH, MONTHS)
        expanded = (expand(spec, field) for spec, field in zip(self._orig, fields, strict=True))
        self.fields = CronFields(*expanded)
        self.fields.check_possible()
        super().__init__(nowfun=nowfun, app=app)

    minute = property(lambda self: set(self.fields.minute))
    hour = property(lambda self: set(self.fields.hour))
    day_of_week = property(lambda self: set(self.fields.day_of_week))
    day_of_month = property(lambda self: set(self.fields.day_of_month))
    month_of_year = property(lambda self: set(self.fields.month_of_year))

    def next_run(self, after: dt.datetime) -> dt.datetime:
        """The first matching minute strictly after ``after``, aware, in the app's timezone."""
        tz = self.tz
        local = self.maybe_make_aware(after).replace(tzinfo=None)
        return self.fields.next_fire(local).replace(tzinfo=tz)

    def remaining_estimate(self, last_run_at: dt.datetime) -> dt.timedelta:
        seconds = _seconds_between(self.now(), self.next_run(last_run_at))
        return dt.timedelta(seconds=seconds)

    def is_due(self, last_run_at: dt.datetime) -> schedstate:
        """Due once the first matching minute after ``last_run_at`` has come; then the next
        check is at the first matching minute after now."""
        now = self.now()
        left = _seconds_between(now, self.next_run(last_run_at))
        if left > 0:
            return schedstate(False, left)
        following = max(_seconds_between(now, self.next_run(now)), 0.0)
        return schedstate(not self._missed_deadline(now), following)

    def _missed_deadline(self, now: dt.datetime) -> bool:
        """With ``beat_cron_starting_deadline``: true when no run the crontab had falls within
        that many seconds before now, so a long-missed run is not sent late (a run exactly at
        the limit still counts)."""
        deadline = self.app.conf.beat_cron_starting_deadline
        if deadline is None:
            return False
        since = now.astimezone(UTC) - dt.timedelta(seconds=deadline, microseconds=1)
        return _seconds_between(now, self.next_run(since)) > 0

    def run_time(self, last_run_at: dt.datetime) -> dt.datetime:
        """The current minute: at or after the due one, and any matches missed in between
        count as this one run."""
        return self.now().replace(second=0, microsecond=0)

    def __repr__(self) -> str:
        minute, hour, dow, dom, moy = self._orig
        return f"<crontab: {minute} {hour} {dom} {moy} {dow} (m/h/dM/MY/d)>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, crontab):
            return self.fields == other.fields and super().__eq__(other)
        return NotImplemented

    def __reduce__(self) -> Any:
        return self.__class__, self._orig


class solar(BaseSchedule):  # Celery's lower-case name
    """Run at a solar event at a place: ``solar('sunset', -37.81753, 144.96715)`` (latitude,
    longitude in degrees, east positive), as in Celery. Events: dawn_astronomical,
    dawn_nautical, dawn_civil, sunrise, solar_noon, sunset, dusk_civil, dusk_nautical and
    dusk_astronomical. Where an event does not happen for a while (polar day or night), the
    next run is the next time it does."""

    # event -> (altitude of the sun's centre in degrees, or None for noon; rising)
    _EVENTS: dict[str, tuple[float | None, bool]] = {
        "dawn_astronomical": (-18.0, True),
        "dawn_nautical": (-12.0, True),
        "dawn_civil": (-6.0, True),
        "sunrise": (-0.833, True),  # the upper limb on the horizon, with refraction
        "solar_noon": (None, True),
        "sunset": (-0.833, False),
        "dusk_civil": (-6.0, False),
        "dusk_nautical": (-12.0, False),
        "dusk_astronomical": (-18.0, False),
    }

    def __init__(
        self,
        event: str,
        lat: float,
        lon: float,
        nowfun: Callable[[], dt.datetime] | None = None,
        app: Any = None,
    ) -> None:
        if event not in self._EVENTS:
            known = ", ".join(self._EVENTS)
            raise ValueError(f"Unknown event {event!r}: expected one of {known}")
        if not -90 <= lat <= 90:
            raise ValueError(f"Invalid latitude {lat!r}: must be within -90 and 90")
        if not -180 <= lon <= 180:
            raise ValueError(f"Invalid longitude {lon!r}: must be within -180 and 180")
        self.event, self.lat, self.lon = event, lat, lon
        super().__init__(nowfun=nowfun, app=app)

    def next_run(self, after: dt.datetime) -> dt.datetime | None:
        """The first occurrence strictly after ``after``, in the app's timezone (None if it
        does not happen within a year: a twilight that never comes at that latitude)."""
        from .sun import next_event

        altitude, rising = self._EVENTS[self.event]
        when = next_event(self.maybe_make_aware(after), self.lat, self.lon, altitude, rising)
        return None if when is None else when.astimezone(self.tz)

    def remaining_estimate(self, last_run_at: dt.datetime) -> dt.timedelta:
        when = self.next_run(last_run_at)
        if when is None:
            return dt.timedelta(days=1)
        return dt.timedelta(seconds=_seconds_between(self.now(), when))

    def is_due(self, last_run_at: dt.datetime) -> schedstate:
        """Due once the first occurrence after ``last_run_at`` has come; then the next check
        is at the next occurrence after now."""
        remaining = self.remaining_estimate(last_run_at).total_seconds()
        if remaining > 0:
            return schedstate(False, remaining)
        return schedstate(True, max(self.remaining_estimate(self.now()).total_seconds(), 0.0))

    def __repr__(self) -> str:
        return f"<solar: {self.event} at latitude {self.lat}, longitude: {self.lon}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, solar):
            same = (self.event, self.lat, self.lon) == (other.event, other.lat, other.lon)
            return same and super().__eq__(other)
        return NotImplemented

    def __reduce__(self) -> Any:
        return self.__class__, (self.event, self.lat, self.lon)


def maybe_schedule(value: Any, relative: bool = False, app: Any = None) -> Any:
    """A schedule from seconds, a ``timedelta`` or a schedule object (given ``app``)."""
    if value is None:
        return None
    if isinstance(value, (numbers.Real, dt.timedelta)) and not isinstance(value, bool):
        return schedule(value, relative, app=app)  # type: ignore[arg-type]
    if app is not None and isinstance(value, BaseSchedule):
        value.app = app
    return value


__all__ = [
    "BaseSchedule",
    "LocalTimezone",
    "ParseException",
    "crontab",
    "crontab_parser",
    "maybe_schedule",
    "schedstate",
    "schedule",
    "solar",
    "timezone_for",
]
