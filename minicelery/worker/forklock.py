"""A lock shared by the processes a worker forks (the prefork children, its main process),
made without importing ``multiprocessing.synchronize``."""

from __future__ import annotations

import itertools
import os
from typing import Any

SEMAPHORE = 1  # _multiprocessing's kind of a plain (non-recursive) semaphore
_names = itertools.count()


def semlock_type() -> Any:
    """``_multiprocessing.SemLock`` (the class behind multiprocessing's locks), or None on
    an interpreter without it."""
    try:
        from _multiprocessing import SemLock  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return SemLock


def fork_lock() -> Any:
    """An unnamed POSIX semaphore of value 1 that forked processes share: what
    ``multiprocessing.get_context("fork").Lock()`` makes, without importing
    ``multiprocessing.synchronize``, which brings tempfile, shutil, bz2, lzma, random and
    subprocess into every process of the worker (1.6 MB of memory in each) for its name
    generator. ``acquire(block, timeout)``, ``release()`` and ``with`` as that lock's."""
    SemLock = semlock_type()
    if SemLock is None:  # an interpreter without it: the public way
        import multiprocessing

        return multiprocessing.get_context("fork").Lock()
    for _ in range(100):
        name = f"/mc-{os.getpid()}-{next(_names)}-{os.urandom(4).hex()}"
        try:
            # Unlinked at once (the last argument): only forked processes share it.
            return SemLock(SEMAPHORE, 1, 1, name, True)
        except FileExistsError:
            continue
    raise FileExistsError("cannot find a name for a semaphore")
