"""Time arithmetic of periodic schedules, under Celery's module path ``celery.utils.time``:
how long until an interval has passed, in real (elapsed) time or rounded to the wall clock of
a timezone that has daylight-saving gaps and repeated hours."""

from __future__ import annotations

import datetime as dt

UTC = dt.timezone.utc
DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)
MINUTE = dt.timedelta(minutes=1)


def is_naive(when: dt.datetime) -> bool:
    """True when ``when`` has no usable timezone."""
    return when.tzinfo is None or when.tzinfo.utcoffset(when) is None


def maybe_make_aware(when: dt.datetime, tz: dt.tzinfo | None = None) -> dt.datetime:
    """``when`` unchanged when it is aware; a naive time is taken as UTC (then shown in
    ``tz`` when one is given), as Celery does."""
    if not is_naive(when):
        return when
    aware = when.replace(tzinfo=UTC)
    return aware if tz is None else aware.astimezone(tz)


def datetime_exists(when: dt.datetime) -> bool:
    """False for a wall-clock time that a daylight-saving gap skips (02:30 on a spring-forward
    night in New York): it does not survive a round trip through UTC."""
    if when.tzinfo is None:
        return True
    back = when.astimezone(UTC).astimezone(when.tzinfo)
    return back.replace(tzinfo=None) == when.replace(tzinfo=None)


def resolve_imaginary(when: dt.datetime) -> dt.datetime:
    """A time in a gap moved forward by the gap's size (02:30 -> 03:30 when 02:00 jumps to
    03:00); any other time unchanged."""
    if datetime_exists(when):
        return when
    after = (when + DAY).utcoffset() or dt.timedelta(0)
    before = (when - DAY).utcoffset() or dt.timedelta(0)
    return when + (after - before)


def delta_resolution(when: dt.datetime, delta: dt.timedelta) -> dt.datetime:
    """``when`` rounded down to the day, hour or minute when ``delta`` is at least that long;
    the occurrence (``fold``) of a repeated local time is kept."""
    seconds = max(delta.total_seconds(), 0)
    if seconds >= 86400:
        return when.replace(hour=0, minute=0, second=0, microsecond=0)
    if seconds >= 3600:
        return when.replace(minute=0, second=0, microsecond=0)
    if seconds >= 60:
        return when.replace(second=0, microsecond=0)
    return when


def _occurrences(when: dt.datetime, delta: dt.timedelta) -> list[dt.datetime]:
    """The UTC instants of ``when`` rounded to ``delta``'s resolution: two when that wall time
    is repeated, a gap's time moved past the gap (never backwards)."""
    rounded = delta_resolution(when, delta).replace(microsecond=0)
    found = []
    for fold in (0, 1):
        candidate = rounded.replace(fold=fold)
        resolved = resolve_imaginary(candidate)
        if resolved.replace(tzinfo=None) > candidate.replace(tzinfo=None):
            candidate = resolved
        found.append(candidate.astimezone(UTC))
    return found


def _elapsed(start: dt.datetime, delta: dt.timedelta) -> dt.datetime:
    if is_naive(start):
        return start + delta
    return (start.astimezone(UTC) + delta).astimezone(start.tzinfo)


def _relative_deadline(start: dt.datetime, delta: dt.timedelta) -> dt.datetime:
    """The deadline of a relative schedule: the last rounded wall-clock boundary at or before
    ``start + delta`` in real time, never at or before ``start``. Day intervals count calendar
    days, so a daily task stays at midnight across a DST change."""
    start_utc = start.astimezone(UTC)
    if delta >= DAY:
        end = start + delta  # calendar arithmetic on purpose
        later = [when for when in _occurrences(end, delta) if when > start_utc]
        return min(later, default=end.astimezone(UTC))
    end = _elapsed(start, delta)
    end_utc = start_utc + delta
    candidates = _occurrences(end, delta)
    reached = [when for when in candidates if when <= end_utc]
    rounded = max(reached) if reached else min(candidates)
    if delta < MINUTE or rounded > start_utc:
        return rounded
    # Rounding went back past the start (a rollback of part of an hour): look at the next
    # wall-clock boundary and at the calendar one as well, in both occurrences.
    unit = HOUR if delta >= HOUR else MINUTE
    candidates += _occurrences(end + unit, delta) + _occurrences(start + delta, delta)
    later = [when for when in candidates if when > start_utc]
    reached = [when for when in later if when <= end_utc]
    return max(reached) if reached else min(later, default=end_utc)


def remaining(
    start: dt.datetime,
    ends_in: dt.timedelta,
    now: dt.datetime | None = None,
    relative: bool = False,
) -> dt.timedelta:
    """The real time left from ``now`` until ``ends_in`` after ``start``; with ``relative``,
    until the wall-clock boundary that deadline rounds to (see ``delta_resolution``)."""
    now = now or dt.datetime.now(UTC)
    end = _relative_deadline(start, ends_in) if relative else _elapsed(start, ends_in)
    return maybe_make_aware(end).astimezone(UTC) - maybe_make_aware(now).astimezone(UTC)


__all__ = [
    "datetime_exists",
    "delta_resolution",
    "is_naive",
    "maybe_make_aware",
    "remaining",
    "resolve_imaginary",
]
