"""Completion probe shared by the Celery and minicelery benchmark apps.

The drain workload uses a task that calls :func:`record_done`.  It increments a
Redis counter through a client owned by the current process (re-created after a
fork), and the task that brings the counter to the target pushes its wall-clock
finish time onto a list.  The benchmark driver waits on that list with BLPOP, so
detecting completion puts no polling load on Redis or on the worker, and it is
byte-for-byte the same code for both systems.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis

URL_ENV = "BENCH_REDIS_URL"
DEFAULT_URL = "redis://127.0.0.1:6379/0"

COUNT_KEY = "bench:count"
FIRST_KEY = "bench:first"
DONE_KEY = "bench:done"

_client: redis.Redis | None = None
_client_pid = 0


def redis_url() -> str:
    """Return the Redis URL the benchmark apps should use."""
    return os.environ.get(URL_ENV, DEFAULT_URL)


def _get_client() -> redis.Redis:
    global _client, _client_pid
    pid = os.getpid()
    if _client is None or _client_pid != pid:
        # Imported here, not at module level: the apps import this module, and a worker
        # whose tasks never touch Redis should not carry a Redis client in every process.
        import redis

        _client = redis.Redis.from_url(redis_url())
        _client_pid = pid
    return _client


def record_done(target: int) -> None:
    """Count one finished task; the one that reaches ``target`` reports the time."""
    client = _get_client()
    done = int(client.incr(COUNT_KEY))
    if done == 1:
        client.set(FIRST_KEY, repr(time.time()))
    if done == target:
        client.rpush(DONE_KEY, repr(time.time()))
