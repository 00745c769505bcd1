"""Time limits: a soft limit raises ``SoftTimeLimitExceeded`` inside the task so it can stop
cleanly; a hard limit kills the worker process running the task (the worker starts a new
one) and fails the task with ``TimeLimitExceeded``.

With no broker configured both the worker and the client use the embedded Redis; set
MINICELERY_BROKER_URL and MINICELERY_RESULT_BACKEND (e.g. ``redis://localhost:6379/0``) in
both shells to use a Redis server.
"""

from __future__ import annotations

import os
import time
from typing import Any

from minicelery import Celery
from minicelery.exceptions import SoftTimeLimitExceeded

app = Celery("tasks")


@app.task(soft_time_limit=1, time_limit=3)
def crunch(items: int, seconds_per_item: float = 0.1) -> dict[str, Any]:
    """Process ``items`` one by one. Interrupted by the soft limit, it stops where it is and
    reports how far it got, instead of losing all its work."""
    done = 0
    try:
        for _ in range(items):
            time.sleep(seconds_per_item)  # one item of "work"
            done += 1
    except SoftTimeLimitExceeded:
        return {"done": done, "of": items, "complete": False}
    return {"done": done, "of": items, "complete": True}


@app.task(time_limit=1)
def runaway(seconds: float) -> str:
    """Never checks the time: past its hard limit the worker kills the process running it."""
    time.sleep(seconds)
    return "finished in time"


@app.task
def whoami() -> int:
    """The PID of the worker process that ran this (to see a killed process replaced)."""
    return os.getpid()
