"""The main process's broker side. The main loop itself reserves messages and acknowledges
finished ones in one round trip (``fetch``); when the queues run dry a waiter thread blocks on
the wake-up tokens and wakes the loop, so an idle worker reacts within milliseconds without
polling. Two more threads send heartbeats (recovering lost workers' messages) and move due
scheduled messages onto their queues. A Redis outage is ridden out with backoff, logged once
when it starts and once when it ends."""

from __future__ import annotations

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

    def __init__(self, what: str) -> None:
        self.what = what
        self.delay = 0.0
        self.failing = False

    def failed(self, exc: OperationalError) -> float:
        """Record a failure; return how long to wait before trying again."""
        if not self.failing:
            logger.error("%s: %s; retrying with backoff", self.what, exc)
            self.failing = True
        self.delay = min(max(self.delay * 2, 0.2), 5.0)
        return self.delay

    def succeeded(self) -> None:
        if self.failing:
            logger.warning("%s: connection to Redis restored", self.what)
            self.failing = False
        self.delay = 0.0


class Consumer:
    """Reserves and acknowledges for one worker; see the module docstring."""

    def __init__(
        self,
        broker: Broker,
        consumer_id: str,
        queues: Sequence[str],
        wake: Callable[[], None],
        heartbeat_interval: float,
        lost_timeout: float,
    ) -> None:
        self.broker = broker
        self.consumer_id = consumer_id
        self.queues = list(queues)
        self.wake = wake
        self.heartbeat_interval = heartbeat_interval
        self.lost_timeout = lost_timeout
        self.stopping = threading.Event()
        self._parked = False  # a wait or a reserve is under way on the broker connection
        self._requested = 0  # messages asked for by a reserve under way (not a wait)
        self._woken_by_wait = False  # the last wake-up ended a wait (not a plain reserve)
        self._watch_fd: int | None = None
        self._thread_wait = threading.Event()  # for brokers without a socket to watch
        self._backoff = Backoff("consumer")
        self.hold_suspect = False  # see WorkController._reconcile_hold
        self._retry_at = 0.0
        self._threads: list[threading.Thread] = []
        # Other consumer ids to keep alive (children that reserve by themselves).
        self.also_alive: Callable[[], Sequence[str]] = tuple

    def start(self) -> None:
        for target, name in (
            (self._wait_loop, "waiter"),
            (self._heartbeat_loop, "heartbeat"),
            (self._schedule_loop, "scheduler"),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    @property
    def parked(self) -> bool:
        """True while the queues are dry and a blocking wait on them is under way."""
        return self._parked

    def watch_fd(self) -> int | None:
        """The socket the main loop should watch for the end of that wait, if any."""
        return self._watch_fd

    def retry_in(self) -> float:
        """Seconds until the broker may be tried again after a failure (0 when healthy)."""
        return max(0.0, self._retry_at - time.monotonic())

    def fetch(self, room: int, acks: list[str]) -> list[Delivery]:
        """Acknowledge ``acks`` and, unless parked, reserve up to ``room`` messages, in one
        round trip. ``acks`` is emptied only when the broker took them."""
        if self.retry_in() > 0 or (self.stopping.is_set() and not acks):
            return []
        reserve = room > 0 and not self._parked and not self.stopping.is_set()
        try:
            if reserve:
                deliveries = self.broker.reserve(self.consumer_id, self.queues, room, acks)
            else:
                self.broker.ack(self.consumer_id, acks)
                deliveries = []
            acks.clear()
            self._backoff.succeeded()
            if reserve and len(deliveries) < room:
                # The queues are dry: block until a wake-up token comes.
                self._park(room - len(deliveries))
        except OperationalError as exc:
            # A reserve whose reply was lost may have taken messages we never saw.
            self.hold_suspect = self.hold_suspect or reserve
            self.broker_failed(exc)
            return []
        return deliveries

    def fetch_start(self, room: int, acks: Sequence[str] = ()) -> bool:
        """Acknowledge ``acks`` and reserve up to ``room`` messages without waiting: the reply
        wakes the main loop (see :meth:`on_wake`), which keeps feeding the pool meanwhile.
        False when ``acks`` were not sent: the broker cannot (the caller uses :meth:`fetch`),
        or it failed, or there is no room or it is busy and there were acks to send; True
        when they were sent, or when there were none and there is nothing to do now."""
        busy = self._parked or self.hold_suspect or self.stopping.is_set() or self.retry_in() > 0
        if room <= 0 or busy:
            return not acks
        try:
            fd = self.broker.reserve_start(self.consumer_id, self.queues, room, acks)
        except OperationalError as exc:
            self.hold_suspect = True  # it may have been sent, and run
            self.broker_failed(exc)
            return not acks
        if fd is None:
            return False
        self._watch_fd, self._parked, self._requested = fd, True, room
        return True

    def _park(self, room: int) -> None:
        # Where the broker connection is a real socket the main loop watches it itself (no
        # thread hop on the way to a new task), and the reserve that follows a wake-up rides
        # behind the wait; otherwise the waiter thread blocks for it.
        self._watch_fd = self.broker.wait_start(
            self.queues, IDLE_WAIT, reserve_for=(self.consumer_id, room)
        )
        self._parked = True
        if self._watch_fd is None:
            self._thread_wait.set()

    def on_wake(self) -> list[Delivery]:
        """The watched wait ended (token, timeout or error): the messages reserved with it;
        the loop reserves again for more."""
        watched, self._watch_fd = self._watch_fd, None
        self._parked = False
        requested, self._requested = self._requested, 0
        self._woken_by_wait = not requested
        try:
            deliveries = self.broker.wait_finish()
            if deliveries is None:  # the rest of the reply is still to come
                self._watch_fd, self._parked, self._requested = watched, True, requested
                return []
        except OperationalError as exc:
            self.hold_suspect = True  # its chained reserve may have run, its reply lost
            self.broker_failed(exc)
            return []
        self._backoff.succeeded()
        if requested and len(deliveries) < requested:
            self._park(requested - len(deliveries))  # the queues ran dry: wait for more
        return deliveries

    def repark(self, room: int) -> None:
        """Wait again at once after a wake-up that brought messages, with the next reserve
        chained to the wait: if more are queued (the reserve passed the token on) it returns
        at once, and the main loop never stalls on a reserve round trip while a task runs."""
        if (
            room > 0
            and not self.stopping.is_set()
            and self.retry_in() == 0
            and not self._parked
            and not self.hold_suspect
            and self._woken_by_wait
        ):
            self._park(room)

    def broker_failed(self, exc: OperationalError) -> None:
        """Back off after a failed call from the main loop (fetching or storing)."""
        self._retry_at = time.monotonic() + self._backoff.failed(exc)

    def stop(self, join: bool = True, timeout: float = IDLE_WAIT + 5) -> None:
        """Stop the threads; with ``join``, wait for them up to ``timeout`` seconds in all
        (one stuck on a hung Redis is a daemon, left behind rather than waited for). The
        scheduler is not waited for: it holds nothing, each of its moves is one atomic script,
        and its blocking wait for a schedule change would hold up every shutdown by up to
        ``MAX_SCHEDULE_WAIT``; it ends by itself once that wait returns."""
        self.stopping.set()
        self._thread_wait.set()
        if self._watch_fd is not None:
            self._watch_fd = None
            self.broker.wait_abort()
        if join:
            deadline = time.monotonic() + timeout
            for thread in self._threads:
                if thread.name != "scheduler":
                    thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _wait_loop(self) -> None:
        backoff = Backoff("waiter")
        while not self.stopping.is_set():
            if not self._thread_wait.wait(IDLE_WAIT):
                continue
            if self.stopping.is_set():
                return
            try:
                self.broker.wait(self.queues, IDLE_WAIT)
                backoff.succeeded()
            except OperationalError as exc:
                self.stopping.wait(backoff.failed(exc))
            # A token, a timeout or an error: either way the loop should try to reserve.
            self._thread_wait.clear()
            self._parked = False
            self.wake()

    def _heartbeat_loop(self) -> None:
        backoff = Backoff("heartbeat")
        while not self.stopping.is_set():
            try:
                for consumer_id in (self.consumer_id, *self.also_alive()):
                    self.broker.heartbeat(consumer_id)
                recovered = self.broker.recover_lost(self.lost_timeout)
                if recovered:
                    logger.warning("Requeued %d message(s) held by lost worker(s)", recovered)
                backoff.succeeded()
            except OperationalError as exc:
                self.stopping.wait(backoff.failed(exc))
                continue
            self.stopping.wait(self.heartbeat_interval)

    def _schedule_loop(self) -> None:
        backoff = Backoff("scheduler")
        while not self.stopping.is_set():
            try:
                self._schedule_step()
                backoff.succeeded()
            except OperationalError as exc:
                if self.stopping.is_set():
                    return  # its connection went with the worker (see stop())
                self.stopping.wait(backoff.failed(exc))

    def _schedule_step(self) -> None:
        due = self.broker.next_due()
        now = time.time()
        if due is not None and due <= now:
            self.broker.move_due(now)
            return
        wait = MAX_SCHEDULE_WAIT if due is None else min(due - now, MAX_SCHEDULE_WAIT)
        self.broker.wait_schedule_change(wait)
