"""The main process's broker side: threads that reserve messages, send heartbeats, recover
the messages of lost workers, and move due scheduled messages onto their queues.

Each loop blocks on Redis (BLPOP on wake-up tokens, or on the schedule) rather than polling,
and rides out a Redis outage with backoff, logging once when it starts and once when it ends.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence

from ..broker import Broker, Delivery
from ..exceptions import OperationalError

logger = logging.getLogger(__name__)

IDLE_WAIT = 1.0
MAX_SCHEDULE_WAIT = 1.0


class Backoff:
    """Exponential backoff that remembers whether we are in an outage, to log it once."""

    def __init__(self, stop: threading.Event, what: str) -> None:
        self.stop = stop
        self.what = what
        self.delay = 0.0
        self.failing = False

    def failed(self, exc: OperationalError) -> None:
        if not self.failing:
            logger.error("%s: %s; retrying with backoff", self.what, exc)
            self.failing = True
        self.delay = min(max(self.delay * 2, 0.2), 5.0)
        self.stop.wait(self.delay)

    def succeeded(self) -> None:
        if self.failing:
            logger.warning("%s: connection to Redis restored", self.what)
            self.failing = False
        self.delay = 0.0


class Consumer:
    """Keeps up to ``capacity()`` messages reserved for this worker in ``buffer``."""

    def __init__(
        self,
        broker: Broker,
        consumer_id: str,
        queues: Sequence[str],
        capacity: Callable[[], int],
        on_messages: Callable[[], None],
        heartbeat_interval: float,
        lost_timeout: float,
    ) -> None:
        self.broker = broker
        self.consumer_id = consumer_id
        self.queues = list(queues)
        self.capacity = capacity
        self.on_messages = on_messages
        self.heartbeat_interval = heartbeat_interval
        self.lost_timeout = lost_timeout
        self.buffer: collections.deque[Delivery] = collections.deque()
        self.lock = threading.Lock()
        self.room = threading.Condition(self.lock)
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for target, name in (
            (self._reserve_loop, "consumer"),
            (self._heartbeat_loop, "heartbeat"),
            (self._schedule_loop, "scheduler"),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def notify_room(self) -> None:
        """The pool finished or took a job: there may be room to reserve more."""
        with self.room:
            self.room.notify()

    def take(self) -> Delivery | None:
        with self.lock:
            return self.buffer.popleft() if self.buffer else None

    def take_all(self) -> list[Delivery]:
        with self.lock:
            items = list(self.buffer)
            self.buffer.clear()
            return items

    def stop(self, join: bool = True) -> None:
        self.stopping.set()
        self.notify_room()
        if join:
            for thread in self._threads:
                thread.join(timeout=IDLE_WAIT + 5)

    def _wanted(self) -> int:
        with self.room:
            while not self.stopping.is_set():
                want = self.capacity() - len(self.buffer)
                if want > 0:
                    return want
                self.room.wait(IDLE_WAIT)
        return 0

    def _reserve_loop(self) -> None:
        backoff = Backoff(self.stopping, "consumer")
        while not self.stopping.is_set():
            want = self._wanted()
            if want <= 0:
                continue
            try:
                deliveries = self.broker.reserve(self.consumer_id, self.queues, want)
                if not deliveries:
                    self.broker.wait(self.queues, IDLE_WAIT)
                backoff.succeeded()
            except OperationalError as exc:
                backoff.failed(exc)
                continue
            if deliveries:
                with self.lock:
                    self.buffer.extend(deliveries)
                self.on_messages()

    def _heartbeat_loop(self) -> None:
        backoff = Backoff(self.stopping, "heartbeat")
        while not self.stopping.is_set():
            try:
                self.broker.heartbeat(self.consumer_id)
                recovered = self.broker.recover_lost(self.lost_timeout)
                if recovered:
                    logger.warning("Requeued %d message(s) held by lost worker(s)", recovered)
                backoff.succeeded()
            except OperationalError as exc:
                backoff.failed(exc)
                continue
            self.stopping.wait(self.heartbeat_interval)

    def _schedule_loop(self) -> None:
        backoff = Backoff(self.stopping, "scheduler")
        while not self.stopping.is_set():
            try:
                self._schedule_step()
                backoff.succeeded()
            except OperationalError as exc:
                backoff.failed(exc)

    def _schedule_step(self) -> None:
        due = self.broker.next_due()
        now = time.time()
        if due is not None and due <= now:
            self.broker.move_due(now)
            return
        wait = MAX_SCHEDULE_WAIT if due is None else min(due - now, MAX_SCHEDULE_WAIT)
        self.broker.wait_schedule_change(wait)
