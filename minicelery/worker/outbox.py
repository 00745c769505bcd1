"""What a worker's main process owes Redis: the results its children produced and the
acknowledgements that follow them.

Where results and the broker share one Redis, both go out on a lane, together in one call
and without waiting for the reply, so an acknowledgement never overtakes the result it
follows and the main loop never stalls on a round trip. Without a lane (``memory://``, or
results on another Redis) results are stored at once and acks ride with the next reserve.
"""

from __future__ import annotations

import collections
import logging
import time
from typing import TYPE_CHECKING

from ..exceptions import OperationalError
from .state import successful_requests

if TYPE_CHECKING:
    from ..app import Celery
    from ..redislayer.wire import Lane
    from .consumer import Consumer

logger = logging.getLogger("minicelery.worker")

ACK_DELAY = 0.002  # seconds an early ack may wait to share a round trip with others


class Outbox:
    """Pending results and acks of one worker, and the lane they travel on."""

    def __init__(self, app: Celery, consumer_id: str, concurrency: int) -> None:
        self.app = app
        self.consumer_id = consumer_id
        self.concurrency = concurrency
        self.lane: Lane | None = None
        self.socketless = True  # an in-process broker (memory://): nothing can hang
        self.results: list[tuple[str, bytes]] = []
        self.acks: list[str] = []
        self.early: set[str] = set()  # acks of started tasks: no result to wait for
        self.acks_since = 0.0  # when the oldest pending ack was added
        self.since = 0.0  # when the oldest pending result or ack was added
        # (lane commands sent when they went out, the acks among them), until Redis confirms
        self._acks_sent: collections.deque[tuple[int, list[str]]] = collections.deque()
        self.succeeded: list[str] = []  # ids of tasks that ended SUCCESS, results pending
        self._succeeded_sent: collections.deque[tuple[int, list[str]]] = collections.deque()

    def open_lane(self) -> None:
        """A lane only where results and acks share one Redis connection pool (the same
        URL): their order on a single connection is what keeps acks after results."""
        broker, backend = self.app.broker, self.app.backend
        make = getattr(broker, "lane", None)
        lane = make() if make is not None else None
        self.socketless = lane is None
        shared = getattr(backend, "client", None) is getattr(broker, "client", None)
        if lane is not None and shared and hasattr(backend, "store_commands"):
            self.lane = lane
        elif lane is not None:
            lane.close()

    def add_ack(self, tag: str, early: bool = False) -> None:
        """Acknowledge ``tag`` soon: ``early`` for a task that has just started (its ack
        follows no result, so it may travel with a reserve), else after the results
        already added."""
        if not self.acks:
            self.acks_since = time.monotonic()
            if not self.results:
                self.since = self.acks_since
        self.acks.append(tag)
        if early and self.lane is not None:
            self.early.add(tag)

    def take_early_acks(self) -> list[str]:
        """Remove and return the pending early acks, to send with a reserve: on the reserve's
        own connection they land before it, so what the worker holds stays in its window."""
        if not self.early:
            return []
        taken = [tag for tag in self.acks if tag in self.early]
        self.acks = [tag for tag in self.acks if tag not in self.early]
        self.early.clear()
        return taken

    def put_back_acks(self, tags: list[str]) -> None:
        """Acks a failed reserve may not have delivered: sent again with the next call."""
        for tag in tags:
            self.add_ack(tag, early=True)

    def add_results(self, records: list[tuple[str, bytes]]) -> None:
        if records and not self.results and not self.acks:
            self.since = time.monotonic()
        self.results.extend(records)

    def due(self, idle: bool) -> bool:
        """Send now, or let a few more join? Every write to Redis costs tens of microseconds
        of CPU, so under load (no ``idle`` slot) results and acks are sent every
        ``ACK_DELAY`` seconds at most, or before the next reserve. With an idle slot results
        go at once (a client may be waiting), and so do acks once a result can carry them;
        an early ack alone waits up to ``ACK_DELAY`` for its task's result, so a short task
        costs one write, not two, while it runs."""
        if not (self.results or self.acks):
            return False
        if idle and self.results:
            return True
        pending = len(self.results) + len(self.acks)
        return pending >= 4 * self.concurrency or time.monotonic() - self.since >= ACK_DELAY

    def wait_for(self) -> float | None:
        """Seconds until what is pending on the lane is due (None: nothing to send there)."""
        if self.lane is None or not (self.results or self.acks):
            return None
        return max(0.0, self.since + ACK_DELAY - time.monotonic())

    def flush(self, consumer: Consumer, idle: bool, force: bool = False) -> bool:
        """Send what is due; False while Redis is unreachable (kept for the next turn)."""
        if self.lane is None:
            return self._store_results(consumer)
        if self.lane.broken and consumer.retry_in() == 0:
            self.read_lane(consumer)  # sends again what a lost connection left unconfirmed
        if self.succeeded and not self.results:
            self._succeeded_after(self.lane.sent)  # no result to store (ignored)
        if not (self.results or self.acks):
            return consumer.retry_in() == 0
        if not (force or self.due(idle)) or consumer.retry_in() > 0:
            return consumer.retry_in() == 0
        ack = (self.app.broker.ack_key(self.consumer_id), self.acks)  # type: ignore[attr-defined]
        commands = self.app.backend.store_commands(self.results, ack)  # type: ignore[attr-defined]
        if self.acks:
            self._acks_sent.append((self.lane.sent + len(commands), self.acks))
        self._succeeded_after(self.lane.sent + len(commands))
        self.results, self.acks = [], []
        self.early.clear()
        try:
            self.lane.send(commands)  # kept by the lane and sent again if this fails
        except OperationalError as exc:
            consumer.broker_failed(exc)
            return False
        return True

    def _store_results(self, consumer: Consumer) -> bool:
        """Store what the children produced, before any ack that depends on it."""
        if not self.results:
            return True
        if consumer.retry_in() > 0:
            return False
        try:
            self.app.backend.store_encoded(self.results)  # type: ignore[attr-defined]
        except OperationalError as exc:
            consumer.broker_failed(exc)
            return False
        self.results = []
        self._note_succeeded(self.succeeded)
        self.succeeded = []
        return True

    def acks_in_flight(self) -> int:
        """Acks sent on the lane that Redis has not confirmed yet. Their messages are still
        in the worker's hold, and a reserve on another connection may overtake them, so
        they count against the prefetch window until confirmed. (Early acks usually go
        with the reserve instead; see :meth:`take_early_acks`.)"""
        return len(self.unconfirmed_acks())

    def unconfirmed_acks(self) -> list[str]:
        """The tags of the acks sent on the lane that Redis has not confirmed."""
        if self.lane is None:
            return []
        confirmed = self.lane.confirmed
        while self._acks_sent and self._acks_sent[0][0] <= confirmed:
            self._acks_sent.popleft()
        return [tag for _, tags in self._acks_sent for tag in tags]

    def unsent(self) -> int:
        """Results and acks Redis has not confirmed yet (kept in memory until it does)."""
        pending = len(self.results) + len(self.acks)
        return pending + (len(self.lane.pending) if self.lane is not None else 0)

    def lane_fd(self) -> int | None:
        """The lane's socket while it owes replies (for the main loop's select)."""
        if self.lane is not None and self.lane.pending and not self.lane.broken:
            return self.lane.fileno()
        return None

    def read_lane(self, consumer: Consumer) -> None:
        """Read the replies that have arrived."""
        assert self.lane is not None
        try:
            self.lane.read()
        except OperationalError as exc:
            consumer.broker_failed(exc)
        confirmed = self.lane.confirmed
        while self._succeeded_sent and self._succeeded_sent[0][0] <= confirmed:
            self._note_succeeded(self._succeeded_sent.popleft()[1])

    def _succeeded_after(self, sent: int) -> None:
        """The pending successes count once Redis confirms the lane's command ``sent``."""
        assert self.lane is not None
        if self.succeeded and sent <= self.lane.confirmed:
            self._note_succeeded(self.succeeded)
        elif self.succeeded:
            self._succeeded_sent.append((sent, self.succeeded))
        self.succeeded = []

    def _note_succeeded(self, task_ids: list[str]) -> None:
        for task_id in task_ids:
            successful_requests.add(task_id)

    def flush_acks(self, consumer: Consumer) -> None:
        """Acknowledge what is pending now: on the lane, or with a round trip of its own."""
        if self.lane is not None:
            self.flush(consumer, idle=True, force=True)
        elif self.acks:
            tags, self.acks = self.acks, []
            self.early.clear()
            self.app.broker.ack(self.consumer_id, tags)

    def close(self, timeout: float) -> None:
        """At exit: wait up to ``timeout`` seconds until Redis has confirmed everything the
        lane sent (a hung Redis is given up on, not waited for)."""
        if self.lane is None:
            return
        try:
            if self.lane.broken:
                self.lane.read()  # sends again what a lost connection left unconfirmed
            self.lane.read(block=True, timeout=timeout)
            if self.lane.pending:
                logger.error("Redis did not confirm %d result(s)/ack(s) before shutdown",
                             len(self.lane.pending))  # fmt: skip
        except OperationalError as exc:
            logger.error("Could not confirm %d result(s)/ack(s): %s", len(self.lane.pending), exc)
        self.lane.close()
