"""The dashboard's task history in Redis: every key the dashboard owns is named here, and
nothing else in the dashboard talks to Redis by key.

Its keys, defined in the key schema (one hash tag, ``{p:dashboard}``, as they change
together in one MULTI):

- ``{p:dashboard}:tasks``: a hash, task id -> the task's record (msgpack);
- ``{p:dashboard}:seen``: a sorted set, task id -> when the task was first seen (epoch
  seconds): the order of the task list, and what the count and age bounds trim by;
- ``{p:dashboard}:children:<id>``: the ids of the tasks a task sent (kept as long as the
  history keeps tasks);
- ``{p:dashboard}:cursor``: the id of the last entry of the event stream written here, where
  a restarted dashboard resumes.

Records are merged from events by whichever dashboard reads them; two dashboards write the
same merge of the same events, so they agree on what they store.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import msgpack

from ..exceptions import OperationalError

CHUNK = 500  # records fetched per round trip when scanning the history


class History:
    """Task records in Redis, bounded by count (``max_tasks``) and age (``max_age`` seconds).

    ``client`` is the broker's Redis client and ``keys`` its key schema, so the history lives
    beside the app's queues and events.
    """

    def __init__(
        self, client: Any, keys: Any, max_tasks: int = 100_000, max_age: float = 86_400.0
    ) -> None:
        self.client = client
        self.tasks_key = keys.dashboard_tasks
        self.seen_key = keys.dashboard_seen
        self.cursor_key = keys.dashboard_cursor
        # The broker's ETA set and dead-letter store, only counted (for the queues page).
        self.scheduled_key = keys.scheduled
        self.dead_key = keys.dead_letters
        self._children = keys.dashboard_children_head
        self.max_tasks = max_tasks
        self.max_age = max_age

    @classmethod
    def for_broker(
        cls, broker: Any, max_tasks: int = 100_000, max_age: float = 86_400.0
    ) -> History:
        """The history beside ``broker``'s queues (a Redis broker: real, embedded or fake)."""
        client, keys = getattr(broker, "client", None), getattr(broker, "keys", None)
        if client is None or keys is None:
            raise OperationalError(f"{type(broker).__name__} cannot keep a dashboard history")
        return cls(client, keys, max_tasks, max_age)

    # -- writing --------------------------------------------------------------------------
    def load(self, task_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored records of ``task_ids`` (those that have one)."""
        if not task_ids:
            return {}
        raw = self.client.hmget(self.tasks_key, list(task_ids))
        pairs = zip(task_ids, raw, strict=True)
        return {tid: decode(data) for tid, data in pairs if data is not None}

    def save(
        self,
        records: Mapping[str, dict[str, Any]],
        first_seen: Mapping[str, float],
        children: Mapping[str, Iterable[str]],
        cursor: bytes | None,
    ) -> None:
        """Write changed records, their first-seen times (kept if already there), new
        parent -> child links and the stream position, in one transaction: a restart resumes
        after the last entry whose effects are stored, never before or past it."""
        pipe = self.client.pipeline(transaction=True)
        if records:
            pipe.hset(self.tasks_key, mapping={k: encode(v) for k, v in records.items()})
        if first_seen:
            pipe.zadd(self.seen_key, dict(first_seen), nx=True)
        for parent, kids in children.items():
            key = self._children + parent
            pipe.sadd(key, *kids)
            pipe.expire(key, int(self.max_age) + 60)
        if cursor is not None:
            pipe.set(self.cursor_key, cursor)
        pipe.execute()

    def cursor(self) -> bytes | None:
        """Where the last dashboard stopped writing, if any did."""
        value = self.client.get(self.cursor_key)
        return bytes(value) if value is not None else None

    def trim(self, now: float | None = None) -> int:
        """Forget tasks first seen more than ``max_age`` ago, then the oldest beyond
        ``max_tasks``; how many were removed."""
        cutoff = (now or time.time()) - self.max_age
        old = list(self.client.zrangebyscore(self.seen_key, "-inf", cutoff))
        excess = int(self.client.zcard(self.seen_key)) - len(old) - self.max_tasks
        if excess > 0:
            old += list(self.client.zrange(self.seen_key, len(old), len(old) + excess - 1))
        for start in range(0, len(old), CHUNK):
            chunk = old[start : start + CHUNK]
            pipe = self.client.pipeline(transaction=True)
            pipe.hdel(self.tasks_key, *chunk)
            pipe.zrem(self.seen_key, *chunk)
            pipe.delete(*(self._children + _text(tid) for tid in chunk))
            pipe.execute()
        return len(old)

    def clear(self) -> None:
        self.client.delete(self.tasks_key, self.seen_key, self.cursor_key)

    # -- reading --------------------------------------------------------------------------
    def get(self, task_id: str) -> dict[str, Any] | None:
        data = self.client.hget(self.tasks_key, task_id)
        return decode(data) if data is not None else None

    def children(self, task_id: str) -> list[str]:
        return sorted(_text(child) for child in self.client.smembers(self._children + task_id))

    def count(self) -> int:
        return int(self.client.zcard(self.seen_key))

    def newest(self, chunk: int = CHUNK) -> Iterator[dict[str, Any]]:
        """Every stored record, most recently first seen first, fetched ``chunk`` at a time
        (a caller that stops early reads no further)."""
        start = 0
        while True:
            ids = [
                _text(tid) for tid in self.client.zrevrange(self.seen_key, start, start + chunk - 1)
            ]
            if not ids:
                return
            for data in self.client.hmget(self.tasks_key, ids):
                if data is not None:
                    yield decode(data)
            start += chunk

    def scheduled_count(self) -> int:
        """Messages waiting for their ETA/countdown, on every queue."""
        return int(self.client.zcard(self.scheduled_key))

    def dead_count(self) -> int:
        """Messages in the dead-letter store."""
        return int(self.client.hlen(self.dead_key))


def encode(record: Mapping[str, Any]) -> bytes:
    data: bytes = msgpack.packb(record, default=repr)
    return data


def decode(data: bytes) -> dict[str, Any]:
    record: dict[str, Any] = msgpack.unpackb(data, raw=False, strict_map_key=False)
    return record


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
