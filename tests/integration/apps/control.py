"""The app the revocation, rate-limit and remote-control tests run workers with; settings come
from the environment the test fixtures set, as in ``basic``.

Tasks append ``<label>@<start time>`` to a Redis list named by the test, through their own
Redis client, so a test can count, order and time executions from outside the worker.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from minicelery import Celery, signals
from tests.integration.apps.common import redis_client

REDIS_URL = os.environ.get("MC_TEST_REDIS_URL", "memory://control")
LIMIT = "5/s"

app = Celery(
    "control",
    broker=REDIS_URL,
    backend=REDIS_URL,
    key_prefix=os.environ.get("MC_TEST_PREFIX", "minicelery"),
    worker_heartbeat_interval=0.5,
    worker_lost_timeout=3.0,
    worker_autoscale_keepalive=float(os.environ.get("MC_TEST_AUTOSCALE_KEEPALIVE", "30")),
    worker_pool_restarts=os.environ.get("MC_TEST_POOL_RESTARTS") == "1",
)


def _mark(key: str, label: str) -> None:
    redis_client(REDIS_URL).rpush(key, f"{label}@{time.time()}")


@app.task
def record(key: str, label: str) -> str:
    _mark(key, label)
    return label


@app.task
def sleeper(key: str, label: str, seconds: float) -> str:
    """Marks its start, then sleeps: something to revoke or terminate while it runs."""
    _mark(key, label)
    time.sleep(seconds)
    return label


@app.task(acks_late=True)
def late_sleeper(key: str, label: str, seconds: float) -> str:
    _mark(key, label)
    time.sleep(seconds)
    return label


@app.task(rate_limit=LIMIT)
def limited(key: str, label: str) -> str:
    _mark(key, label)
    return label


@app.task
def free(key: str, label: str) -> str:
    _mark(key, label)
    return label


@app.task
def pid() -> int:
    """The process running it: tells the pool's children apart."""
    return os.getpid()


@app.task
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task(acks_late=True, acks_on_failure_or_timeout=False)
def late_failing(key: str) -> None:
    _mark(key, "failing")
    raise ValueError("boom")


@app.task(acks_late=True, acks_on_failure_or_timeout=False, time_limit=1.0)
def late_timing_out(key: str) -> str:
    """Runs past its hard limit the first time, quickly the second."""
    _mark(key, "run")
    if redis_client(REDIS_URL).llen(key) == 1:
        time.sleep(30)
    return "done"


@app.task
def gather(results: list[str]) -> list[str]:
    """A chord body: what the header tasks returned."""
    return results


def revoked_signals_key() -> str:
    return f"{app.conf.key_prefix}:revoked-signals"


@signals.task_revoked.connect
def _on_revoked(
    sender: Any = None,
    request: Any = None,
    terminated: bool | None = None,
    signum: int | None = None,
    expired: bool | None = None,
    **kwargs: Any,
) -> None:
    """Records what ``task_revoked`` receivers are told, for the tests to check."""
    entry = {"id": request.id, "task": getattr(sender, "name", None), "terminated": terminated,
             "signum": signum, "expired": expired}  # fmt: skip
    redis_client(REDIS_URL).rpush(revoked_signals_key(), json.dumps(entry))
