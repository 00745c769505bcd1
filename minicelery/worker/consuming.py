"""The life of a prefork child that consumes by itself, after fork: the classic child's
first steps, a result backend that keeps final records for the child's round trips, its
own task events with ``-E``, then :class:`~.consume.ChildConsumer`'s loop."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..backend.relay import RelayBackend
from ..events.worker import WorkerEvents
from . import child as child_process
from .buckets import SharedBuckets
from .channel import Channel
from .consume import ChildConsumer, ConsumeSettings
from .slots import Slots

if TYPE_CHECKING:
    from ..app import Celery


def consume_main(
    app: Celery,
    conn: Channel,
    index: int,
    settings: ConsumeSettings,
    slots: Slots,
    buckets: SharedBuckets,
) -> int:
    """A consuming child's life after fork; returns its exit code."""
    child_process.prepare(app, index)
    relay = RelayBackend(
        app.conf.result_serializer,
        lambda records: _store_now(relay, records),
        app.open_backend,
    )
    app.relay_results(relay)
    try:
        consumer = ChildConsumer(app, conn, index, settings, slots, relay, buckets)
    except EOFError:  # the main process left while this child waited for Redis
        return child_process.EXIT_PARENT_GONE
    consumer.make_events = lambda: child_events(app, settings.hostname, slots)
    if app.conf.worker_send_task_events:
        consumer.switch_events(True)
    if not child_process.process_init():
        return child_process.EXIT_INIT_FAILED
    conn.send_bytes(child_process.READY)
    try:
        if not consumer.start():
            return child_process.EXIT_OK
    except (EOFError, OSError):
        return child_process.EXIT_PARENT_GONE
    try:
        return consumer.run()
    finally:
        child_process.process_shutdown()


def child_events(app: Celery, hostname: str, slots: Slots) -> WorkerEvents:
    """A child's task events, sent in batches before each round trip; signed by the worker
    with its one clock, as the classic pool's (task-started names this process)."""
    events = WorkerEvents(app, hostname, 2.0, lambda: (0, 0))
    events.dispatcher.pid = os.getppid()
    events.dispatcher.clock = slots.clock
    return events


def _store_now(relay: RelayBackend, records: list[tuple[str, bytes]]) -> None:
    """Intermediate states (STARTED, PROGRESS) are stored at once, as they happen."""
    real: Any = relay.real
    real.store_encoded(records)
