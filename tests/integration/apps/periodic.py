"""The app the beat tests run workers and beats with; settings come from the environment the
fixtures set (the test's Redis and key prefix), as in ``basic``.

``MC_TEST_BEAT_INTERVAL`` is the interval of the ``tick`` entry (seconds), ``MC_TEST_BEAT_LEASE``
the beat lease; ``MC_TEST_BEAT_HOOK`` adds a second entry from ``on_after_configure`` (routed
to the ``periodic`` queue), ``MC_TEST_BEAT_BAD`` a broken one. Each run appends
``<time> <task id>`` to the Redis list ``<prefix>:runs:<label>`` and returns its position, so
tests count, time and look up the runs from outside.
"""

from __future__ import annotations

import os
import time
from typing import Any

from minicelery import Celery
from tests.integration.apps.common import redis_client

REDIS_URL = os.environ.get("MC_TEST_REDIS_URL", "memory://periodic")
PREFIX = os.environ.get("MC_TEST_PREFIX", "minicelery")
INTERVAL = float(os.environ.get("MC_TEST_BEAT_INTERVAL", "0.5"))

schedule: dict[str, Any] = {
    "tick": {
        "task": "tests.integration.apps.periodic.record",
        "schedule": INTERVAL,
        "args": ("tick",),
    }
}
if os.environ.get("MC_TEST_BEAT_BAD"):
    schedule["broken"] = {"task": "tests.integration.apps.periodic.record"}

app = Celery(
    "periodic",
    broker=REDIS_URL,
    backend=REDIS_URL,
    key_prefix=PREFIX,
    worker_heartbeat_interval=0.5,
    worker_lost_timeout=3,
    beat_lease_timeout=float(os.environ.get("MC_TEST_BEAT_LEASE", "2")),
    beat_schedule=schedule,
)


def runs_key(label: str) -> str:
    return f"{PREFIX}:runs:{label}"


@app.task(bind=True)
def record(self: Any, label: str) -> int:
    """Append ``<time> <task id>`` to this label's runs; return how many there are."""
    entry = f"{time.time():.6f} {self.request.id}"
    return int(redis_client(REDIS_URL).rpush(runs_key(label), entry))


@app.on_after_configure.connect
def setup_periodic_tasks(sender: Celery, **kwargs: Any) -> None:
    if os.environ.get("MC_TEST_BEAT_HOOK"):
        sender.add_periodic_task(
            INTERVAL, record.s("hooked"), name="hooked every interval", queue="periodic"
        )
