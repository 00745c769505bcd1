"""Schedules: crontab parsing (Celery's syntax and errors), when a crontab or an interval is
due and how long until the next run, in UTC and in a named timezone. The clock is a fixed
``nowfun``, never the real time."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import pytest

from minicelery import Celery
from minicelery.exceptions import ImproperlyConfigured, MiniceleryError
from minicelery.schedules import (
    LocalTimezone,
    ParseException,
    crontab,
    crontab_parser,
    maybe_schedule,
    schedule,
    solar,
    timezone_for,
)

UTC = dt.timezone.utc


def at(*fields: int, tz: dt.tzinfo = UTC) -> dt.datetime:
    return dt.datetime(*fields, tzinfo=tz)  # type: ignore[misc]


def fixed(now: dt.datetime) -> Callable[[], dt.datetime]:
    return lambda: now


@pytest.fixture
def utc_app(make_app: Callable[..., Celery]) -> Celery:
    return make_app()


def cron(app: Celery, now: dt.datetime, **fields: Any) -> crontab:
    return crontab(nowfun=fixed(now), app=app, **fields)


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("max_", "min_", "spec", "expected"),
    [
        (60, 0, "*/15", {0, 15, 30, 45}),
        (60, 0, "*", set(range(60))),
        (60, 0, "7", {7}),
        (60, 0, "1,13,30-45,50-59/2", {1, 13, *range(30, 46), *range(50, 60, 2)}),
        (60, 0, " 5 , 10 ", {5, 10}),
        (24, 0, "*/4", {0, 4, 8, 12, 16, 20}),
        (24, 0, "0,8-17/2", {0, 8, 10, 12, 14, 16}),
        (24, 0, "22-2", {22, 23, 0, 1, 2}),
        (31, 1, "*/3", {1, 4, 7, 10, 13, 16, 19, 22, 25, 28, 31}),
        (12, 1, "*/2", {1, 3, 5, 7, 9, 11}),
        (12, 1, "2-12/2", {2, 4, 6, 8, 10, 12}),
    ],
)
def test_crontab_parser_expands_celery_syntax(
    max_: int, min_: int, spec: str, expected: set[int]
) -> None:
    assert crontab_parser(max_, min_).parse(spec) == expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("mon-fri", {1, 2, 3, 4, 5}),
        ("sun", {0}),
        ("sat,sun", {6, 0}),
        ("fri-mon", {5, 6, 0, 1}),
        ("Monday,THURS,tues", {1, 4, 2}),
        ("*/2", {0, 2, 4, 6}),
        ("1-5", {1, 2, 3, 4, 5}),
    ],
)
def test_day_of_week_takes_day_names_ranges_and_lists(spec: str, expected: set[int]) -> None:
    assert crontab(day_of_week=spec).day_of_week == expected


def test_fields_take_ints_lists_sets_and_ranges() -> None:
    entry = crontab(minute=[0, 30], hour=range(9, 12), day_of_month={1, 15}, month_of_year=6)
    assert entry.minute == {0, 30}
    assert entry.hour == {9, 10, 11}
    assert entry.day_of_month == {1, 15}
    assert entry.month_of_year == {6}
    assert entry.day_of_week == set(range(7))


def test_month_names_are_accepted() -> None:
    assert crontab(month_of_year="jan,jul-sep").month_of_year == {1, 7, 8, 9}


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"minute": 60}, "minute: 60 is out of range (valid: 0-59)"),
        ({"minute": "0-60"}, "60 is out of range (valid: 0-59)"),
        ({"hour": 24}, "hour: 24 is out of range"),
        ({"day_of_week": 7}, "day_of_week: 7 is out of range (valid: 0-6)"),
        ({"day_of_month": 0}, "day_of_month: 0 is out of range (valid: 1-31)"),
        ({"month_of_year": "13"}, "13 is out of range (valid: 1-12)"),
        ({"minute": "1,,2"}, "an empty item"),
        ({"minute": ""}, "an empty item"),
        ({"minute": "*/0"}, "must be a positive whole number"),
        ({"minute": "*/"}, "must be a positive whole number"),
        ({"minute": "5/15"}, "a step needs '*' or a range"),
        ({"minute": "-5"}, "cannot parse"),
        ({"minute": "1-"}, "cannot parse"),
        ({"minute": "*-5"}, "cannot parse"),
        ({"minute": "mon"}, "'mon' is not a number"),
        ({"day_of_week": "funday"}, "invalid weekday literal 'funday'"),
        ({"day_of_week": "mo"}, "invalid weekday literal 'mo'"),
        ({"month_of_year": "smarch"}, "invalid month literal"),
        ({"minute": [0, 61]}, "61 is out of range"),
        ({"minute": []}, "no values"),
        ({"day_of_month": 31, "month_of_year": "feb,apr"}, "never falls in"),
    ],
)
def test_bad_crontab_fields_raise_a_clear_parse_exception(
    fields: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ParseException) as caught:
        crontab(**fields)
    assert fragment in str(caught.value)
    assert isinstance(caught.value, ValueError)  # as Celery's range errors are
    assert isinstance(caught.value, MiniceleryError)


def test_a_field_of_the_wrong_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="minute must be an int, a str or an iterable"):
        crontab(minute=1.5)


def test_repr_and_equality() -> None:
    entry = crontab(minute="*/15", hour=4, day_of_week="mon")
    assert repr(entry) == "<crontab: */15 4 * * mon (m/h/dM/MY/d)>"
    assert entry == crontab(minute="0,15,30,45", hour="4", day_of_week=1)
    assert entry != crontab(minute="*/15")


# --------------------------------------------------------------------------- crontab timing


def test_every_quarter_hour_is_due_at_the_quarter(utc_app: Celery) -> None:
    last = at(2024, 5, 6, 10, 7, 30)
    not_yet = cron(utc_app, at(2024, 5, 6, 10, 14, 59), minute="*/15")
    assert not_yet.is_due(last) == (False, 1.0)
    assert not_yet.remaining_estimate(last) == dt.timedelta(seconds=1)
    due = cron(utc_app, at(2024, 5, 6, 10, 15, 0), minute="*/15")
    assert due.is_due(last) == (True, 900.0)
    late = cron(utc_app, at(2024, 5, 6, 10, 16, 40), minute="*/15")
    assert late.is_due(last) == (True, 13 * 60 + 20)
    # Once run at 10:15, the next is 10:30, wherever in the minute the run was recorded.
    assert due.is_due(at(2024, 5, 6, 10, 15, 0)) == (False, 900.0)
    assert due.next_run(at(2024, 5, 6, 10, 15, 59)) == at(2024, 5, 6, 10, 30)


def fields_of(spec: str) -> dict[str, str]:
    """Crontab fields from ``'minute hour day_of_week day_of_month month_of_year'``."""
    names = ("minute", "hour", "day_of_week", "day_of_month", "month_of_year")
    return dict(zip(names, spec.split(), strict=True))


@pytest.mark.parametrize(
    ("spec", "last", "expected"),
    [
        # Weekdays at 7:30: Friday's run is followed by Monday's.
        ("30 7 mon-fri * *", (2024, 5, 10, 7, 30), (2024, 5, 13, 7, 30)),
        # Hour ranges wrap past midnight.
        ("5 22-2 * * *", (2024, 5, 6, 23, 5), (2024, 5, 7, 0, 5)),
        ("5 22-2 * * *", (2024, 5, 7, 2, 5), (2024, 5, 7, 22, 5)),
        # The first day of each quarter at noon.
        ("0 12 * 1 */3", (2024, 1, 1, 12, 0), (2024, 4, 1, 12, 0)),
        # The first Monday of the month (both day fields must match, as in Celery).
        ("0 0 1 1-7 *", (2024, 5, 6, 0, 0), (2024, 6, 3, 0, 0)),
        # The 31st only exists in some months.
        ("0 0 * 31 *", (2024, 5, 31, 0, 0), (2024, 7, 31, 0, 0)),
        # 29 February comes every four years.
        ("0 0 * 29 2", (2024, 2, 29, 0, 0), (2028, 2, 29, 0, 0)),
        # The last minute of the year rolls into the next.
        ("0 0 * * *", (2024, 12, 31, 23, 59), (2025, 1, 1, 0, 0)),
        ("*/10 * sat,sun * *", (2024, 5, 10, 12, 0), (2024, 5, 11, 0, 0)),
        ("0,30 9-17 * * jan,jul", (2024, 1, 31, 17, 30), (2024, 7, 1, 9, 0)),
    ],
)
def test_next_run_follows_every_field(
    utc_app: Celery, spec: str, last: tuple[int, ...], expected: tuple[int, ...]
) -> None:
    fields = fields_of(spec)
    now = at(*last) + dt.timedelta(seconds=1)
    entry = cron(utc_app, now, **fields)
    assert entry.next_run(at(*last)) == at(*expected)
    remaining = (at(*expected) - now).total_seconds()
    assert entry.is_due(at(*last)) == (False, remaining)
    assert cron(utc_app, at(*expected), **fields).is_due(at(*last)).is_due


def test_crontab_is_evaluated_in_the_app_timezone(make_app: Callable[..., Celery]) -> None:
    london = make_app(timezone="Europe/London")
    tz = london.timezone
    # 07:00 in London is 06:00 UTC in summer time.
    entry = cron(london, at(2024, 7, 1, 5, 0), minute=0, hour=7)
    assert entry.next_run(at(2024, 7, 1, 5, 0)) == at(2024, 7, 1, 6, 0)
    assert entry.next_run(at(2024, 7, 1, 5, 0)).utcoffset() == dt.timedelta(hours=1)
    # Across the spring change (31 March 2024) a daily 07:00 run is 23 hours after the last.
    last = dt.datetime(2024, 3, 30, 7, 0, tzinfo=tz)
    across = cron(london, last + dt.timedelta(minutes=1), minute=0, hour=7)
    assert across.remaining_estimate(last) == dt.timedelta(hours=23, minutes=-1)


def test_a_naive_last_run_is_taken_as_utc(make_app: Callable[..., Celery]) -> None:
    app = make_app(timezone="Asia/Tokyo")  # UTC+9, no DST
    entry = cron(app, at(2024, 5, 6, 0, 0), minute=0, hour=10)  # 10:00 Tokyo = 01:00 UTC
    assert entry.next_run(dt.datetime(2024, 5, 6, 0, 0)) == at(2024, 5, 6, 1, 0)


@pytest.mark.parametrize(
    ("now_minute", "due"),
    [(20, True), (29, True), (31, False)],  # the last run it had was 10:00; deadline 30 min
)
def test_cron_starting_deadline_drops_a_long_missed_run(
    make_app: Callable[..., Celery], now_minute: int, due: bool
) -> None:
    """beat_cron_starting_deadline: a run missed (last sent 08:45, runs at :00 and :45) is
    sent late only if the latest one it missed is within the deadline; either way the next
    check is at the next run after now."""
    app = make_app(beat_cron_starting_deadline=1800)
    now = at(2022, 12, 5, 10, now_minute)
    every = cron(app, now, minute="0,45")
    expected_next = (at(2022, 12, 5, 10, 45) - now).total_seconds()
    assert every.is_due(at(2022, 12, 5, 8, 45)) == (due, expected_next)
    assert cron(make_app(), now, minute="0,45").is_due(at(2022, 12, 5, 8, 45)).is_due


def test_timezone_settings(make_app: Callable[..., Celery]) -> None:
    assert timezone_for(None, True) is UTC
    assert timezone_for("UTC", False) is UTC
    assert str(timezone_for("Europe/Paris")) == "Europe/Paris"
    local = timezone_for(None, enable_utc=False)
    assert isinstance(local, LocalTimezone)
    now = dt.datetime.now()
    assert local.utcoffset(now) == dt.timedelta(seconds=time.localtime().tm_gmtoff)
    with pytest.raises(ImproperlyConfigured, match="unknown timezone 'Mars/Olympus'"):
        make_app(timezone="Mars/Olympus")
    app = make_app(timezone="America/New_York")
    assert app.now().tzinfo == app.timezone
    assert abs(app.now().timestamp() - time.time()) < 5


# --------------------------------------------------------------------------- intervals


def test_an_interval_is_due_once_it_has_passed(utc_app: Celery) -> None:
    last = at(2024, 5, 6, 12, 0, 0)
    every = schedule(10, nowfun=fixed(at(2024, 5, 6, 12, 0, 5)), app=utc_app)
    assert every.is_due(last) == (False, 5.0)
    assert every.remaining_estimate(last) == dt.timedelta(seconds=5)
    now_due = schedule(dt.timedelta(seconds=10), nowfun=fixed(at(2024, 5, 6, 12, 0, 10)))
    assert now_due.is_due(last) == (True, 10.0)
    assert repr(now_due) == "<freq: 10.00 seconds>"
    assert repr(schedule(dt.timedelta(minutes=5))) == "<freq: 5.00 minutes>"
    assert now_due == schedule(10) and now_due == dt.timedelta(seconds=10)


def test_an_interval_runs_on_its_grid_and_counts_missed_runs_as_one(utc_app: Celery) -> None:
    last = at(2024, 5, 6, 12, 0, 0)
    late = schedule(10, nowfun=fixed(at(2024, 5, 6, 12, 0, 12)), app=utc_app)
    assert late.run_time(last) == at(2024, 5, 6, 12, 0, 10)  # no drift from send latency
    long_down = schedule(10, nowfun=fixed(at(2024, 5, 6, 12, 1, 35)), app=utc_app)
    assert long_down.is_due(last).is_due
    assert long_down.run_time(last) == at(2024, 5, 6, 12, 1, 30)  # one run, on the grid


def test_relative_intervals_round_to_their_resolution(utc_app: Celery) -> None:
    hourly = schedule(dt.timedelta(hours=1), relative=True, nowfun=fixed(at(2024, 5, 6, 13, 0)))
    hourly.app = utc_app
    assert hourly.is_due(at(2024, 5, 6, 12, 20)) == (True, 3600.0)  # due on the hour
    assert hourly.remaining_estimate(at(2024, 5, 6, 12, 20)) == dt.timedelta(0)


@pytest.mark.parametrize("bad", [0, -1, "10", None, dt.timedelta(0)])
def test_bad_intervals_are_refused(bad: Any) -> None:
    with pytest.raises(ImproperlyConfigured, match="run_every"):
        schedule(bad)


def test_maybe_schedule(utc_app: Celery) -> None:
    assert maybe_schedule(None) is None
    assert maybe_schedule(30) == schedule(30)
    assert maybe_schedule(dt.timedelta(minutes=1)) == schedule(60)
    entry = crontab(minute=0)
    assert maybe_schedule(entry, app=utc_app) is entry
    assert entry.app is utc_app


# --------------------------------------------------------------------------- solar

LONDON = (51.5074, -0.1278)
NEW_YORK = (40.7128, -74.006)
LONGYEARBYEN = (78.22, 15.65)


def near(actual: dt.datetime | None, expected: dt.datetime, minutes: float = 2) -> bool:
    return actual is not None and abs((actual - expected).total_seconds()) <= minutes * 60


@pytest.mark.parametrize(
    ("event", "place", "after", "expected"),
    [
        # Published times (rounded to the minute) of well-known places and dates.
        ("sunrise", LONDON, (2026, 6, 21), (2026, 6, 21, 3, 43)),  # 04:43 BST
        ("sunset", LONDON, (2026, 6, 21), (2026, 6, 21, 20, 21)),  # 21:21 BST
        ("sunrise", NEW_YORK, (2026, 1, 1), (2026, 1, 1, 12, 20)),  # 07:20 EST
        ("sunset", NEW_YORK, (2026, 1, 1), (2026, 1, 1, 21, 39)),  # 16:39 EST
        ("solar_noon", (0.0, 0.0), (2026, 3, 20), (2026, 3, 20, 12, 7)),  # equation of time
        ("sunset", (-37.81753, 144.96715), (2026, 6, 21), (2026, 6, 21, 7, 8)),  # Melbourne
    ],
)
def test_solar_events_at_known_places_and_dates(
    utc_app: Celery,
    event: str,
    place: tuple[float, float],
    after: tuple[int, ...],
    expected: tuple[int, ...],
) -> None:
    sched = solar(event, *place, app=utc_app)
    assert near(sched.next_run(at(*after)), at(*expected))


def test_twilights_come_in_order_around_the_day(utc_app: Celery) -> None:
    start = at(2026, 9, 1, 6)  # 02:00 in New York: before that day's first twilight
    order = ["dawn_astronomical", "dawn_nautical", "dawn_civil", "sunrise", "solar_noon",
             "sunset", "dusk_civil", "dusk_nautical", "dusk_astronomical"]  # fmt: skip
    times = [solar(event, *NEW_YORK, app=utc_app).next_run(start) for event in order]
    assert all(t is not None for t in times)
    assert times == sorted(times)  # type: ignore[type-var]
    assert (times[-1] - times[0]) < dt.timedelta(hours=24)  # type: ignore[operator]


def test_in_the_midnight_sun_the_next_sunset_is_weeks_away(utc_app: Celery) -> None:
    sched = solar("sunset", *LONGYEARBYEN, app=utc_app)
    assert near(sched.next_run(at(2026, 6, 21)), at(2026, 8, 25, 22, 0), minutes=180)
    noon = solar("solar_noon", *LONGYEARBYEN, app=utc_app).next_run(at(2026, 6, 21))
    assert noon is not None and noon < at(2026, 6, 22)  # noon still comes every day
    polar_night = solar("sunrise", *LONGYEARBYEN, app=utc_app).next_run(at(2026, 11, 1))
    assert near(polar_night, at(2027, 2, 16, 10, 20), minutes=180)


def test_solar_is_due_at_the_event_and_then_waits_for_the_next(utc_app: Celery) -> None:
    last = at(2026, 6, 20, 21, 0)  # after the 20th's sunset
    sunset = solar("sunset", *LONDON, app=utc_app).next_run(last)
    assert sunset is not None and near(sunset, at(2026, 6, 21, 20, 21))
    before = solar("sunset", *LONDON, nowfun=fixed(sunset - dt.timedelta(minutes=5)),
                   app=utc_app)  # fmt: skip
    due, wait = before.is_due(last)
    assert not due and 299 <= wait <= 301
    after = solar("sunset", *LONDON, nowfun=fixed(sunset + dt.timedelta(seconds=30)),
                  app=utc_app)  # fmt: skip
    due, wait = after.is_due(last)
    assert due and 23 * 3600 < wait < 25 * 3600  # tomorrow's sunset


def test_solar_refuses_unknown_events_and_places() -> None:
    with pytest.raises(ValueError, match="Unknown event 'moonrise'"):
        solar("moonrise", 0, 0)
    with pytest.raises(ValueError, match="latitude"):
        solar("sunset", 91, 0)
    with pytest.raises(ValueError, match="longitude"):
        solar("sunset", 0, -181)


def test_solar_repr_equality_and_pickling() -> None:
    import pickle

    sched = solar("sunset", -37.81753, 144.96715)
    assert repr(sched) == "<solar: sunset at latitude -37.81753, longitude: 144.96715>"
    assert sched == solar("sunset", -37.81753, 144.96715) != solar("sunrise", -37.81753, 144.96715)
    assert pickle.loads(pickle.dumps(sched)) == sched
