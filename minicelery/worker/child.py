"""The loop of one prefork child: receive a job, run it, report back; nothing else.

Children ignore SIGINT (the terminal's Ctrl-C is for the main process), turn SIGUSR1 into
``SoftTimeLimitExceeded`` while a task runs, and open their own Redis connections.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

import msgpack

from .. import signals
from ..backend.relay import RelayBackend
from ..exceptions import SoftTimeLimitExceeded
from ..serialization import pack_frame
from .channel import Channel

if TYPE_CHECKING:
    from ..app import Celery

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_INIT_FAILED = 3
EXIT_PARENT_GONE = 4

_in_task = False
_inherited_objects: list[Any] = []


def _soft_limit(signum: int, frame: FrameType | None) -> None:
    # Raising from a handler is the only way to interrupt arbitrary task code; only do it
    # while a task runs so the child's own loop is never interrupted.
    if _in_task:
        raise SoftTimeLimitExceeded("SoftTimeLimitExceeded()")


# (queue, message, whether task events are on) -> (state, requeue, dead-letter reason, the
# task event's fields when events are on)
ChildRunner = Callable[
    [str, bytes, bool], tuple[str, bool, "str | None", "dict[str, Any] | None"]
]

READY = b"R"
STOP = b""
DONE = b"D"
RESULTS = b"E"
EVENTS = b"V"  # monitoring events a task sent, relayed to keep the worker's order


def encode_job(queue: str, data: bytes, event_fields: bool = False) -> bytes:
    """The frame a child receives: ``E|- queue \0 message``; ``E`` when task events are on
    (they can be switched on after the child was forked), so it adds their fields."""
    return (b"E" if event_fields else b"-") + queue.encode() + b"\0" + data


def resident_kib() -> int:
    """This process's resident memory now, in KiB. On Linux one small read of
    /proc/self/statm; elsewhere the peak from getrusage, the best a portable call gives
    (a peak never falls, so there a child that once peaked above the limit is replaced)."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            resident_pages = int(handle.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak // 1024 if sys.platform == "darwin" else peak  # bytes there, KiB here


def over_memory_limit(limit_kib: int | None) -> bool:
    """Whether this child should be replaced after the task it just ran (Celery's
    ``worker_max_memory_per_child``: resident memory above the limit, in KiB)."""
    if not limit_kib:
        return False
    used = resident_kib()
    if used <= limit_kib:
        return False
    logger.warning(
        "%d KiB resident exceeds the memory limit of %d KiB: this child will be replaced",
        used,
        limit_kib,
    )
    return True


def prepare(app: Celery, index: int) -> None:
    """A child's first steps after fork: its own signal handlers and name, and none of the
    parent's Redis connections. What it inherited is moved out of the garbage collector's
    sight (``gc.freeze``, an O(1) splice): a collection would otherwise walk every object
    of the parent and write to each one's header, copying the pages the child shares."""
    gc.freeze()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGUSR1, _soft_limit)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    # Imported here, not by the module: the main process imports this module for its
    # constants and needs no multiprocessing (its log records say MainProcess without it).
    # A fork server imports it before it forks, so its children share those pages.
    import multiprocessing

    multiprocessing.current_process().name = f"ForkPoolWorker-{index}"
    # The parent's sockets are not ours: open fresh ones lazily. Keep the inherited objects
    # referenced so their finalizers (an embedded server's shutdown) never run in a child.
    _inherited_objects.append(app._connections)
    app._connections = None


def process_init() -> bool:
    """Send ``worker_process_init``; False (logged) if a receiver failed. What the child
    has built by then lives as long as it does, and is frozen too: the collections that
    follow walk only what its tasks create."""
    try:
        signals.worker_process_init.send(sender=None)
    except Exception:
        logger.exception("worker_process_init failed")
        return False
    gc.freeze()
    return True


def process_shutdown() -> None:
    signals.worker_process_shutdown.send(sender=None, pid=os.getpid(), exitcode=0)
    sys.stdout.flush()
    sys.stderr.flush()


def child_main(
    app: Celery,
    conn: Channel,
    index: int,
    run: ChildRunner,
    inherited: list[Channel],
    max_memory_kib: int | None = None,
) -> int:
    """Entry point after fork; returns the exit code."""
    global _in_task
    prepare(app, index)
    for other in inherited:
        other.close()
    relay = RelayBackend(
        app.conf.result_serializer,
        lambda records: conn.send_bytes(RESULTS + pack_frame(records)),
        app.open_backend,
    )
    app.relay_results(relay)
    if app.conf.worker_send_task_events:
        app.events.relay_to(lambda events: conn.send_bytes(EVENTS + msgpack.packb(events)))
    if not process_init():
        return EXIT_INIT_FAILED
    conn.send_bytes(READY)
    try:
        while True:
            try:
                frame = conn.recv_bytes()
            except (EOFError, OSError):
                return EXIT_PARENT_GONE
            if frame == STOP:
                return EXIT_OK
            queue, _, data = frame[1:].partition(b"\0")
            _in_task = True
            try:
                outcome = run(queue.decode(), data, frame[:1] == b"E")
            finally:
                _in_task = False
            # The outcome and the final result travel together: the main process stores the
            # result before it acknowledges the message. The memory verdict travels with them
            # too, so the main process never hands this child another job in between.
            retire = over_memory_limit(max_memory_kib)
            conn.send_bytes(DONE + pack_frame([*outcome, relay.take(), retire]))
    finally:
        process_shutdown()
