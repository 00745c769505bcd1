"""The lock the prefork children share with the main process (``worker.forklock``): held
in one process, it holds off a forked one; and making the worker's shared structures with
it imports no ``multiprocessing.synchronize`` (nor the tempfile, shutil and subprocess it
brings into every process)."""

from __future__ import annotations

import os
import subprocess
import sys

from minicelery.worker.forklock import fork_lock
from tests.helpers import REPO_ROOT


def test_a_forked_process_waits_for_the_lock() -> None:
    lock = fork_lock()
    assert lock.acquire(timeout=1)
    up_read, up_write = os.pipe()  # child to parent
    down_read, down_write = os.pipe()  # parent to child
    child = os.fork()
    if child == 0:  # pragma: no cover - reports through the pipe
        try:
            held_off = not lock.acquire(timeout=0.1)
            os.write(up_write, b"1" if held_off else b"0")
            os.read(down_read, 1)  # the parent released it
            got = lock.acquire(timeout=5)
            os.write(up_write, b"1" if got else b"0")
        finally:
            os._exit(0)
    try:
        assert os.read(up_read, 1) == b"1"  # held off while the parent holds it
        lock.release()
        os.write(down_write, b"x")
        assert os.read(up_read, 1) == b"1"  # taken once released...
        assert not lock.acquire(timeout=0.05)  # ...and held by the child now
    finally:
        os.waitpid(child, 0)
        for fd in (up_read, up_write, down_read, down_write):
            os.close(fd)


def test_shared_structures_need_no_multiprocessing_synchronize() -> None:
    code = (
        "import sys\n"
        "from minicelery.worker.buckets import SharedBuckets\n"
        "from minicelery.worker.sharedclock import SharedClock\n"
        "SharedBuckets(); SharedClock().forward()\n"
        "print(sorted(m for m in ('multiprocessing.synchronize', 'tempfile', 'subprocess')"
        " if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=60, check=True,
    )  # fmt: skip
    assert done.stdout.strip() == "[]", done.stderr
