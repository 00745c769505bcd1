"""One logical clock for every process of a worker whose prefork children send their own
events (``worker_children_consume``): a counter in shared memory, created before the first
fork, so the worker's events (worker-online, heartbeats, each child's task events) carry
one increasing ``clock`` as Celery's single-process dispatcher would give them."""

from __future__ import annotations

import mmap
import struct

from ..events.event import LamportClock
from .forklock import fork_lock

_VALUE = struct.Struct("<Q")
LOCK_WAIT = 0.05  # seconds; the lock is held for a microsecond


class SharedClock(LamportClock):
    """A Lamport clock (``forward``, ``adjust``) whose value every forked process shares."""

    def __init__(self) -> None:  # no value of its own (LamportClock's): the shared one
        self.memory = mmap.mmap(-1, _VALUE.size)  # anonymous: MAP_SHARED by default
        self._shared_lock = fork_lock()

    @property
    def value(self) -> int:
        return int(_VALUE.unpack_from(self.memory, 0)[0])

    @value.setter
    def value(self, value: int) -> None:
        _VALUE.pack_into(self.memory, 0, value)

    def forward(self) -> int:
        return self._move(0)

    def adjust(self, other: int) -> int:
        return self._move(other)

    def _move(self, other: int) -> int:
        # A child killed while holding the lock must not stop every event of the worker:
        # after a moment the clock moves without it (a value may then repeat, no more).
        locked = self._shared_lock.acquire(timeout=LOCK_WAIT)
        try:
            value = max(self.value, other) + 1
            self.value = value
            return value
        finally:
            if locked:
                self._shared_lock.release()
