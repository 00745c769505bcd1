"""What a worker remembers across tasks: the ids of revoked tasks, the rate limits it
enforces (a token bucket per task name), and the gate that applies both before a job starts."""

from __future__ import annotations

import heapq
import itertools
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .pool import Job

MAX_REVOKED = 50_000  # ids kept in memory; Redis keeps the full set for later workers

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*([smh]))?\s*$")
_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}


class Revoked:
    """Revoked task ids with the time each may be forgotten; expired ids drop out lazily."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._expiry: list[tuple[float, str]] = []
        self.on_add: Callable[[list[str]], None] | None = None  # told of every id added

    def add(self, task_ids: Iterable[str], until: float) -> None:
        task_ids = list(task_ids)
        for task_id in task_ids:
            self._until[task_id] = until
            heapq.heappush(self._expiry, (until, task_id))
        self._prune()
        if self.on_add is not None:
            self.on_add(task_ids)

    def update(self, ids: Mapping[str, float]) -> None:
        for task_id, until in ids.items():
            self.add((task_id,), until)

    def __contains__(self, task_id: object) -> bool:
        until = self._until.get(task_id) if isinstance(task_id, str) else None
        return until is not None and until > time.time()

    def ids(self) -> list[str]:
        now = time.time()
        return [task_id for task_id, until in self._until.items() if until > now]

    def __len__(self) -> int:
        return len(self._until)

    def _prune(self) -> None:
        now = time.time()
        while self._expiry and (self._expiry[0][0] <= now or len(self._until) > MAX_REVOKED):
            until, task_id = heapq.heappop(self._expiry)
            if self._until.get(task_id) == until:
                del self._until[task_id]


def parse_rate(rate: str | float | int | None) -> float | None:
    """Celery's rate strings (``'10/s'``, ``'100/m'``, ``'5/h'``, a bare number per second)
    as tasks per second; None or 0 means no limit."""
    if rate is None or rate == "":
        return None
    if isinstance(rate, (int, float)):
        return float(rate) or None
    match = _RATE.match(rate)
    if match is None:
        raise ValueError(f"invalid rate limit {rate!r}: expected e.g. '10/s', '100/m' or '5/h'")
    per_second = float(match.group(1)) / _PER[match.group(2) or "s"]
    return per_second or None


class TokenBucket:
    """``rate`` tokens a second, holding at most ``capacity`` (a burst). Never blocks: callers
    ask how long until the next token and come back then."""

    def __init__(self, rate: float, capacity: float = 1.0) -> None:
        self.rate = rate
        self.capacity = max(capacity, 1.0)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self) -> bool:
        self._refill()
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait_time(self) -> float:
        self._refill()
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate


class RateLimiter:
    """Per-task token buckets, made on first use from the task's current ``rate_limit`` (or
    the worker's default) and forgotten when a remote command changes it."""

    def __init__(self, disabled: bool = False) -> None:
        self.disabled = disabled
        self._buckets: dict[str, TokenBucket | None] = {}
        self.on_forget: Callable[[str], None] | None = None  # told of each rate change

    def forget(self, task_name: str) -> None:
        self._buckets.pop(task_name, None)
        if self.on_forget is not None:
            self.on_forget(task_name)

    def _bucket(self, task_name: str, rate: str | float | None) -> TokenBucket | None:
        if task_name not in self._buckets:
            per_second = parse_rate(rate)
            self._buckets[task_name] = TokenBucket(per_second) if per_second else None
        return self._buckets[task_name]

    def delay(self, task_name: str, rate: str | float | None) -> float:
        """0 when a task may start now (its token is taken), else the seconds to wait."""
        if self.disabled:
            return 0.0
        bucket = self._bucket(task_name, rate)
        if bucket is None or bucket.take():
            return 0.0
        return max(bucket.wait_time(), 0.001)


class Gate:
    """Decides, just before a job would start, whether it runs now, is discarded (revoked) or
    waits for its rate limit. Waiting jobs stay in the worker (their messages safe in its hold
    in Redis) and never block jobs of other tasks."""

    RUN, REVOKED, LATER = "run", "revoked", "later"

    def __init__(self, disable_rate_limits: bool = False) -> None:
        self.revoked = Revoked()
        self.limiter = RateLimiter(disable_rate_limits)
        self._waiting: list[tuple[float, int, Job]] = []
        self._order = itertools.count()

    def admit(self, job: Job, rate: Any) -> str:
        if job.message.id in self.revoked:
            return self.REVOKED
        wait = self.limiter.delay(job.message.task, rate)
        if wait > 0:
            heapq.heappush(self._waiting, (time.monotonic() + wait, next(self._order), job))
            return self.LATER
        return self.RUN

    def due(self) -> list[Job]:
        """Waiting jobs whose time has come, in the order they became due."""
        now = time.monotonic()
        found: list[Job] = []
        while self._waiting and self._waiting[0][0] <= now:
            found.append(heapq.heappop(self._waiting)[2])
        return found

    def next_in(self) -> float | None:
        """Seconds until the next waiting job is due, if any waits."""
        if not self._waiting:
            return None
        return max(0.0, self._waiting[0][0] - time.monotonic())

    def __len__(self) -> int:
        """How many jobs wait for their rate limit."""
        return len(self._waiting)

    def waiting(self) -> list[Job]:
        return [entry[2] for entry in sorted(self._waiting)]

    def take_all(self) -> list[Job]:
        jobs = self.waiting()
        self._waiting.clear()
        return jobs
