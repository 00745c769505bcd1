"""The app of the worker-lifecycle tests (child recycling, detached workers, ``multi``):
tasks that report which process ran them and how much memory it holds."""

from __future__ import annotations

import os
import sys

from minicelery import Celery

REDIS_URL = os.environ.get("MC_TEST_REDIS_URL", "memory://lifecycle")

app = Celery(
    "lifecycle",
    broker=REDIS_URL,
    backend=REDIS_URL,
    key_prefix=os.environ.get("MC_TEST_PREFIX", "minicelery"),
    worker_heartbeat_interval=float(os.environ.get("MC_TEST_HEARTBEAT", "0.5")),
    worker_lost_timeout=float(os.environ.get("MC_TEST_LOST_TIMEOUT", "3")),
)

# What ``hog`` keeps alive: a leak, the thing ``--max-memory-per-child`` is there to bound.
_hoarded: list[bytes] = []


@app.task
def pid() -> int:
    return os.getpid()


@app.task
def rss_kib() -> int:
    """The running process's resident memory now, in KiB (Linux)."""
    with open("/proc/self/statm") as handle:
        resident_pages = int(handle.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") // 1024


@app.task
def hog(megabytes: int) -> int:
    """Keep ``megabytes`` of written (so resident) memory for the process's lifetime;
    returns the PID that now holds it."""
    _hoarded.append(b"\x01" * (megabytes * 1024 * 1024))
    return os.getpid()


@app.task
def say(text: str) -> str:
    """Print ``text`` on the task's stdout (a detached worker's log file shows it)."""
    print(text)
    sys.stdout.flush()
    return text
