"""A Celery-style project layout (``proj/celery.py`` holding ``app``), for the ``-A``
resolution tests; settings come from the environment the test fixtures set, as in ``basic``."""

from __future__ import annotations

import os

from minicelery import Celery

REDIS_URL = os.environ.get("MC_TEST_REDIS_URL", "memory://cliproj")

app = Celery(
    "cliproj",
    broker=REDIS_URL,
    backend=REDIS_URL,
    key_prefix=os.environ.get("MC_TEST_PREFIX", "minicelery"),
    worker_heartbeat_interval=float(os.environ.get("MC_TEST_HEARTBEAT", "0.5")),
    worker_lost_timeout=float(os.environ.get("MC_TEST_LOST_TIMEOUT", "3")),
)


@app.task(name="cliproj.hello")
def hello(who: str) -> str:
    return f"hello {who}"
