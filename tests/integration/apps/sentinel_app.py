"""An app on a Sentinel-watched Redis: the URL (``sentinel://...;sentinel://...``) and the
master's name come from the environment the failover tests set."""

from __future__ import annotations

import os
import time

from minicelery import Celery

URL = os.environ.get("MC_TEST_REDIS_URL", "memory://sentinel")
MASTER = os.environ.get("MC_TEST_MASTER_NAME", "mymaster")
OPTIONS: dict[str, object] = {"master_name": MASTER}
if os.environ.get("MC_TEST_SENTINEL_PASSWORD"):
    OPTIONS["sentinel_kwargs"] = {"password": os.environ["MC_TEST_SENTINEL_PASSWORD"]}

app = Celery(
    "sentinel_app",
    broker=URL,
    backend=URL,
    key_prefix=os.environ.get("MC_TEST_PREFIX", "minicelery"),
    broker_transport_options=OPTIONS,
    result_backend_transport_options=OPTIONS,
    worker_heartbeat_interval=0.5,
    worker_lost_timeout=3.0,
    beat_lease_timeout=2.0,
    beat_schedule={
        "tick": {
            "task": "tests.integration.apps.sentinel_app.late_square",
            "schedule": 0.5,
            "args": (7,),
        }
    },
)


@app.task(acks_late=True)
def late_square(x: int, seconds: float = 0.0) -> int:
    """Square ``x`` after ``seconds``: a task that is in flight when the master dies."""
    time.sleep(seconds)
    return x * x
