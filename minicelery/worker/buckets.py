"""Rate limits shared by a worker's consuming children: one token bucket per task name in
shared memory (created before the first fork), so a task's ``rate_limit`` holds for the
worker as a whole, as in the classic pool, whichever child runs it.

The main process sets the rates (at start, and when the ``rate_limit`` command changes
one); children take tokens. Taking one is a few microseconds under a lock shared by the
worker's processes; a worker with no rate limit at all pays one read of a counter.
"""

from __future__ import annotations

import mmap
import struct
import time
from typing import Any

from ..broker import Delivery
from .forklock import fork_lock

ENTRIES = 256
_NAME = 200
_ENTRY = struct.Struct(f"<H{_NAME}sddd")  # name length, name, tokens a second, tokens, stamp
_COUNT = struct.Struct("<I")


class SharedBuckets:
    """Token buckets (a burst of one, as the classic pool's) by task name."""

    def __init__(self, entries: int = ENTRIES) -> None:
        self.entries = entries
        self.memory = mmap.mmap(-1, _COUNT.size + entries * _ENTRY.size)
        self.lock = fork_lock()
        # This process's view of where each name is; entries are never removed (a rate set
        # to none is 0), so a name missing at a given count is missing until it changes.
        self._where: dict[str, int] = {}
        self._missing: dict[str, int] = {}

    def _count(self) -> int:
        return int(_COUNT.unpack_from(self.memory, 0)[0])

    def _offset(self, index: int) -> int:
        return _COUNT.size + index * _ENTRY.size

    def _find(self, name: str) -> int | None:
        """Where ``name``'s bucket is (call under the lock, or from the only writer)."""
        if name in self._where:
            return self._where[name]
        count = self._count()
        if self._missing.get(name) == count:
            return None
        raw = name.encode()[:_NAME]
        for index in range(count):
            size, stored, _, _, _ = _ENTRY.unpack_from(self.memory, self._offset(index))
            if stored[:size] == raw:
                self._where[name] = index
                return index
        self._missing[name] = count
        return None

    def set_rate(self, name: str, per_second: float | None) -> None:
        """Limit ``name`` to ``per_second`` tasks a second (None or 0: no limit)."""
        with self.lock:
            index = self._find(name)
            if index is None:
                if not per_second:
                    return
                index = self._count()
                if index >= self.entries:
                    raise ValueError(f"more than {self.entries} rate-limited task names")
                _COUNT.pack_into(self.memory, 0, index + 1)
                self._where[name] = index
            raw = name.encode()[:_NAME]
            rate = float(per_second or 0.0)
            _ENTRY.pack_into(self.memory, self._offset(index), len(raw), raw, rate, 1.0,
                             time.monotonic())  # fmt: skip

    def delay(self, name: str) -> float:
        """0 when a task of ``name`` may start now (its token is taken), else the seconds
        until the next token."""
        if not self._count():
            return 0.0
        with self.lock:
            index = self._find(name)
            if index is None:
                return 0.0
            offset = self._offset(index)
            size, raw, rate, tokens, stamp = _ENTRY.unpack_from(self.memory, offset)
            if not rate:
                return 0.0
            now = time.monotonic()
            tokens = min(1.0, tokens + (now - stamp) * rate)
            wait = 0.0 if tokens >= 1.0 else max((1.0 - tokens) / rate, 0.001)
            if not wait:
                tokens -= 1.0
            _ENTRY.pack_into(self.memory, offset, size, raw, rate, tokens, now)
            return wait


class Deferred:
    """Messages a child holds (in its hold, admitted) until their task's next token."""

    def __init__(self) -> None:
        self.items: list[tuple[float, Delivery, Any]] = []

    def __len__(self) -> int:
        return len(self.items)

    def add(self, wait: float, delivery: Delivery, verdict: Any) -> None:
        self.items.append((time.monotonic() + wait, delivery, verdict))

    def take_due(self) -> list[tuple[Delivery, Any]]:
        now = time.monotonic()
        due = [(delivery, verdict) for when, delivery, verdict in self.items if when <= now]
        self.items = [item for item in self.items if item[0] > now]
        return due

    def next_in(self, longest: float) -> float:
        """Seconds until the first is due, at most ``longest``."""
        if not self.items:
            return longest
        return max(0.0, min(longest, min(when for when, _, _ in self.items) - time.monotonic()))

    def take_all(self) -> list[str]:
        tags = [delivery.tag for _, delivery, _ in self.items]
        self.items = []
        return tags

    def tags(self) -> set[str]:
        return {delivery.tag for _, delivery, _ in self.items}
