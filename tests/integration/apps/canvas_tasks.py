"""The app the canvas integration tests run workers with: the tasks of Celery's "Canvas:
Designing Work-flows" guide (add, mul, xsum, tsum) and a few that record or fail.
Settings come from the environment the test fixtures set, as in ``basic``.

Recording tasks append to a Redis list named by the test through their own Redis client, so
a test can count executions from outside the worker.
"""

from __future__ import annotations

import os
from typing import Any

from minicelery import Celery, group
from tests.integration.apps.common import redis_client

REDIS_URL = os.environ.get("MC_TEST_REDIS_URL", "memory://canvas")

app = Celery(
    "canvas",
    broker=REDIS_URL,
    backend=REDIS_URL,
    key_prefix=os.environ.get("MC_TEST_PREFIX", "minicelery"),
    worker_heartbeat_interval=float(os.environ.get("MC_TEST_HEARTBEAT", "0.5")),
    worker_lost_timeout=float(os.environ.get("MC_TEST_LOST_TIMEOUT", "3")),
)


def record(key: str, value: Any) -> int:
    return int(redis_client(REDIS_URL).rpush(key, str(value)))


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def mul(x: int, y: int) -> int:
    return x * y


@app.task
def xsum(numbers: list[int]) -> int:
    return sum(numbers)


@app.task
def tsum(numbers: list[int]) -> int:
    return sum(numbers)


@app.task
def noop() -> None:
    return None


@app.task
def identity(value: Any) -> Any:
    return value


@app.task
def fail(*args: Any) -> None:
    raise ValueError("something something")


@app.task
def record_value(value: Any, key: str) -> Any:
    """A link callback: records the value it was called with."""
    record(key, value)
    return value


@app.task
def collect_into(values: list[Any], key: str) -> int:
    """A chord body that records each call (so a test can count them) and its input."""
    record(key, len(values))
    record(f"{key}:values", ",".join(str(v) for v in values))
    return len(values)


@app.task
def on_error(request: Any, exc: BaseException, traceback: str | None, key: str) -> None:
    """A new-style errback: records the failed task's id, the error and a traceback flag."""
    record(key, f"{request.id}|{exc!r}|{traceback is not None}")


@app.task
def old_style_errback(task_id: str, key: str) -> None:
    record(key, task_id)


@app.task(bind=True, max_retries=3)
def retry_once(self: Any, value: int, key: str) -> int:
    """Asks to be retried on its first run (recorded in ``key``), then returns ``value``."""
    if record(key, f"{value}@{self.request.retries}") and self.request.retries == 0:
        self.retry(countdown=0.1)
    return value


@app.task
def spawn_group(how_many: int) -> Any:
    """The guide's ``collect()`` example: returns the result of a group it sent."""
    return group(spawn_pow.s(i) for i in range(how_many))()


@app.task
def spawn_pow(i: int) -> Any:
    return pow2.delay(i)


@app.task
def pow2(i: int) -> int:
    return i**2
