"""An app for start-up tests: the broker URL and the connection-retry settings come from the
environment (``MC_TEST_RETRY_ON_STARTUP`` 0/1, ``MC_TEST_MAX_RETRIES`` a number or ``none``)."""

from __future__ import annotations

import os

from minicelery import Celery

REDIS_URL = os.environ.get("MC_TEST_REDIS_URL", "memory://startup")
MAX_RETRIES = os.environ.get("MC_TEST_MAX_RETRIES", "100")

app = Celery(
    "startup",
    broker=REDIS_URL,
    backend=REDIS_URL,
    key_prefix=os.environ.get("MC_TEST_PREFIX", "minicelery"),
    broker_connection_retry_on_startup=os.environ.get("MC_TEST_RETRY_ON_STARTUP", "1") == "1",
    broker_connection_max_retries=None if MAX_RETRIES == "none" else int(MAX_RETRIES),
    broker_transport_options=(
        {"wait_for_replicas": 1} if os.environ.get("MC_TEST_WAIT_FOR_REPLICAS") else {}
    ),
)


@app.task
def add(x: int, y: int) -> int:
    return x + y
