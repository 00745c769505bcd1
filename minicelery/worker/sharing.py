"""Shared memory a process started by exec can map: what prefork children that consume by
themselves share with the main process (slots, token buckets, the event clock, their locks),
moved from anonymous mappings to memory files, so a fork server started by exec (rather
than forked from the main process) can hand the same pages to the children it forks.

The objects are described by pickling them: every ``mmap`` met on the way becomes a memory
file (its bytes copied), every lock of the worker's processes a POSIX semaphore in one more
memory file, and both are written as references. Loading the description maps the files
again: in the main process (which keeps the loaded copies and drops the anonymous ones)
and in each fork server, so all of them share one set of pages. Linux only (memfd).
"""

from __future__ import annotations

import io
import mmap
import os
import pickle
import threading
from typing import Any

from .. import signals
from .forklock import SEMAPHORE, semlock_type

SEM_ROOM = 64  # bytes per semaphore: glibc's sem_t takes 32
_THREAD_LOCK = type(threading.Lock())
# The memory of the semaphores made here: a semaphore is a bare address, so its mapping must
# outlive every semaphore object, in every process (the mappings are never unmapped).
_semaphore_memory: list[mmap.mmap] = []


def _address(memory: mmap.mmap, offset: int) -> int:
    import ctypes  # only where semaphores are placed in shared memory

    return ctypes.addressof(ctypes.c_char.from_buffer(memory, offset))


def _signal_name(obj: object) -> str | None:
    for name, value in vars(signals).items():
        if value is obj:
            return name
    return None


class Shared:
    """The memory files behind a description: ``fds`` to hand to another process, in order."""

    def __init__(self, fds: list[int], sizes: list[int], sems: int) -> None:
        self.fds = fds
        self.sizes = sizes
        self.sems = sems
        self._maps: list[mmap.mmap] = []
        self._sem_memory: mmap.mmap | None = None

    def region(self, index: int) -> mmap.mmap:
        while len(self._maps) <= index:
            n = len(self._maps)
            self._maps.append(mmap.mmap(self.fds[n], self.sizes[n]))
        return self._maps[index]

    def semaphore(self, index: int) -> Any:
        if self._sem_memory is None:
            self._sem_memory = mmap.mmap(self.fds[-1], max(1, self.sems) * SEM_ROOM)
            _semaphore_memory.append(self._sem_memory)
        semlock = semlock_type()
        assert semlock is not None
        return semlock._rebuild(_address(self._sem_memory, index * SEM_ROOM),
                                SEMAPHORE, 1, None)  # fmt: skip

    def close_fds(self) -> None:
        """Close the files (their mappings stay): a fork server's children need none."""
        for fd in self.fds:
            os.close(fd)
        self.fds = []


class _Describer(pickle.Pickler):
    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.regions: dict[int, tuple[int, mmap.mmap]] = {}
        self.sems: dict[int, int] = {}
        self._seen: list[Any] = []  # keeps ids unique while describing
        self.semlock = semlock_type()

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, mmap.mmap):
            if id(obj) not in self.regions:
                self.regions[id(obj)] = (len(self.regions), obj)
                self._seen.append(obj)
            return ("mmap", self.regions[id(obj)][0])
        if self.semlock is not None and type(obj) is self.semlock:
            if id(obj) not in self.sems:
                self.sems[id(obj)] = len(self.sems)
                self._seen.append(obj)
            return ("sem", self.sems[id(obj)])
        if type(obj) is _THREAD_LOCK:
            return ("thread-lock",)
        if isinstance(obj, signals.Signal):
            name = _signal_name(obj)
            if name is None:
                raise pickle.PicklingError(f"signal {obj.name!r} is not minicelery's")
            return ("signal", name)
        return None


class _Loader(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, shared: Shared) -> None:
        super().__init__(file)
        self.shared = shared

    def persistent_load(self, pid: Any) -> Any:
        kind = pid[0]
        if kind == "mmap":
            return self.shared.region(pid[1])
        if kind == "sem":
            return self.shared.semaphore(pid[1])
        if kind == "thread-lock":
            return threading.Lock()
        if kind == "signal":
            return getattr(signals, pid[1])
        raise pickle.UnpicklingError(f"unknown reference {pid!r}")


def describe(objects: Any) -> tuple[bytes, Shared]:
    """Pickle ``objects`` with their mappings and semaphores moved to memory files (the
    mappings' bytes copied, every semaphore made anew, unlocked): the description and the
    files. Call before any other process uses them."""
    buffer = io.BytesIO()
    describer = _Describer(buffer)
    describer.dump(objects)
    regions = sorted(describer.regions.values(), key=lambda entry: entry[0])
    fds, sizes = [], []
    for index, memory in regions:
        fd = os.memfd_create(f"mc-shared-{index}")
        os.ftruncate(fd, len(memory))  # zeroed: pages nobody touches take no memory
        data = memory[:]
        if data.strip(b"\0"):
            with mmap.mmap(fd, len(memory)) as copy:
                copy[:] = data
        fds.append(fd)
        sizes.append(len(memory))
    sem_fd = os.memfd_create("mc-locks")
    os.ftruncate(sem_fd, max(1, len(describer.sems)) * SEM_ROOM)
    fds.append(sem_fd)
    shared = Shared(fds, sizes, len(describer.sems))
    _init_semaphores(shared)
    return buffer.getvalue(), shared


def _init_semaphores(shared: Shared) -> None:
    import ctypes

    if not shared.sems:
        return
    memory = mmap.mmap(shared.fds[-1], shared.sems * SEM_ROOM)
    libc = ctypes.CDLL(None, use_errno=True)
    for index in range(shared.sems):
        address = _address(memory, index * SEM_ROOM)
        if libc.sem_init(ctypes.c_void_p(address), 1, 1) != 0:
            raise OSError(ctypes.get_errno(), "sem_init failed")
    memory.close()


def load(description: bytes, shared: Shared) -> Any:
    """The objects of ``description``, their memory mapped from ``shared``'s files."""
    return _Loader(io.BytesIO(description), shared).load()
