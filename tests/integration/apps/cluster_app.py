"""An app on a Redis Cluster for the cluster drills: six queues (spread over the shards by
their hash tags), a beat entry, and a task slow enough to be in flight when a master dies
or a slot moves."""

from __future__ import annotations

import os
import time

from minicelery import Celery

URL = os.environ.get("MC_TEST_REDIS_URL", "memory://cluster")
QUEUES = [f"q{n}" for n in range(6)]

app = Celery(
    "cluster_app",
    broker=URL,
    backend=URL,
    key_prefix=os.environ.get("MC_TEST_PREFIX", "minicelery"),
    worker_heartbeat_interval=0.5,
    worker_lost_timeout=3.0,
    beat_lease_timeout=2.0,
    task_default_queue="q0",
    beat_schedule={
        "tick": {"task": "tests.integration.apps.cluster_app.late_square", "schedule": 0.5,
                 "args": (7,), "options": {"queue": "q3"}},
    },
)  # fmt: skip


@app.task(acks_late=True)
def late_square(x: int, seconds: float = 0.0) -> int:
    """Square ``x`` after ``seconds``: a task in flight when the cluster changes."""
    time.sleep(seconds)
    return x * x
