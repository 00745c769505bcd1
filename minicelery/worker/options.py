"""What the ``worker`` command line (or a test) decides about one worker, and Celery's
node-name expansion."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..utils.sysinfo import cpu_budget, is_auto_concurrency

logger = logging.getLogger("minicelery.worker")

POOLS = ("prefork", "threads", "solo")


@dataclass
class WorkerOptions:
    """What the ``worker`` command line (or a test) decides about one worker."""

    hostname: str = "celery@%h"
    concurrency: int | str | None = None  # a number, or "auto"
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


def note_task_modules(conf: Any, tasks: Mapping[str, Any]) -> None:
    """Add the modules of the registered tasks to ``conf.include``, as Celery's worker does
    when it starts: the setting then names every module the worker's tasks come from (what
    ``inspect conf`` shows, and what ``pool_restart`` imports again)."""
    modules = {type(task).__module__ for task in tasks.values()}
    own = {m for m in modules if m == "__main__" or m.split(".")[0] in ("minicelery", "celery")}
    known = tuple(conf.include)
    conf.include = known + tuple(sorted(modules - own - set(known)))


def resolve_concurrency(given: int | str | None, setting: int | str | None, pool: str) -> int:
    """The pool size: ``--concurrency``, else ``worker_concurrency``, else the CPU count.
    ``auto`` sizes it to the CPUs this process may use; for the prefork pool (the CPU-bound
    one) capped by the cgroup's CPU quota, as Celery does."""
    value = given or setting
    if not is_auto_concurrency(value):
        return int(value) if value else os.cpu_count() or 1
    budget = cpu_budget(use_cgroup_quota=pool == "prefork")
    if pool != "prefork":
        logger.info("worker_concurrency='auto' only sizes the prefork pool; "
                    "using available cpus=%d for pool=%s.", budget.count, pool)  # fmt: skip
        return budget.count
    quota = "no cgroup cpu quota found" if budget.quota is None else (
        f"cgroup cpu quota={budget.quota:.2f}"
    )  # fmt: skip
    logger.info("worker_concurrency='auto' resolved to %d (pool=prefork, %s, available "
                "cpus=%d).", budget.count, quota, budget.available)  # fmt: skip
    return budget.count
