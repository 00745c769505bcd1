"""The long-running task behind the progress page. It reports how far it got after every step
with ``update_state(state='PROGRESS', meta=...)``, so the web app can show a progress bar.

With no broker configured both the worker and the web app use the embedded Redis; set
MINICELERY_BROKER_URL and MINICELERY_RESULT_BACKEND (e.g. ``redis://localhost:6379/0``) in
both shells to use a Redis server.
"""

from __future__ import annotations

import time
from typing import Any

from minicelery import Celery

app = Celery("tasks")

# What the task says it is doing, step after step (a real task would report real work).
STAGES = (
    "Warming up the flux capacitor",
    "Counting the sheep",
    "Sorting the socks",
    "Polishing the pixels",
    "Untangling the cables",
    "Feeding the hamsters",
    "Aligning the bits",
    "Double-checking the sums",
)


@app.task(bind=True)
def long_task(self: Any, total: int = 20, step_seconds: float = 0.5) -> dict[str, Any]:
    """Work through ``total`` steps of ``step_seconds`` each, publishing the progress as a
    custom ``PROGRESS`` state after every step; the return value is the last report."""
    for done in range(1, total + 1):
        time.sleep(step_seconds)  # one step of "work"
        stage = STAGES[(done - 1) % len(STAGES)]
        self.update_state(
            state="PROGRESS",
            meta={"current": done, "total": total, "status": f"{stage}..."},
        )
    return {"current": total, "total": total, "status": "Task completed!", "result": 42}
