"""What prefork children that consume by themselves (``worker_children_consume``) tell the
worker's main process through shared memory, off the path of each task: the ids of the
tasks whose SUCCESS they stored (merged into ``worker.state.successful_requests`` there), and
the other way, whether the main process has ``task_received`` receivers the children must
have it call (Celery calls them in the worker's main process).

Both live in anonymous ``MAP_SHARED`` mappings created before the first fork."""

from __future__ import annotations

import mmap
import struct
import threading
from collections.abc import Sequence

from ..signals import Signal

RING = 128  # success ids kept per child until the main process merges them
ENTRY = 80  # bytes per id: its length, then the id (longer ids are not reported)
_COUNT = struct.Struct("<Q")  # ids a child has written to its ring so far
# One entry more than RING: the one the child may be writing (not counted yet) is never
# one of the RING a reader takes.
_ENTRIES = RING + 1
_RING_SIZE = _COUNT.size + _ENTRIES * ENTRY


class SuccessRings:
    """One ring per slot position: its child writes the ids of the tasks whose SUCCESS it
    stored, after the round trip that stored them (so an id is never seen before its
    result can be read); the main process reads what was added since its last look. A
    full ring overwrites its oldest ids, as ``successful_requests`` forgets its oldest."""

    def __init__(self, count: int) -> None:
        self.memory = mmap.mmap(-1, count * _RING_SIZE)  # anonymous: MAP_SHARED by default
        self._seen = [0] * count  # main process: how far each ring was read
        self._lock = threading.Lock()  # the worker's loop and a reader's thread both merge

    # -- child ----------------------------------------------------------------------------
    def push(self, position: int, task_ids: list[str]) -> None:
        """Add ``task_ids``; the count moves after each id is written, so a reader never
        sees a half-written id as new (one overwritten while it read it, it drops: see
        :meth:`_take`)."""
        base = position * _RING_SIZE
        memory = self.memory
        (written,) = _COUNT.unpack_from(memory, base)
        for task_id in task_ids:
            raw = task_id.encode()
            if len(raw) >= ENTRY:
                continue
            at = base + _COUNT.size + (written % _ENTRIES) * ENTRY
            memory[at : at + 1 + len(raw)] = bytes((len(raw),)) + raw
            written += 1
            _COUNT.pack_into(memory, base, written)

    # -- main process ---------------------------------------------------------------------
    def take(self, positions: Sequence[int]) -> list[str]:
        """The ids the children at ``positions`` added since the last look."""
        with self._lock:
            return [task_id for position in positions for task_id in self._take(position)]

    def reset(self, position: int) -> list[str]:
        """The last ids of a child that is gone, and its ring emptied for the next child."""
        with self._lock:
            found = self._take(position)
            _COUNT.pack_into(self.memory, position * _RING_SIZE, 0)
            self._seen[position] = 0
            return found

    def _take(self, position: int) -> list[str]:
        base = position * _RING_SIZE
        (written,) = _COUNT.unpack_from(self.memory, base)
        start = max(self._seen[position], written - RING)
        if start >= written:
            return []
        raw = bytes(self.memory[base + _COUNT.size : base + _RING_SIZE])
        # Ids the child overwrote while they were copied are dropped, as if read too late.
        start = max(start, _COUNT.unpack_from(self.memory, base)[0] - RING)
        self._seen[position] = written
        found = []
        for n in range(start, written):
            at = (n % _ENTRIES) * ENTRY
            found.append(raw[at + 1 : at + 1 + raw[at]].decode())
        return found


class Listening:
    """Whether the main process has ``task_received`` receivers (a shared byte the children
    read before each task). It is set the moment one connects, from whatever thread, so a
    receiver connected before a task is sent hears of it; the worker's loop clears it once
    the last receiver is gone."""

    def __init__(self, signal: Signal) -> None:
        self.signal = signal
        self.memory = mmap.mmap(-1, 1)
        self._lock = threading.Lock()

    def start(self) -> None:
        """Follow the signal's receivers from now on (main process)."""
        self.signal.watch(self._connected)
        self.refresh()

    def stop(self) -> None:
        self.signal.unwatch(self._connected)

    def _connected(self) -> None:
        with self._lock:  # ordered with refresh(): a connect is never overwritten by a clear
            self.memory[0] = 1

    def refresh(self) -> None:
        """Clear the byte when no receiver lives any more (the worker's loop calls this)."""
        with self._lock:
            self.memory[0] = int(self.signal.has_live_receivers())

    def on(self) -> bool:
        """Whether the children must have the main process call the receivers (child)."""
        return bool(self.memory[0])

