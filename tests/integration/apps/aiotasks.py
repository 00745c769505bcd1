"""``async def`` tasks for the integration tests of the worker's event loop; settings come
from the environment the test fixtures set."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from minicelery import Celery
from minicelery.exceptions import SoftTimeLimitExceeded
from tests.integration.apps.common import redis_client

REDIS_URL = os.environ.get("MC_TEST_REDIS_URL", "memory://aiotasks")

app = Celery(
    "aiotasks",
    broker=REDIS_URL,
    backend=REDIS_URL,
    key_prefix=os.environ.get("MC_TEST_PREFIX", "minicelery"),
    worker_heartbeat_interval=0.5,
    worker_lost_timeout=3.0,
)


def _record(key: str, entry: str) -> None:
    redis_client(REDIS_URL).rpush(key, entry)


@app.task
async def nap(seconds: float, value: Any) -> Any:
    await asyncio.sleep(seconds)
    return value


@app.task
def block(seconds: float) -> str:
    time.sleep(seconds)  # holds the child's own thread: the async tasks must not notice
    return "blocked"


@app.task
async def explode(message: str) -> None:
    await asyncio.sleep(0.01)
    raise ValueError(message)


@app.task(bind=True)
async def whoami(self: Any, seconds: float) -> dict[str, Any]:
    before = self.request.id
    await asyncio.sleep(seconds)  # others run meanwhile: the request stays this task's
    return {"id": self.request.id, "before": before, "retries": self.request.retries,
            "hostname": self.request.hostname}


@app.task(bind=True, max_retries=2, default_retry_delay=0.1)
async def retry_twice(self: Any, key: str) -> int:
    _record(key, str(self.request.retries))
    await asyncio.sleep(0.01)
    if self.request.retries < 2:
        raise self.retry(countdown=0.1)
    return int(self.request.retries)


@app.task(autoretry_for=(KeyError,), max_retries=1, retry_kwargs={"countdown": 0.1})
async def autoretried(key: str) -> None:
    _record(key, "run")
    await asyncio.sleep(0.01)
    raise KeyError("always")


@app.task(bind=True)
async def progress(self: Any, steps: int) -> int:
    for step in range(steps):
        self.update_state(state="PROGRESS", meta={"step": step})
        await asyncio.sleep(0.2)
    return steps


@app.task(soft_time_limit=0.3)
async def soft_limited(key: str) -> str:
    try:
        await asyncio.sleep(5)
    except SoftTimeLimitExceeded:
        _record(key, "cleaned up")
        return "cleaned up"
    return "slept"


@app.task(time_limit=0.3)
async def hard_limited() -> str:
    await asyncio.sleep(5)
    return "slept"


@app.task
async def gauge(key: str, seconds: float) -> int:
    """Count the gauges running at once; the highest count is the last of ``key``'s list."""
    client = redis_client(REDIS_URL)
    now = int(client.incr(key + ":now"))
    client.rpush(key, now)
    await asyncio.sleep(seconds)
    client.decr(key + ":now")
    return now


@app.task
async def long_nap(key: str, seconds: float) -> str:
    _record(key, "started")
    await asyncio.sleep(seconds)
    return "woke"


@app.task
async def add(x: int, y: int) -> int:
    await asyncio.sleep(0.05)
    return x + y


@app.task
async def total(numbers: list[int]) -> int:
    await asyncio.sleep(0.05)
    return sum(numbers)


@app.task(track_started=True, rate_limit="20/s")
async def limited(value: int) -> int:
    await asyncio.sleep(0.3)
    return value


@app.task
async def clock() -> float:
    """When it started (wall clock), to measure how soon a sent task runs."""
    return time.time()
