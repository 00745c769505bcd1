"""The app the monitoring-event tests run workers with: clients send task-sent events, and
heartbeats come fast; settings come from the environment the test fixtures set."""

from __future__ import annotations

import os
import time
from typing import Any

from minicelery import Celery
from minicelery.exceptions import Retry

REDIS_URL = os.environ.get("MC_TEST_REDIS_URL", "memory://events")

app = Celery(
    "events_app",
    broker=REDIS_URL,
    backend=REDIS_URL,
    key_prefix=os.environ.get("MC_TEST_PREFIX", "minicelery"),
    worker_heartbeat_interval=0.5,
    worker_lost_timeout=3.0,
    task_send_sent_event=True,
)


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def fail(message: str = "boom") -> None:
    raise ValueError(message)


@app.task(bind=True, max_retries=2)
def flaky(self: Any) -> str:
    """Fails once and is retried (after a short countdown), then succeeds."""
    if self.request.retries == 0:
        raise self.retry(exc=KeyError("not yet"), countdown=0.3)
    return "ok"


@app.task(bind=True, max_retries=1)
def lingering_retry(self: Any, linger: float) -> str:
    """Retries at once, but its first attempt ends only ``linger`` seconds after the retry
    was published, so the retry reaches the worker while that attempt still runs."""
    if self.request.retries == 0:
        try:
            raise self.retry(countdown=0)
        except Retry:
            time.sleep(linger)
            raise
    return "ok"


@app.task
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task
def die() -> None:
    os._exit(17)


@app.task(bind=True)
def progress(self: Any, steps: int) -> int:
    for step in range(steps):
        self.send_event("task-progress", current=step + 1, total=steps)
    return steps
