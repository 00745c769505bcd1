"""Shared memory between the worker's main process and prefork children that consume by
themselves: one slot per child, where the child writes the task it runs and the main process
reads it (``inspect active``, time limits, a child that died) without a syscall either side.

The memory is an anonymous ``MAP_SHARED`` mapping created before the first fork, so every
child inherits the same pages. Each slot is guarded by a sequence lock: the writer makes the
sequence odd, writes, makes it even; a reader that saw it odd or changed reads again.
"""

from __future__ import annotations

import collections
import mmap
import struct
import time
from dataclasses import dataclass

import msgpack

from ..signals import task_received
from .asyncboard import AsyncBoard
from .childreports import Listening, SuccessRings
from .forklock import fork_lock
from .sharedclock import SharedClock

SLOT_SIZE = 24576
# sequence, flags, started (monotonic clock, shared by every process), wall-clock start,
# then the lengths of the tag, the queue and the message
_HEADER = struct.Struct("<IIddHHI")
_SEQ = struct.Struct("<I")
_FLAGS = struct.Struct("<II")
BATCH_ROOM = 4096  # the tags of the messages a child reserved and has not started
_BATCH = struct.Struct("<HH")  # how many tags, how many bytes they take
# What a child finished and has not yet stored and acknowledged in Redis (that happens with
# its next round trip): results and acks the main process settles if the child dies first.
SETTLE_ROOM = 8192
# Times the child settled (cleared) the area, then how many entries, how many bytes they take
_SETTLE = struct.Struct("<III")
_FILLED = struct.Struct("<II")
_ENTRY = struct.Struct("<cHI")  # kind, then the lengths of its two parts
RECORD, ACK = b"R", b"A"
ROOM = SLOT_SIZE - _HEADER.size - BATCH_ROOM - SETTLE_ROOM

BUSY = 1
ACKS_LATE = 2
TRUNCATED = 4  # the message did not fit: only its tag and queue are here
_READ_TRIES = 1000
LOCK_WAIT = 0.05  # seconds the main process waits for a slot's lock (held for microseconds)
_MASK = 0xFFFFFFFF
_COUNT = struct.Struct("<Q")
ID_SIZE = 64  # room for the id of the task a child runs (a UUID takes 36)
TOTALS_SIZE = 4096
_TOTALS = struct.Struct("<II")  # sequence, length


@dataclass
class Running:
    """What a child's slot says it runs."""

    tag: str
    queue: str
    data: bytes  # the message as reserved; empty when TRUNCATED
    started: float  # time.monotonic() of the child when it started the task
    wall_started: float
    flags: int

    @property
    def acks_late(self) -> bool:
        return bool(self.flags & ACKS_LATE)

    @property
    def truncated(self) -> bool:
        return bool(self.flags & TRUNCATED)


class Slots:
    """``count`` slots in one shared mapping; positions are handed out by the main process."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.memory = mmap.mmap(-1, count * SLOT_SIZE)  # anonymous: MAP_SHARED by default
        self._free = list(range(count - 1, -1, -1))
        # A batch is taken from by two processes (the child starting its next message, the
        # main process giving the rest back): each slot's lock makes that one step. A
        # semaphore taken without contention costs no system call.
        self.locks = [fork_lock() for _ in range(count)]
        # Tasks each position's child has run (written by the child alone), and those of
        # the children gone before: the worker's ``processed`` count.
        self.counts = mmap.mmap(-1, count * _COUNT.size)
        self.retired = 0
        # Frames the main process wrote to each position's child: the child looks at its
        # pipe only when this moved, so checking for a stop or a revoke costs no syscall.
        self.mail = mmap.mmap(-1, count * _COUNT.size)
        # The id of the task each child runs: a retry that reaches a child while its last
        # attempt still runs in a sibling waits for that attempt to end.
        self.ids = mmap.mmap(-1, count * ID_SIZE)
        self.clock = SharedClock()  # the logical clock of every event the worker sends
        # How many tasks of each name each position's child started (msgpack, under a
        # sequence lock), and those of the children gone before: ``inspect stats``' total.
        self.totals = mmap.mmap(-1, count * TOTALS_SIZE)
        self.retired_totals: collections.Counter[str] = collections.Counter()
        self.successes = SuccessRings(count)  # worker.state.successful_requests, per child
        self.listening = Listening(task_received)  # receivers wait in the main process
        self.async_board = AsyncBoard(count)  # the async def tasks each child runs

    # -- main process ---------------------------------------------------------------------
    def allocate(self) -> int:
        """A free position, cleared; IndexError when every slot is taken."""
        position = self._free.pop()
        self.memory[position * SLOT_SIZE : (position + 1) * SLOT_SIZE] = bytes(SLOT_SIZE)
        return position

    def release(self, position: int) -> None:
        self._free.append(position)

    def notify(self, position: int) -> None:
        """A frame was written to the child at ``position`` (main process)."""
        offset = position * _COUNT.size
        _COUNT.pack_into(self.mail, offset, _COUNT.unpack_from(self.mail, offset)[0] + 1)

    def mail_count(self, position: int) -> int:
        """How many frames were written to this position's child so far (child)."""
        return int(_COUNT.unpack_from(self.mail, position * _COUNT.size)[0])

    def processed(self) -> int:
        """Tasks run by every child so far (the live ones' counts are read as they are)."""
        live = sum(_COUNT.unpack_from(self.counts, p * _COUNT.size)[0] for p in range(self.count))
        return self.retired + int(live)

    def retire_count(self, position: int) -> None:
        """A child left: keep its count, and zero its position's for the next child."""
        self.retired += int(_COUNT.unpack_from(self.counts, position * _COUNT.size)[0])
        _COUNT.pack_into(self.counts, position * _COUNT.size, 0)
        self.retired_totals.update(self.read_totals(position))
        _TOTALS.pack_into(self.totals, position * TOTALS_SIZE, 0, 0)
        # The task it ran is no one's now: a retry (or its requeued message) must not wait.
        self.ids[position * ID_SIZE : (position + 1) * ID_SIZE] = bytes(ID_SIZE)

    def take_batch(self, position: int) -> list[str]:
        """Take every message the child at ``position`` reserved and has not started (to
        give them back): from now on it starts none of them. [] when the lock is not had
        at once: a child killed while holding it (the main process never waits on one)."""
        lock = self.locks[position]
        if not lock.acquire(timeout=LOCK_WAIT):
            return []
        try:
            tags = self._batch(position)
            _BATCH.pack_into(self.memory, self._batch_offset(position), 0, 0)
        finally:
            lock.release()
        return tags

    def peek_batch(self, position: int) -> list[str]:
        """The tags of the messages the child at ``position`` has not started (a look: they
        stay its own). [] when the lock is not had at once."""
        lock = self.locks[position]
        if not lock.acquire(timeout=LOCK_WAIT):
            return []
        try:
            return self._batch(position)
        finally:
            lock.release()

    def usable(self, position: int) -> bool:
        """Whether the slot's lock is free (not left held by a child that was killed)."""
        lock = self.locks[position]
        if not lock.acquire(timeout=LOCK_WAIT):
            return False
        lock.release()
        return True

    def batch_size(self, position: int) -> int:
        """How many reserved messages the child has not started (a glance, no lock)."""
        return int(_BATCH.unpack_from(self.memory, self._batch_offset(position))[0])

    def _batch_offset(self, position: int) -> int:
        return (position + 1) * SLOT_SIZE - SETTLE_ROOM - BATCH_ROOM

    def _settle_offset(self, position: int) -> int:
        return (position + 1) * SLOT_SIZE - SETTLE_ROOM

    def unsettled(self, position: int) -> tuple[list[tuple[str, bytes]], list[str]]:
        """What the child at ``position`` finished and had not settled: the records to
        store, then the tags to acknowledge. Read by the main process once the child is
        gone, or while it runs a long task (then nothing, if it settled meanwhile)."""
        offset = self._settle_offset(position)
        generation, count, size = _SETTLE.unpack_from(self.memory, offset)
        raw = bytes(self.memory[offset + _SETTLE.size : offset + _SETTLE.size + size])
        if _SETTLE.unpack_from(self.memory, offset)[0] != generation:
            return [], []  # settled by the child while being read
        records: list[tuple[str, bytes]] = []
        acks: list[str] = []
        at = 0
        for _ in range(count):
            kind, first, second = _ENTRY.unpack_from(raw, at)
            at += _ENTRY.size
            name = raw[at : at + first].decode()
            data = raw[at + first : at + first + second]
            at += first + second
            if kind == RECORD:
                records.append((name, data))
            else:
                acks.append(name)
        return records, acks

    def _batch(self, position: int) -> list[str]:
        offset = self._batch_offset(position)
        count, size = _BATCH.unpack_from(self.memory, offset)
        if not count:
            return []
        start = offset + _BATCH.size
        return bytes(self.memory[start : start + size]).decode().split("\0")

    def read(self, position: int) -> Running | None:
        """The task the child at ``position`` runs now, or None when it is idle."""
        offset = position * SLOT_SIZE
        memory = self.memory
        for _ in range(_READ_TRIES):
            (before,) = _SEQ.unpack_from(memory, offset)
            if before & 1:
                time.sleep(0)  # a write is under way: it takes microseconds
                continue
            _, flags, started, wall, tag_len, queue_len, data_len = _HEADER.unpack_from(
                memory, offset
            )
            body = bytes(memory[offset + _HEADER.size : offset + _HEADER.size + tag_len
                                + queue_len + data_len])  # fmt: skip
            (after,) = _SEQ.unpack_from(memory, offset)
            if after != before:
                continue
            if not flags & BUSY:
                return None
            tag = body[:tag_len].decode()
            queue = body[tag_len : tag_len + queue_len].decode()
            return Running(tag, queue, body[tag_len + queue_len :], started, wall, flags)
        return None  # a child rewriting its slot for ever: it is between tasks anyway

    # -- child ----------------------------------------------------------------------------
    def offer(self, position: int, tags: list[str]) -> list[str]:
        """Publish the tags of a batch just reserved (all of them not started); returns
        those that did not fit, which the child must run (nobody else can give them back)."""
        raw = b""
        kept = 0
        for tag in tags:
            more = (b"\0" if kept else b"") + tag.encode()
            if len(raw) + len(more) > BATCH_ROOM - _BATCH.size:
                break
            raw += more
            kept += 1
        offset = self._batch_offset(position)
        with self.locks[position]:
            self.memory[offset + _BATCH.size : offset + _BATCH.size + len(raw)] = raw
            _BATCH.pack_into(self.memory, offset, kept, len(raw))
        return tags[kept:]

    def keep(self, position: int, records: list[tuple[str, bytes]], acks: list[str]) -> bool:
        """Note results and acks this child will settle with its next round trip, for the
        main process to settle if the child dies first. False when they do not fit: the
        child must settle them now. The count is written last, so a child killed half-way
        leaves the entries before intact."""
        parts = []
        for task_id, data in records:
            name = task_id.encode()
            parts.append(_ENTRY.pack(RECORD, len(name), len(data)) + name + data)
        for tag in acks:
            name = tag.encode()
            parts.append(_ENTRY.pack(ACK, len(name), 0) + name)
        raw = b"".join(parts)
        offset = self._settle_offset(position)
        _, count, size = _SETTLE.unpack_from(self.memory, offset)
        if _SETTLE.size + size + len(raw) > SETTLE_ROOM:
            return False
        start = offset + _SETTLE.size + size
        self.memory[start : start + len(raw)] = raw
        count += len(records) + len(acks)
        _FILLED.pack_into(self.memory, offset + 4, count, size + len(raw))
        return True

    def settled(self, position: int) -> None:
        """Everything noted with :meth:`keep` is in Redis now."""
        offset = self._settle_offset(position)
        generation = _SETTLE.unpack_from(self.memory, offset)[0]
        _SETTLE.pack_into(self.memory, offset, (generation + 1) & _MASK, 0, 0)

    def claim(self, position: int, tag: str) -> bool:
        """Take ``tag`` out of this child's batch to start it; False when the main process
        took it (and the rest of the batch) to give it back."""
        with self.locks[position]:
            tags = self._batch(position)
            if tag not in tags:
                return False
            tags.remove(tag)
            raw = "\0".join(tags).encode()
            offset = self._batch_offset(position)
            self.memory[offset + _BATCH.size : offset + _BATCH.size + len(raw)] = raw
            _BATCH.pack_into(self.memory, offset, len(tags), len(raw))
        return True

    def write(self, position: int, tag: str, queue: str, data: bytes, flags: int) -> None:
        """Record the task this child starts now."""
        offset = position * SLOT_SIZE
        memory = self.memory
        (seq,) = _SEQ.unpack_from(memory, offset)
        raw_tag, raw_queue = tag.encode(), queue.encode()
        if len(raw_tag) + len(raw_queue) + len(data) > ROOM:
            data, flags = b"", flags | TRUNCATED
        _SEQ.pack_into(memory, offset, (seq + 1) & _MASK)
        start = offset + _HEADER.size
        body = raw_tag + raw_queue + data
        memory[start : start + len(body)] = body
        _HEADER.pack_into(memory, offset, (seq + 1) & _MASK, flags | BUSY, time.monotonic(),
                          time.time(), len(raw_tag), len(raw_queue), len(data))  # fmt: skip
        _SEQ.pack_into(memory, offset, (seq + 2) & _MASK)

    def mark(self, position: int, task_id: str) -> None:
        """This child runs the task ``task_id`` (cleared with :meth:`clear`)."""
        raw = task_id.encode()[:ID_SIZE]
        self.ids[position * ID_SIZE : (position + 1) * ID_SIZE] = raw.ljust(ID_SIZE, b"\0")

    def running_elsewhere(self, position: int, task_id: str) -> bool:
        """Whether a child other than the one at ``position`` runs ``task_id`` now."""
        raw = task_id.encode()[:ID_SIZE]
        if not raw:
            return False
        raw = raw if len(raw) == ID_SIZE else raw + b"\0"
        at = self.ids.find(raw)
        while at >= 0:
            if at % ID_SIZE == 0 and at // ID_SIZE != position:
                return True
            at = self.ids.find(raw, at + 1)
        return False

    def task_totals(self) -> dict[str, int]:
        """Tasks started by every child so far, by name (main process)."""
        totals = collections.Counter(self.retired_totals)
        for position in range(self.count):
            totals.update(self.read_totals(position))
        return dict(totals)

    def read_totals(self, position: int) -> dict[str, int]:
        offset = position * TOTALS_SIZE
        for _ in range(_READ_TRIES):
            before, size = _TOTALS.unpack_from(self.totals, offset)
            raw = bytes(self.totals[offset + _TOTALS.size : offset + _TOTALS.size + size])
            if before & 1 or _TOTALS.unpack_from(self.totals, offset)[0] != before:
                time.sleep(0)
                continue
            return dict(msgpack.unpackb(raw)) if size else {}
        return {}

    def write_totals(self, position: int, totals: dict[str, int]) -> None:
        """This child's tasks by name so far (child; the largest counts if they do not
        all fit)."""
        raw = msgpack.packb(totals)
        if len(raw) > TOTALS_SIZE - _TOTALS.size:
            top = sorted(totals.items(), key=lambda item: -item[1])
            while top and len(raw) > TOTALS_SIZE - _TOTALS.size:
                top = top[: len(top) // 2]
                raw = msgpack.packb(dict(top))
        offset = position * TOTALS_SIZE
        (seq,) = _SEQ.unpack_from(self.totals, offset)
        _SEQ.pack_into(self.totals, offset, (seq + 1) & _MASK)
        self.totals[offset + _TOTALS.size : offset + _TOTALS.size + len(raw)] = raw
        _TOTALS.pack_into(self.totals, offset, (seq + 2) & _MASK, len(raw))

    def count_one(self, position: int) -> None:
        """This child ran one more task."""
        offset = position * _COUNT.size
        _COUNT.pack_into(self.counts, offset, _COUNT.unpack_from(self.counts, offset)[0] + 1)

    def clear(self, position: int) -> None:
        """This child runs nothing now."""
        offset = position * SLOT_SIZE
        (seq,) = _SEQ.unpack_from(self.memory, offset)
        _FLAGS.pack_into(self.memory, offset, (seq + 1) & _MASK, 0)
        _SEQ.pack_into(self.memory, offset, (seq + 2) & _MASK)
        self.ids[position * ID_SIZE : (position + 1) * ID_SIZE] = bytes(ID_SIZE)
