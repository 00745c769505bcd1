"""The app the broker-property tests run workers with; settings come from the environment the
test fixtures set (a per-test key prefix on the session's redis-server), as in ``basic``.

Tasks record their executions into Redis lists named by the test, so a test can count and
order executions from outside the worker.
"""

from __future__ import annotations

import os
import time

import redis

from minicelery import Celery
from tests.integration.apps.common import redis_client

REDIS_URL = os.environ.get("MC_TEST_REDIS_URL", "memory://props")

app = Celery(
    "props",
    broker=REDIS_URL,
    backend=REDIS_URL,
    key_prefix=os.environ.get("MC_TEST_PREFIX", "minicelery"),
    worker_heartbeat_interval=float(os.environ.get("MC_TEST_HEARTBEAT", "0.5")),
    worker_lost_timeout=float(os.environ.get("MC_TEST_LOST_TIMEOUT", "3")),
)


def _redis() -> redis.Redis:
    return redis_client(str(app.conf.broker_url))


def _rpush(key: str, value: str) -> int:
    return int(_redis().rpush(key, value))


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def record(key: str, value: str) -> int:
    """Append ``value`` to the Redis list ``key``: lets tests count and order executions."""
    return _rpush(key, value)


@app.task
def record_time(key: str, value: str) -> float:
    """Append ``value@<start time>`` to ``key``; returns the start time (epoch seconds)."""
    started = time.time()
    _rpush(key, f"{value}@{started:.6f}")
    return started


@app.task
def record_prefix(key: str, value: str) -> str:
    """Append ``<this worker's key prefix>/value`` to ``key``: shows which app ran it."""
    entry = f"{app.conf.key_prefix}/{value}"
    _rpush(key, entry)
    return entry


@app.task
def started_at() -> float:
    """The wall-clock time at which the task body started."""
    return time.time()


@app.task
def record_sleep(key: str, value: str, seconds: float) -> str:
    """Record the start, then run for ``seconds`` (acknowledged early)."""
    _rpush(key, value)
    time.sleep(seconds)
    return value


@app.task(acks_late=True)
def record_sleep_late(key: str, value: str, seconds: float) -> str:
    """Record the start, then run for ``seconds`` (acknowledged late)."""
    _rpush(key, value)
    time.sleep(seconds)
    return value


@app.task(acks_late=True)
def hang_once_late(key: str, value: str, seconds: float) -> int:
    """Record the start; the first execution then runs for ``seconds``, a redelivered one
    returns at once. Returns how many times it has started."""
    started = _rpush(key, value)
    if started == 1:
        time.sleep(seconds)
    return started
