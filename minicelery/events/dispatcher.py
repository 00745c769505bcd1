"""Sending events: :class:`EventDispatcher` signs each event (hostname, pid, logical clock,
UTC offset) and appends it to the event stream at once; :class:`BatchingDispatcher`, the
worker's, queues events and lets a thread send them in batches, so the worker's main loop
pays a dict and a deque append per event and never a round trip."""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..exceptions import OperationalError
from .event import LamportClock, anon_nodename, encode, encode_batch, group_from, utcoffset

if TYPE_CHECKING:
    from ..app import Celery
    from .stream import EventStream

logger = logging.getLogger(__name__)

BATCH_WINDOW = 0.002  # seconds a batch may gather: at most one round trip per window
MAX_PENDING = 10_000  # events kept through a Redis outage; the oldest are dropped beyond
MAX_BATCH = 100  # events per stream entry at most


class EventDispatcher:
    """Celery's ``EventDispatcher``: ``send(type, **fields)`` publishes one event.

    ``enabled=False`` makes ``send`` a no-op; ``groups`` (e.g. ``["worker"]``) limits the
    events sent to those groups. ``connection`` is accepted for Celery compatibility: events
    travel on the app's broker.
    """

    def __init__(
        self,
        connection: Any = None,
        hostname: str | None = None,
        enabled: bool = True,
        app: Celery | None = None,
        groups: Iterable[str] | None = None,
        stream: EventStream | None = None,
        **options: Any,
    ) -> None:
        self.app = app
        self.hostname = hostname or anon_nodename()
        self.enabled = enabled
        self.groups = set(groups) if groups else None
        self.clock = LamportClock()
        self.pid = os.getpid()
        self.utcoffset = utcoffset()
        self._stream = stream
        self._broker: Any = None
        # Where a worker's pool process hands its events to be sent in the worker's order
        # (see ``Events.relay_to``); None: straight to the stream.
        self.sink: Callable[[list[bytes]], None] | None = None

    @property
    def stream(self) -> EventStream:
        """The stream on the app's broker connection of this process (a forked child opens
        its own; an app whose connections were closed and reopened, its new one)."""
        if self.app is None:
            if self._stream is None:
                raise OperationalError("an EventDispatcher needs an app or a stream")
            return self._stream
        broker = self.app.broker
        if self._stream is None or self._broker is not broker:
            from .stream import event_stream

            self._stream, self._broker = event_stream(broker), broker
        return self._stream

    def make(self, type: str, fields: dict[str, Any]) -> dict[str, Any] | None:
        """The signed event, or None when disabled or outside ``groups``."""
        if not self.enabled or (self.groups is not None and group_from(type) not in self.groups):
            return None
        fields["type"] = type
        fields["hostname"] = self.hostname
        fields["utcoffset"] = self.utcoffset
        fields.setdefault("pid", self.pid)  # task-started names the pool process instead
        fields["clock"] = self.clock.forward()
        if "timestamp" not in fields:
            fields["timestamp"] = time.time()
        return fields

    def send(self, type: str, **fields: Any) -> dict[str, Any] | None:
        """Publish an event of ``type`` with ``fields``; returns it (None if not sent)."""
        for ignored in ("blind", "retry", "retry_policy", "Event"):
            fields.pop(ignored, None)  # Celery's delivery options: not needed here
        event = self.make(type, fields)
        if event is not None:
            self.publish([event])
        return event

    def publish(self, events: Sequence[dict[str, Any] | bytes]) -> None:
        """Append signed events (or encoded ones) to the stream, in order, in one round trip."""
        if self.sink is not None:
            self.sink([e if isinstance(e, bytes) else encode(e) for e in events])
        else:
            self.stream.append([encode_batch(events)])

    def flush(self) -> bool:
        """Send whatever is buffered (nothing is, here); False if some could not be."""
        return True

    def enable(self) -> None:
        self.enabled = True

    def disable(self) -> None:
        self.enabled = False

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> EventDispatcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class BatchingDispatcher(EventDispatcher):
    """Events queued by ``send`` are sent by a thread at most every ``window`` seconds, in
    one pipeline and in order. ``tick`` is called by that thread every ``tick_every``
    seconds (the worker's heartbeat). A Redis outage keeps up to ``MAX_PENDING`` events,
    logged once, sent when Redis answers again."""

    def __init__(
        self,
        *args: Any,
        window: float = BATCH_WINDOW,
        tick: Callable[[], None] | None = None,
        tick_every: float = 2.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.window = window
        self.tick = tick
        self.tick_every = max(tick_every, 0.01)
        self._queue: collections.deque[dict[str, Any] | bytes] = collections.deque(
            maxlen=MAX_PENDING
        )
        self._flushing = threading.Lock()  # one flush at a time keeps the order
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def publish(self, events: Sequence[dict[str, Any] | bytes]) -> None:
        self._queue.extend(events)
        if not self._wake.is_set():
            self._wake.set()

    def relay(self, payloads: list[bytes]) -> None:
        """Events encoded by a pool process, sent in their place among this worker's."""
        self.publish(payloads)

    def start(self) -> None:
        """Start the sending thread (after the worker has forked its children)."""
        self.stream  # noqa: B018 - open it now, in this process, not in the thread
        self._thread = threading.Thread(target=self._run, name="events", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread, then send what is still queued (one last try)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.flush()

    def flush(self) -> bool:
        """Send everything queued now; False (events kept) if Redis did not take them."""
        with self._flushing:
            return self._flush()

    def _flush(self) -> bool:
        batch: list[dict[str, Any] | bytes] = []
        while self._queue:
            batch.append(self._queue.popleft())
        if not batch:
            return True
        try:
            self.stream.append(
                [encode_batch(batch[i : i + MAX_BATCH]) for i in range(0, len(batch), MAX_BATCH)]
            )
        except OperationalError as exc:
            self._queue.extendleft(reversed(batch))
            if not self._failing:
                logger.error("Could not send %d event(s): %s; will retry", len(batch), exc)
                self._failing = True
            return False
        if self._failing:
            logger.warning("Sending events again")
            self._failing = False
        return True

    def _run(self) -> None:
        next_tick = time.monotonic() + self.tick_every
        delay = 0.0
        while not self._stopping.is_set():
            now = time.monotonic()
            if self.tick is not None and now >= next_tick:
                next_tick = now + self.tick_every
                self._call_tick()
            if not self._queue:
                self._wake.wait(max(0.0, next_tick - time.monotonic()))
            if self._stopping.is_set():
                return
            # Let a batch gather (and after a failure, back off) before the round trip.
            self._stopping.wait(self.window + delay)
            self._wake.clear()
            delay = 0.0 if self.flush() else min(max(delay * 2, 0.2), 5.0)

    def _call_tick(self) -> None:
        assert self.tick is not None
        try:
            self.tick()
        except Exception:
            logger.exception("event heartbeat failed")
