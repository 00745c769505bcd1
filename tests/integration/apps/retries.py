"""The app the retry and time-limit tests run workers with; settings come from the environment
the test fixtures set (a per-test key prefix on the session's redis-server), as in ``basic``.
``MC_TEST_TASK_TIME_LIMIT`` and ``MC_TEST_TASK_SOFT_TIME_LIMIT`` set the app-wide
``task_time_limit`` / ``task_soft_time_limit`` when present.

Every task appends ``<request.retries>@<start time>`` (or a marker) to a Redis list named by
the test, through its own Redis client, so a test can count, order and time executions from
outside the worker.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import Any

import redis

from minicelery import Celery
from minicelery.exceptions import SoftTimeLimitExceeded
from tests.integration.apps.common import redis_client

REDIS_URL = os.environ.get("MC_TEST_REDIS_URL", "memory://retries")
COUNTDOWN = 0.2  # seconds between the attempts of the retrying tasks
BACKOFF = 0.2  # base of the exponential backoff: attempts 0.2, 0.4, 0.8 s apart


def _optional_seconds(name: str) -> float | None:
    value = os.environ.get(name)
    return float(value) if value else None


app = Celery(
    "retries",
    broker=REDIS_URL,
    backend=REDIS_URL,
    key_prefix=os.environ.get("MC_TEST_PREFIX", "minicelery"),
    worker_heartbeat_interval=float(os.environ.get("MC_TEST_HEARTBEAT", "0.5")),
    worker_lost_timeout=float(os.environ.get("MC_TEST_LOST_TIMEOUT", "3")),
    result_extended=True,  # result records carry ``retries``
    task_time_limit=_optional_seconds("MC_TEST_TASK_TIME_LIMIT"),
    task_soft_time_limit=_optional_seconds("MC_TEST_TASK_SOFT_TIME_LIMIT"),
)


def _redis() -> redis.Redis:
    return redis_client(str(app.conf.broker_url))


def record(key: str, value: str) -> int:
    """Append ``value`` to the Redis list ``key``; returns the list's new length."""
    return int(_redis().rpush(key, value))


def record_attempt(key: str, retries: int) -> int:
    """Append ``<retries>@<now>`` to ``key``; returns how many attempts were recorded."""
    return record(key, f"{retries}@{time.time():.6f}")


# --------------------------------------------------------------------------- retries


@app.task(bind=True, max_retries=2)
def retry_always(self: Any, key: str) -> None:
    """Asks to be retried every time: ends with ``MaxRetriesExceededError``."""
    record_attempt(key, self.request.retries)
    self.retry(countdown=COUNTDOWN)


@app.task(bind=True, max_retries=2)
def retry_with_exc(self: Any, key: str) -> None:
    """Retries with ``exc=``: once out of retries, that exception is the task's error."""
    retries = self.request.retries
    record_attempt(key, retries)
    self.retry(exc=ValueError(f"attempt {retries} failed"), countdown=COUNTDOWN)


@app.task(bind=True, max_retries=3)
def flaky(self: Any, key: str, failures: int, countdown: float = COUNTDOWN) -> str:
    """Retries ``failures`` times, then succeeds."""
    retries = self.request.retries
    record_attempt(key, retries)
    if retries < failures:
        self.retry(countdown=countdown)
    return f"succeeded after {retries} retries"


@app.task(bind=True, max_retries=3)
def retry_at_eta(self: Any, key: str, delay: float) -> int:
    """The first attempt retries at an absolute ``eta`` ``delay`` seconds ahead, which it
    records as ``eta@<timestamp>``; the second returns its ``retries``."""
    retries = self.request.retries
    record_attempt(key, retries)
    if retries == 0:
        eta = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=delay)
        record(key, f"eta@{eta.timestamp():.6f}")
        self.retry(eta=eta)
    return int(retries)


@app.task(bind=True, max_retries=3)
def retry_slowly(self: Any, key: str) -> None:
    """Retries one second later, every time (for expiry tests)."""
    record_attempt(key, self.request.retries)
    self.retry(countdown=1.0)


@app.task(bind=True, max_retries=3, expires=1.5)
def retry_slowly_expiring(self: Any, key: str) -> None:
    """As ``retry_slowly``, with the task's own ``expires`` (1.5 s after the first send)."""
    record_attempt(key, self.request.retries)
    self.retry(countdown=1.0)


@app.task(bind=True, max_retries=3)
def retry_then_sleep(self: Any, key: str, seconds: float) -> str:
    """The first attempt retries at once-ish; the second sleeps ``seconds``."""
    retries = self.request.retries
    record_attempt(key, retries)
    if retries == 0:
        self.retry(countdown=0.1)
    time.sleep(seconds)
    return "slept"


ERRORS: dict[str, type[Exception]] = {"ConnectionError": ConnectionError, "ValueError": ValueError}


@app.task(
    bind=True,
    autoretry_for=(ConnectionError,),
    retry_kwargs={"max_retries": 3},
    retry_backoff=BACKOFF,
    retry_jitter=False,
)
def autoretry_backoff(self: Any, key: str, error: str = "ConnectionError") -> None:
    """Always raises ``error`` (a key of ``ERRORS``): ``ConnectionError`` is retried
    automatically with exponential backoff, ``ValueError`` is not."""
    retries = self.request.retries
    record_attempt(key, retries)
    raise ERRORS[error](f"attempt {retries} failed")


# --------------------------------------------------------------------------- time limits


@app.task(soft_time_limit=0.5)
def soft_limited(key: str) -> str:
    """Cleans up when its soft time limit interrupts it."""
    record(key, f"started@{time.time():.6f}")
    try:
        time.sleep(5)
    except SoftTimeLimitExceeded:
        record(key, f"soft@{time.time():.6f}")
        return "cleaned up"
    return "not interrupted"


@app.task(time_limit=0.5)
def hard_limited(key: str) -> str:
    """Runs far past its hard time limit; records its PID first."""
    record(key, str(os.getpid()))
    time.sleep(5)
    return "not killed"


@app.task
def cleanup_on_soft_limit(key: str, seconds: float = 5.0) -> str:
    """No limit of its own: returns ``cleaned up`` if a soft limit interrupts it."""
    record(key, f"started@{time.time():.6f}")
    try:
        time.sleep(seconds)
    except SoftTimeLimitExceeded:
        record(key, f"soft@{time.time():.6f}")
        return "cleaned up"
    return "not interrupted"


@app.task
def ignore_soft_limit(key: str, seconds: float = 5.0) -> str:
    """Records the soft limit, then keeps running until the hard limit kills it."""
    record(key, f"started@{time.time():.6f}")
    try:
        time.sleep(seconds)
    except SoftTimeLimitExceeded:
        record(key, f"soft@{time.time():.6f}")
        time.sleep(seconds)
    return "not killed"


@app.task
def sleeper(key: str, seconds: float) -> str:
    """No limit of its own: records its PID, then sleeps."""
    record(key, str(os.getpid()))
    time.sleep(seconds)
    return "slept"


@app.task
def pid() -> int:
    return os.getpid()
