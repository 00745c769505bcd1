"""Receiving events: :class:`EventReceiver` reads the event stream in order, from the moment it
was created (or from the oldest retained event), and calls a handler per event type."""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..exceptions import MessageError, OperationalError, TimeoutError
from .event import LamportClock, decode_batch

if TYPE_CHECKING:
    from ..app import Celery
    from .stream import EventStream

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Any]
READ_SLICE = 1.0  # longest single blocking read: stop requests are seen at least this often


class EventReceiver:
    """Celery's ``EventReceiver``: ``capture()`` calls ``handlers[type]`` (or ``handlers['*']``)
    with each event as a dict, in the order the events were written.

    It sees the events sent after it was created; ``from_start=True`` replays the ones the
    stream still holds first. Set ``should_stop`` (from a handler or another thread) to end
    a capture. ``connection`` is accepted for Celery compatibility.
    """

    def __init__(
        self,
        connection: Any = None,
        handlers: Mapping[str, Handler] | None = None,
        app: Celery | None = None,
        stream: EventStream | None = None,
        from_start: bool = False,
        **options: Any,
    ) -> None:
        if stream is None:
            if app is None:
                raise OperationalError("an EventReceiver needs an app or a stream")
            from .stream import event_stream

            stream = event_stream(app.broker)
        self.stream = stream
        self.handlers: dict[str, Handler] = dict(handlers or {})
        self.clock = LamportClock()
        self.should_stop = False
        self._pending: collections.deque[dict[str, Any]] = collections.deque()
        from .stream import BEGINNING

        self.position = BEGINNING if from_start else stream.latest()

    def process(self, type: str, event: dict[str, Any]) -> None:
        handler = self.handlers.get(type) or self.handlers.get("*")
        if handler is not None:
            handler(event)

    def events_from_entry(self, payload: bytes) -> list[dict[str, Any]]:
        """Decode one stream entry (a batch), stamp each event ``local_received`` and move
        the logical clock on."""
        events = decode_batch(payload)
        now = time.time()
        for event in events:
            event["local_received"] = now
            clock = event.get("clock")
            if isinstance(clock, int):
                self.clock.adjust(clock)
        return events

    def _fill(self, timeout: float) -> None:
        """Read what came after ``position`` (waiting up to ``timeout`` for it) into the
        pending events; a reader that stops half-way through a batch keeps the rest."""
        for entry_id, payload in self.stream.read(self.position, timeout):
            self.position = entry_id
            try:
                self._pending.extend(self.events_from_entry(payload))
            except MessageError as exc:
                logger.warning("Skipped an entry of the event stream: %s", exc)

    def poll(self, timeout: float) -> list[dict[str, Any]]:
        """The events that came since the last call, waiting up to ``timeout`` seconds for
        the first (0: do not wait)."""
        if not self._pending:
            self._fill(timeout)
        events = list(self._pending)
        self._pending.clear()
        return events

    def drain(self, timeout: float) -> int:
        """Handle the events that come within ``timeout`` seconds' wait; how many there were."""
        events = self.poll(timeout)
        for event in events:
            self.process(event["type"], event)
        return len(events)

    def itercapture(
        self, limit: int | None = None, timeout: float | None = None, wakeup: bool = False
    ) -> Iterator[dict[str, Any]]:
        """Yield events (after handling each) until ``limit`` of them or ``should_stop``;
        raises :class:`~minicelery.exceptions.TimeoutError` (a builtin ``TimeoutError``, like
        Celery's ``socket.timeout``) when none comes within ``timeout`` seconds."""
        count = 0
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.should_stop and (limit is None or count < limit):
            if not self._pending:
                left = READ_SLICE if deadline is None else deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no event within {timeout} seconds")
                self._fill(min(left, READ_SLICE))
                continue
            event = self._pending.popleft()
            self.process(event["type"], event)
            count += 1
            if timeout is not None:
                deadline = time.monotonic() + timeout
            yield event

    def capture(
        self, limit: int | None = None, timeout: float | None = None, wakeup: bool = False
    ) -> None:
        """Handle events until ``limit`` of them, ``should_stop``, or ``timeout`` seconds
        without one (``TimeoutError``)."""
        for _ in self.itercapture(limit, timeout, wakeup):
            pass
