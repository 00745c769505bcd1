"""What the machine offers a worker, under Celery's path ``celery.utils.sysinfo``: the CPUs
this process may run on, capped by a cgroup CPU quota, and the load average."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_V2_MAX = Path("/sys/fs/cgroup/cpu.max")

#: ``worker_concurrency`` / ``--concurrency`` value meaning "size the pool to the CPUs".
AUTO_CONCURRENCY = "auto"


def is_auto_concurrency(value: object) -> bool:
    """Whether ``value`` is the ``auto`` concurrency (any letter case, spaces around)."""
    return isinstance(value, str) and value.strip().lower() == AUTO_CONCURRENCY


@dataclass(frozen=True)
class CpuBudget:
    """``count``: processes to size a CPU-bound pool with; ``available``: CPUs this process
    may run on; ``quota``: the cgroup's CPU quota in CPUs, None when there is none."""

    count: int
    available: int
    quota: float | None


def available_cpu_count() -> int:
    """CPUs this process may run on (its affinity mask, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cgroup_cpu_quota(path: Path = CGROUP_V2_MAX) -> float | None:
    """The cgroup v2 CPU quota (``cpu.max``) in CPUs; None when unlimited or unknown."""
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max" or float(period) <= 0:
        return None
    return float(quota) / float(period)


def cpu_budget(use_cgroup_quota: bool = True) -> CpuBudget:
    """How many processes a CPU-bound pool should have: the available CPUs, capped (with
    ``use_cgroup_quota``) by the rounded-up cgroup quota, and at least one."""
    available = available_cpu_count()
    quota = cgroup_cpu_quota() if use_cgroup_quota else None
    if quota is None:
        return CpuBudget(available, available, None)
    return CpuBudget(min(available, max(1, math.ceil(quota))), available, quota)


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages, rounded to hundredths."""
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)


__all__ = [
    "AUTO_CONCURRENCY",
    "CpuBudget",
    "available_cpu_count",
    "cgroup_cpu_quota",
    "cpu_budget",
    "is_auto_concurrency",
    "load_average",
]
