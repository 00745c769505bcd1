"""What a worker remembers across tasks: the ids and the stamps of revoked tasks, the rate
limits it enforces (a token bucket per task name), and the gate that applies them before a job
starts.

As in Celery (``celery.worker.state.revoked`` and ``revoked_stamps``), the revoked sets are
process-wide: every worker of a process, and the process's own code, see the same ones."""

from __future__ import annotations

import heapq
import itertools
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .pool import Job

MAX_REVOKED = 50_000  # ids kept in memory; Redis keeps the full set for later workers

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*([smh]))?\s*$")
_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}


class Revoked:
    """Revoked task ids with the time each may be forgotten; expired ids drop out lazily.
    Each id is also stamped with the local monotonic clock when it was added (``as_dict``,
    as Celery's set reports it): ids merged from elsewhere are stamped here, never with a
    stamp from another host's clock."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._stamps: dict[str, float] = {}
        self._expiry: list[tuple[float, str]] = []
        self.on_add: Callable[[list[str]], None] | None = None  # told of every id added

    def add(self, task_ids: Iterable[str], until: float) -> None:
        stamp = time.monotonic()
        task_ids = list(task_ids)
        for task_id in task_ids:
            self._until[task_id] = until
            self._stamps.setdefault(task_id, stamp)
            heapq.heappush(self._expiry, (until, task_id))
        self._prune()
        if self.on_add is not None:
            self.on_add(task_ids)

    def discard(self, task_id: str) -> None:
        """Forget ``task_id`` (its heap entry drops out when it comes up)."""
        self._until.pop(task_id, None)
        self._stamps.pop(task_id, None)

    def clear(self) -> None:
        self._until.clear()
        self._stamps.clear()
        self._expiry.clear()

    def as_dict(self) -> dict[str, float]:
        """Each live id with the monotonic time it was added here."""
        live = set(self.ids())
        return {task_id: stamp for task_id, stamp in self._stamps.items() if task_id in live}

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
                self._stamps.pop(task_id, None)


#: The revoked task ids of this process (Celery's ``worker_state.revoked``).
revoked = Revoked()


class RecentIds:
    """The last ``maxlen`` ids added, in order (Celery's ``LimitedSet`` as the worker uses
    it): membership and adding, the oldest forgotten first."""

    def __init__(self, maxlen: int) -> None:
        self.maxlen = maxlen
        self._ids: dict[str, None] = {}
        # Where ids come from besides ``add``, merged when the set is read: a worker whose
        # children run tasks reads theirs from shared memory (see ``worker.childreports``).
        self.feeds: list[Callable[[], list[str]]] = []
        self._lock = threading.Lock()  # the worker's loop and a reader's thread both add

    def add(self, task_id: str) -> None:
        with self._lock:
            self._add(task_id)

    def _add(self, task_id: str) -> None:
        self._ids.pop(task_id, None)
        self._ids[task_id] = None
        while len(self._ids) > self.maxlen:
            del self._ids[next(iter(self._ids))]

    def merge(self) -> None:
        """Add what the feeds have gathered since the last look."""
        with self._lock:
            for feed in list(self.feeds):
                for task_id in feed():
                    self._add(task_id)

    def __contains__(self, task_id: object) -> bool:
        if self.feeds:
            self.merge()
        return task_id in self._ids

    def __len__(self) -> int:
        if self.feeds:
            self.merge()
        return len(self._ids)


#: Ids of the tasks this process's workers finished SUCCESS, added once the result (if
#: any) is stored (Celery's ``worker_state.successful_requests``).
successful_requests = RecentIds(1000)

class RevokedStamps(dict[str, list[Any]]):
    """A dict whose every change (a revoke, or code that clears it, as Celery's test suite
    does between cases) bumps ``version`` and calls ``on_change``: a worker whose children
    consume forwards the whole dict to them then."""

    version = 0
    on_change: Callable[[], None] | None = None

    def _changed(self) -> None:
        self.version += 1
        if self.on_change is not None:
            self.on_change()

    def __setitem__(self, key: str, value: list[Any]) -> None:
        super().__setitem__(key, value)
        self._changed()

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._changed()

    def clear(self) -> None:
        super().clear()
        self._changed()


#: Revoked canvas stamps of this process: stamp name -> the values revoked
#: (``revoke_by_stamped_headers``; Celery's ``worker_state.revoked_stamps``).
revoked_stamps = RevokedStamps()


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]


def revoke_stamps(headers: Mapping[str, Any]) -> None:
    """Add ``{stamp name: value or values}`` to the revoked stamps."""
    for name, values in headers.items():
        revoked_stamps[name] = [*_as_list(revoked_stamps.get(name) or []), *_as_list(values)]


def matching_stamps(stamps: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, set[Any]]:
    """The stamp values of a message (``stamps``) found among ``wanted``, by stamp name; a
    stamp holding a list matches when any of its values does."""
    found: dict[str, set[Any]] = {}
    for name, value in stamps.items():
        if name not in wanted or value is None:
            continue
        expected = _as_list(wanted[name])
        hits = {item for item in _as_list(value) if _hashable(item) and item in expected}
        if hits:
            found[name] = hits
    return found


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


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
        self.revoked = revoked
        self.limiter = RateLimiter(disable_rate_limits)
        self._waiting: list[tuple[float, int, Job]] = []
        self._order = itertools.count()

    def admit(self, job: Job, rate: Any) -> str:
        message = job.message
        if message.id in self.revoked:
            return self.REVOKED
        stamped = revoked_stamps and message.stamped_headers
        if stamped and matching_stamps(message.stamps, revoked_stamps):
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
