"""The tasks behind the FastAPI example: a quick one to await in a request, and a long one
that reports its progress with ``update_state(state='PROGRESS', meta=...)``.

Both the worker and the web app read the broker from MINICELERY_BROKER_URL and
MINICELERY_RESULT_BACKEND (e.g. ``redis://localhost:6379/0``) when set.
"""

from __future__ import annotations

import time
from typing import Any

from minicelery import Celery

app = Celery("tasks")


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task(bind=True)
def long_task(self: Any, total: int = 10, step_seconds: float = 0.5) -> dict[str, Any]:
    """Work through ``total`` steps, publishing a ``PROGRESS`` state after each."""
    for done in range(1, total + 1):
        time.sleep(step_seconds)  # one step of "work"
        self.update_state(state="PROGRESS", meta={"current": done, "total": total})
    return {"current": total, "total": total, "result": 42}
