"""Where the sun is: the times of sunrise, sunset, twilight and solar noon at a place, for
the ``solar`` schedule. NOAA's solar position equations (the ones behind its solar
calculator), good to about a minute for latitudes within the polar circles and at worst a
few minutes near them; no dependency.
"""

from __future__ import annotations

import datetime as dt
import math

UTC = dt.timezone.utc
J2000 = 2451545.0  # Julian day of 2000-01-01 12:00 UTC
_UNIX_EPOCH_JD = 2440587.5


def _julian_day(when: dt.datetime) -> float:
    return when.timestamp() / 86400.0 + _UNIX_EPOCH_JD


def _from_julian_day(jd: float) -> dt.datetime:
    return dt.datetime.fromtimestamp((jd - _UNIX_EPOCH_JD) * 86400.0, UTC)


def _declination_and_equation_of_time(jd: float) -> tuple[float, float]:
    """The sun's declination (radians) and the equation of time (minutes) at ``jd``."""
    t = (jd - J2000) / 36525.0  # Julian centuries since J2000
    mean_long = math.radians((280.46646 + t * (36000.76983 + t * 0.0003032)) % 360)
    anomaly = math.radians(357.52911 + t * (35999.05029 - 0.0001537 * t))
    eccentricity = 0.016708634 - t * (0.000042037 + 0.0000001267 * t)
    centre = (
        math.sin(anomaly) * (1.914602 - t * (0.004817 + 0.000014 * t))
        + math.sin(2 * anomaly) * (0.019993 - 0.000101 * t)
        + math.sin(3 * anomaly) * 0.000289
    )
    omega = math.radians(125.04 - 1934.136 * t)
    true_long = math.degrees(mean_long) + centre
    apparent_long = math.radians(true_long - 0.00569 - 0.00478 * math.sin(omega))
    mean_obliquity = 23 + (26 + (21.448 - t * (46.815 + t * (0.00059 - t * 0.001813))) / 60) / 60
    obliquity = math.radians(mean_obliquity + 0.00256 * math.cos(omega))
    declination = math.asin(math.sin(obliquity) * math.sin(apparent_long))
    y = math.tan(obliquity / 2) ** 2
    equation = 4 * math.degrees(
        y * math.sin(2 * mean_long)
        - 2 * eccentricity * math.sin(anomaly)
        + 4 * eccentricity * y * math.sin(anomaly) * math.cos(2 * mean_long)
        - 0.5 * y * y * math.sin(4 * mean_long)
        - 1.25 * eccentricity * eccentricity * math.sin(2 * anomaly)
    )
    return declination, equation


def event_on(
    day: dt.date, latitude: float, longitude: float, altitude: float | None, rising: bool
) -> dt.datetime | None:
    """The time (UTC) on the solar day around ``day``'s noon at ``longitude`` (degrees east)
    when the sun's centre crosses ``altitude`` degrees, rising or setting; with
    ``altitude=None``, solar noon. None when the sun does not cross it that day (polar day
    or night)."""
    noon_guess = dt.datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    jd = _julian_day(noon_guess) - longitude / 360.0
    for _ in range(3):  # each pass evaluates the sun at the previous estimate
        declination, equation = _declination_and_equation_of_time(jd)
        noon = 720.0 - 4.0 * longitude - equation  # minutes after 00:00 UTC of ``day``
        if altitude is None:
            minutes = noon
        else:
            phi = math.radians(latitude)
            above = math.sin(math.radians(altitude)) - math.sin(phi) * math.sin(declination)
            cos_hour = above / (math.cos(phi) * math.cos(declination))
            if not -1.0 <= cos_hour <= 1.0:
                return None
            hour_angle = math.degrees(math.acos(cos_hour))
            minutes = noon - 4.0 * hour_angle if rising else noon + 4.0 * hour_angle
        jd = _julian_day(noon_guess) + (minutes - 720.0) / 1440.0
    return _from_julian_day(jd)


def next_event(
    after: dt.datetime,
    latitude: float,
    longitude: float,
    altitude: float | None,
    rising: bool,
    within_days: int = 370,
) -> dt.datetime | None:
    """The first such event strictly after ``after`` (aware), within ``within_days``."""
    start = after.astimezone(UTC).date() - dt.timedelta(days=1)
    for offset in range(within_days + 2):
        when = event_on(start + dt.timedelta(days=offset), latitude, longitude, altitude, rising)
        if when is not None and when > after:
            return when
    return None
