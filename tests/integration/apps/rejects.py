"""The app the reject tests run workers with (settings from the environment, as in
``basic``): tasks that reject their message, with and without requeueing it, and record
each delivery they see in a Redis list named by the test."""

from __future__ import annotations

import json
import os

from minicelery import Celery, Task
from minicelery.exceptions import Reject
from tests.integration.apps.common import redis_client

REDIS_URL = os.environ.get("MC_TEST_REDIS_URL", "memory://rejects")

app = Celery(
    "rejects",
    broker=REDIS_URL,
    backend=REDIS_URL,
    key_prefix=os.environ.get("MC_TEST_PREFIX", "minicelery"),
    worker_heartbeat_interval=float(os.environ.get("MC_TEST_HEARTBEAT", "0.5")),
    worker_lost_timeout=float(os.environ.get("MC_TEST_LOST_TIMEOUT", "30")),
)


def _record(key: str, task: Task[..., object]) -> None:
    info = task.request.delivery_info or {}
    entry = {"redelivered": bool(info.get("redelivered")), "retries": task.request.retries}
    redis_client(str(app.conf.broker_url)).rpush(key, json.dumps(entry))


@app.task(bind=True, acks_late=True)
def reject_then_succeed(self: Task[..., object], key: str) -> str:
    """Rejects its first delivery (requeue); succeeds on the redelivered one."""
    _record(key, self)
    if not self.request.delivery_info.get("redelivered"):
        raise Reject("not yet", requeue=True)
    return "second-pass"


@app.task(bind=True)
def reject_for_good(self: Task[..., object], key: str) -> None:
    _record(key, self)
    raise Reject("rejected", requeue=False)
