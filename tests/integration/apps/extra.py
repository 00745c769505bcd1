"""A second app on the same Redis and key prefix as ``basic`` (settings from the same
environment variables): it has the tasks ``basic`` lacks, so a message ``basic``'s worker
dead-lettered as an unknown task can be replayed to a worker that knows it."""

from __future__ import annotations

import os
import time
from typing import Any

from minicelery import Celery

REDIS_URL = os.environ.get("MC_TEST_REDIS_URL", "memory://extra")

app = Celery(
    "extra",
    broker=REDIS_URL,
    backend=REDIS_URL,
    key_prefix=os.environ.get("MC_TEST_PREFIX", "minicelery"),
    worker_heartbeat_interval=float(os.environ.get("MC_TEST_HEARTBEAT", "0.5")),
    worker_lost_timeout=float(os.environ.get("MC_TEST_LOST_TIMEOUT", "3")),
)

NOW_EXISTS = "no.such.task"
SLOW_PID = "tests.integration.apps.extra.slow_pid"


@app.task(name=NOW_EXISTS)
def now_exists(*args: Any, **kwargs: Any) -> str:
    """The task ``basic`` does not have: returns a marker (and its arguments)."""
    return f"ran with {list(args)!r} {kwargs!r}"


@app.task(name=SLOW_PID)
def slow_pid(seconds: float) -> int:
    """Occupy a pool slot for ``seconds``, then report which process ran it."""
    time.sleep(seconds)
    return os.getpid()
