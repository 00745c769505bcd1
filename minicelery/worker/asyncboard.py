"""Shared memory where a consuming prefork child lists the ``async def`` tasks it runs, for
the main process to read (``inspect active``) without asking it: the slot of
:mod:`.slots` holds the one sync task a child runs, a child runs many async ones.

One area per slot position, under a sequence lock (odd while the child writes): the child
rewrites its list whenever it starts or settles async tasks; a list that does not fit keeps
the tasks that do (``inspect active`` then shows fewer)."""

from __future__ import annotations

import mmap
import struct
from collections.abc import Sequence

import msgpack

BOARD_SIZE = 65536  # bytes per position; pages never written take no memory
_HEAD = struct.Struct("<II")  # sequence, length of the msgpack list after it
_READ_TRIES = 100

#: One running task: tag, queue, message data, monotonic and wall start, slot flags.
Entry = tuple[str, str, bytes, float, float, int]


class AsyncBoard:
    """``count`` areas in one anonymous shared mapping made before the first fork."""

    def __init__(self, count: int) -> None:
        self.memory = mmap.mmap(-1, count * BOARD_SIZE)

    def write(self, position: int, entries: Sequence[Entry]) -> None:
        """The child's list of what it runs now (child)."""
        room = BOARD_SIZE - _HEAD.size
        raw = msgpack.packb(list(entries))
        while len(raw) > room and entries:  # keep what fits
            entries = entries[: len(entries) * room // len(raw)]
            raw = msgpack.packb(list(entries))
        offset = position * BOARD_SIZE
        sequence = _HEAD.unpack_from(self.memory, offset)[0]
        _HEAD.pack_into(self.memory, offset, (sequence + 1) | 1, 0)
        self.memory[offset + _HEAD.size : offset + _HEAD.size + len(raw)] = raw
        _HEAD.pack_into(self.memory, offset, ((sequence | 1) + 1) & 0xFFFFFFFF, len(raw))

    def clear(self, position: int) -> None:
        """This child runs nothing yet (a child of an app with async tasks, as it starts:
        the one before it at this position may have died with some; others never touch
        these pages)."""
        _HEAD.pack_into(self.memory, position * BOARD_SIZE, 0, 0)

    def read(self, position: int) -> list[Entry]:
        """What the child at ``position`` runs (main process); [] if it writes for ever."""
        offset = position * BOARD_SIZE
        for _ in range(_READ_TRIES):
            sequence, length = _HEAD.unpack_from(self.memory, offset)
            if sequence & 1:
                continue
            raw = bytes(self.memory[offset + _HEAD.size : offset + _HEAD.size + length])
            if _HEAD.unpack_from(self.memory, offset)[0] != sequence:
                continue
            if not length:
                return []
            return [tuple(entry) for entry in msgpack.unpackb(raw)]
        return []
