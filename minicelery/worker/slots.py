"""Shared memory between the worker's main process and prefork children that consume by
themselves: one slot per child, where the child writes the task it runs and the main process
reads it (``inspect active``, time limits, a child that died) without a syscall either side.

The memory is an anonymous ``MAP_SHARED`` mapping created before the first fork, so every
child inherits the same pages. Each slot is guarded by a sequence lock: the writer makes the
sequence odd, writes, makes it even; a reader that saw it odd or changed reads again.
"""

from __future__ import annotations

import mmap
import struct
import time
from dataclasses import dataclass

SLOT_SIZE = 16384
# sequence, flags, started (monotonic clock, shared by every process), wall-clock start,
# then the lengths of the tag, the queue and the message
_HEADER = struct.Struct("<IIddHHI")
_SEQ = struct.Struct("<I")
_FLAGS = struct.Struct("<II")
ROOM = SLOT_SIZE - _HEADER.size

BUSY = 1
ACKS_LATE = 2
TRUNCATED = 4  # the message did not fit: only its tag and queue are here
_READ_TRIES = 1000
_MASK = 0xFFFFFFFF


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

    # -- main process ---------------------------------------------------------------------
    def allocate(self) -> int:
        """A free position, cleared; IndexError when every slot is taken."""
        position = self._free.pop()
        self.memory[position * SLOT_SIZE : (position + 1) * SLOT_SIZE] = bytes(_HEADER.size) + (
            b"\0" * ROOM
        )
        return position

    def release(self, position: int) -> None:
        self._free.append(position)

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

    def clear(self, position: int) -> None:
        """This child runs nothing now."""
        offset = position * SLOT_SIZE
        (seq,) = _SEQ.unpack_from(self.memory, offset)
        _FLAGS.pack_into(self.memory, offset, (seq + 1) & _MASK, 0)
        _SEQ.pack_into(self.memory, offset, (seq + 2) & _MASK)
