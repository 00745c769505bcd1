"""What the ``worker`` command line (or a test) decides about one worker, and Celery's
node-name expansion."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass

POOLS = ("prefork", "threads", "solo")


@dataclass
class WorkerOptions:
    """What the ``worker`` command line (or a test) decides about one worker."""

    hostname: str = "celery@%h"
    concurrency: int | None = None
    pool: str = "prefork"
    queues: Sequence[str] = ()
    exclude_queues: Sequence[str] = ()
    prefetch_multiplier: int | None = None
    max_tasks_per_child: int | None = None
    max_memory_per_child: int | None = None  # KiB
    time_limit: float | None = None
    soft_time_limit: float | None = None
    autoscale: tuple[int, int] | None = None  # (max, min) processes


def expand_hostname(name: str) -> str:
    """Celery's ``%h`` (host), ``%n`` (host name) and ``%d`` (domain) in worker names."""
    host = socket.gethostname()
    short, _, domain = host.partition(".")
    name = name.replace("%h", host).replace("%n", short).replace("%d", domain)
    return name if "@" in name else f"{name}@{host}"
