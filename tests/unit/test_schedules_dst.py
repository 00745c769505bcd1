"""Interval schedules across daylight-saving changes, with ``zoneinfo`` and ``dateutil``
timezones: a relative schedule keeps to its wall-clock boundary (a daily one to local
midnight, or to the first time after a midnight a gap skips), an absolute one counts real
elapsed time. Also: a schedule without ``nowfun`` reads the app's clock (``app.now``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from dateutil import tz as dateutil_tz

from minicelery import Celery
from minicelery.schedules import schedule
from minicelery.utils.time import datetime_exists, remaining, resolve_imaginary

UTC = dt.timezone.utc
DAY, HOUR = dt.timedelta(days=1), dt.timedelta(hours=1)
D = dt.datetime

# zone, interval, relative, last run, first due, second due (local wall times)
CASES = {
    "daily-fall-back": ("America/New_York", DAY, True,
                        D(2026, 11, 1, 0, 30), D(2026, 11, 2), D(2026, 11, 3)),
    "daily-spring-forward": ("America/New_York", DAY, True,
                             D(2026, 3, 7, 23, 30), D(2026, 3, 8), D(2026, 3, 9)),
    "daily-over-spring-forward": ("America/New_York", DAY, True,
                                  D(2026, 3, 8, 0, 30), D(2026, 3, 9), D(2026, 3, 10)),
    "hourly-over-the-gap": ("America/New_York", HOUR, True,
                            D(2026, 3, 8, 1, 30), D(2026, 3, 8, 3), D(2026, 3, 8, 4)),
    "hourly-half-hour-gap": ("Australia/Lord_Howe", HOUR, True,
                             D(2026, 10, 4, 1, 15), D(2026, 10, 4, 2, 30), D(2026, 10, 4, 3)),
    "hourly-half-hour-rollback": ("Australia/Lord_Howe", HOUR, True,
                                  D(2026, 4, 5, 1), D(2026, 4, 5, 2), D(2026, 4, 5, 3)),
    "daily-midnight-in-a-gap": ("Africa/Cairo", DAY, True,
                                D(2026, 4, 23, 23, 30), D(2026, 4, 24, 1), D(2026, 4, 25)),
    "daily-repeated-midnight": ("America/Goose_Bay", DAY, True,
                                D(2000, 10, 28, 23, 30, fold=1), D(2000, 10, 29, fold=1),
                                D(2000, 10, 30)),
    "two-hourly-after-a-repeat": ("Pacific/Chatham", 2 * HOUR, True,
                                  D(2026, 4, 5, 2, 45), D(2026, 4, 5, 3, fold=1),
                                  D(2026, 4, 5, 5)),
    "elapsed-day-fall-back": ("America/New_York", DAY, False,
                              D(2026, 11, 1, 0, 30), D(2026, 11, 1, 23, 30),
                              D(2026, 11, 2, 23, 30)),
    "elapsed-day-spring-forward": ("America/New_York", DAY, False,
                                   D(2026, 3, 7, 23, 30), D(2026, 3, 9, 0, 30),
                                   D(2026, 3, 10, 0, 30)),
}  # fmt: skip

ZONES: dict[str, Callable[[str], Any]] = {"zoneinfo": ZoneInfo, "dateutil": dateutil_tz.gettz}


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2000, 1, 1, tzinfo=UTC)

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.mark.parametrize("factory", list(ZONES), ids=list(ZONES))
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_an_interval_is_due_at_its_deadline_and_realigns(
    make_app: Callable[..., Celery], case: str, factory: str
) -> None:
    name, interval, relative, last_run, due_at, next_due_at = CASES[case]
    zone = ZONES[factory](name)
    clock = Clock()
    every = schedule(interval, relative, nowfun=clock, app=make_app(timezone=zone))
    last = last_run.replace(tzinfo=zone)
    due = due_at.replace(tzinfo=zone).astimezone(UTC)
    next_due = next_due_at.replace(tzinfo=zone).astimezone(UTC)

    clock.now = (due - dt.timedelta(seconds=1)).astimezone(zone)
    assert every.is_due(last) == (False, pytest.approx(1.0))
    clock.now = due.astimezone(zone)
    is_due, next_check = every.is_due(last)
    assert is_due
    assert next_check == pytest.approx((next_due - due).total_seconds())
    # The run just sent is the new last run: not due again until the next deadline.
    assert every.is_due(clock.now) == (False, pytest.approx((next_due - due).total_seconds()))


@pytest.mark.parametrize("factory", list(ZONES), ids=list(ZONES))
def test_the_grid_of_an_absolute_interval_counts_real_time(
    make_app: Callable[..., Celery], factory: str
) -> None:
    """The run time the beat records for a daily (not relative) run across a fall-back
    night is 24 real hours after the last one (23:30 local), not 00:30 the next day."""
    zone = ZONES[factory]("America/New_York")
    clock = Clock()
    every = schedule(DAY, nowfun=clock, app=make_app(timezone=zone))
    last = dt.datetime(2026, 11, 1, 0, 30, tzinfo=zone)
    clock.now = dt.datetime(2026, 11, 1, 23, 30, 5, tzinfo=zone)
    assert every.run_time(last).astimezone(UTC) == last.astimezone(UTC) + DAY


def test_gap_times_do_not_exist_and_resolve_forward() -> None:
    zone = ZoneInfo("America/New_York")
    in_gap = dt.datetime(2026, 3, 8, 2, 30, tzinfo=zone)
    assert not datetime_exists(in_gap)
    assert resolve_imaginary(in_gap).replace(tzinfo=None) == dt.datetime(2026, 3, 8, 3, 30)
    repeated = dt.datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=zone)
    assert datetime_exists(repeated) and resolve_imaginary(repeated) == repeated


def test_remaining_counts_real_time_unless_relative() -> None:
    zone = ZoneInfo("America/New_York")
    start = dt.datetime(2026, 3, 8, 0, 0, tzinfo=zone)  # the night clocks spring forward
    assert remaining(start, DAY, start) == DAY
    assert remaining(start, DAY, start, relative=True) == dt.timedelta(hours=23)


def test_a_schedule_without_nowfun_reads_the_app_clock(
    make_app: Callable[..., Celery], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(timezone="Europe/Paris")
    every = schedule(60, app=app)
    frozen = dt.datetime(2030, 1, 1, 12, 0, tzinfo=ZoneInfo("Europe/Paris"))
    monkeypatch.setattr(app, "now", lambda: frozen)
    assert every.now() == frozen
    assert every.is_due(frozen - dt.timedelta(seconds=59)) == (False, pytest.approx(1.0))
    assert every.is_due(frozen - dt.timedelta(seconds=60)) == (True, 60.0)
