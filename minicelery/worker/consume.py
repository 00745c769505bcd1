"""The loop of a prefork child that consumes by itself (``worker_children_consume``).

One pipelined round trip per batch stores the results of the last batch, acknowledges its
messages and reserves the next ones under the child's own consumer id (its own hold), so no
task crosses the main process. When the queues are dry the child blocks on their wake-up
tokens with the next reserve chained behind the wait. The main process supervises: it reads
what the child runs from shared memory (:mod:`.slots`), hears over the pipe only of tasks
with time limits, and gives the child's hold back when the child dies.
"""

from __future__ import annotations

import itertools
import logging
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgpack

from ..backend.relay import RelayBackend
from ..broker import DeadLetter, Delivery
from ..events.worker import WorkerEvents
from ..exceptions import OperationalError
from . import child as child_process
from .buckets import Deferred, SharedBuckets
from .channel import Channel
from .childaio import async_task_names
from .childintake import Limits
from .childtasks import HEARD, ChildTasks
from .revokenews import RevokeNews
from .slots import Slots

if TYPE_CHECKING:
    from ..app import Celery

logger = logging.getLogger(__name__)

INIT = b"I"  # main -> child: [slot position, revoked task ids, config, revoked stamps]
REVOKE = b"X"  # main -> child: [task ids revoked since]
STAMPS = b"S"  # main -> child: [{stamp name: values} revoked now, news ids obeyed since]
CONFIG = b"C"  # main -> child: a remote command's change (queues, time limits)
TERMINATE = b"K"  # main -> child: [task ids, signal number] revoked with terminate=True
AUDIT_FOR = 10.0  # seconds the hold is looked at after Redis comes back
MAX_BACKOFF = 5.0
HANG = 2.0  # seconds beyond a wait's own timeout before Redis counts as hung


@dataclass
class ConsumeSettings:
    """What every consuming child of one worker shares (fixed before the fork)."""

    consumer_id: str  # the worker's; a child's own is ``<this>/<child index>``
    queues: list[str]
    batch: int  # messages per reserve: the prefetch multiplier
    hostname: str
    accept: frozenset[str]
    limits: Limits
    max_tasks: int | None = None
    max_memory_kib: int | None = None
    revoked: set[str] = field(default_factory=set)
    async_concurrency: int = 100  # async def tasks a child runs at once


class ChildConsumer(ChildTasks):
    """One child's loop; see the module docstring."""

    def __init__(
        self,
        app: Celery,
        conn: Channel,
        index: int,
        settings: ConsumeSettings,
        slots: Slots,
        relay: RelayBackend,
        buckets: SharedBuckets,
    ) -> None:
        self.app = app
        self.buckets = buckets
        self.deferred = Deferred()  # waiting for their rate limit's token
        self.events: WorkerEvents | None = None
        self.relay = relay
        self._backend: Any = None
        self.conn = conn
        self.settings = settings
        self.slots = slots
        self.position = -1
        self.consumer_id = f"{settings.consumer_id}/{index}"
        self.broker: Any = self._open_broker(app)
        self.revoked: set[str] = set(settings.revoked)
        self.news = RevokeNews(self.broker, self.revoked, settings.hostname)
        self.records: list[tuple[str, bytes]] = []  # stored with the next round trip
        self.acks: list[str] = []  # acknowledged right after those records
        self.succeeded: list[str] = []
        self.dead: list[tuple[Delivery, DeadLetter]] = []
        self.stopping = False
        self.hold_unknown = False  # a reply was lost: the hold may have messages we never saw
        self.audit_until = 0.0  # look at the hold now and then until this time (monotonic)
        self.next_audit = 0.0
        self.failures = 0
        self.done = 0
        self.totals: dict[str, int] = {}
        self._mail_seen = 0
        self.async_names = async_task_names(app)
        self.awaiting = {}
        self.board = {}
        self.async_capacity = settings.async_concurrency if self.async_names else 0

    def _open_broker(self, app: Celery) -> Any:
        """The app's broker. Opening one connects on a Redis Cluster (the slot map): while
        the cluster cannot be reached, wait as the main process does, unless it is gone."""
        for attempt in itertools.count():
            try:
                return app.broker
            except OperationalError as exc:
                if attempt == 0:  # the main process says why, once: it waits for Redis too
                    logger.debug("child %s: %s; retrying with backoff", self.consumer_id, exc)
                pause = min(0.2 * 2 ** min(attempt, 5), MAX_BACKOFF)
                ready, _, _ = select.select([self.conn.sock], [], [], pause)
                if ready:  # its word is left for start(): a wait, unless the pipe closed
                    if not self.conn.sock.recv(1, socket.MSG_PEEK):
                        raise EOFError("the main process is gone") from exc
                    time.sleep(pause)
        raise AssertionError("itertools.count() never ends")  # pragma: no cover

    # -- life -----------------------------------------------------------------------------
    def start(self) -> bool:
        """Wait for the main process's word to start (the worker is up): this child's slot
        and the ids revoked so far. False when told to stop instead."""
        frame = self.conn.recv_bytes()
        if frame[:1] != INIT:
            return False
        position, revoked, config, stamps = msgpack.unpackb(frame[1:])
        self.position = int(position)
        if self.async_capacity:  # the child before at this position may have left a list
            self.slots.async_board.clear(self.position)
        self.revoked.update(revoked)
        self.news.forward(stamps)
        self._reconfigure(config)
        # Frames sent right behind the first (a stop, revokes) may have been read with it.
        self._handle(self.conn.buffered())
        return True

    def _reconfigure(self, change: dict[str, Any]) -> None:
        if "queues" in change:
            self.settings.queues = list(change["queues"])
        if "events" in change:
            self.switch_events(bool(change["events"]))
        for name, (soft, hard) in change.get("limits", {}).items():
            task = self.app.tasks.get(name)
            if task is not None:
                task.soft_time_limit, task.time_limit = soft, hard

    def run(self) -> int:
        """Consume until asked to stop (or retired); give back what was not started."""
        try:
            while not self.stopping:
                self._audit_due()
                room = self.settings.batch - len(self.deferred)
                if self.async_capacity:
                    room = self._async_window(room)
                deliveries = self._trip(max(room, 0))
                if not deliveries and not self.stopping:
                    deliveries = self._idle_async(room) if self.async_busy() else self._idle(room)
                self._run_batch(deliveries)
                for delivery, verdict in self.deferred.take_due():
                    self.resume(delivery, verdict)
        finally:
            self._give_back(self.deferred.take_all())
            self._finish_async()
            self._leave()
        return child_process.EXIT_OK

    def _leave(self) -> None:
        """Store and acknowledge what ran; give back anything else this child holds."""
        for attempt in range(3):
            try:
                self._trip(0)
                if not (self.records or self.acks):
                    self._give_back_unknown()
                    return
            except OperationalError:
                pass
            time.sleep(0.2 * (attempt + 1))  # the main process gives the hold back anyway

    # -- Redis ----------------------------------------------------------------------------
    def _trip(self, count: int) -> list[Delivery]:
        """Store, acknowledge, reserve up to ``count``: one round trip. [] while Redis is
        away (after a pause that grows), keeping the results and acks for the next one."""
        try:
            if self.hold_unknown:
                self._give_back_unknown()
            for delivery, letter in self.dead:
                self.broker.dead_letter(self.consumer_id, delivery, letter)
            self.dead = []
            if self.events is not None:
                self.events.dispatcher.flush()  # keeps them through an outage
            stores = self._stores()
            self._publish_counts()
            deliveries: list[Delivery] = self.broker.settle_and_reserve(
                stores, self.consumer_id, self.settings.queues, count, self.acks,
                self.news.after_reserve(),
            )  # fmt: skip
        except OperationalError as exc:
            self.hold_unknown = self.hold_unknown or count > 0
            self._failed(exc)
            return []
        if self.failures:
            logger.warning("Connection to Redis restored")
            self.failures = 0
            self.audit_until = time.monotonic() + AUDIT_FOR
        self.records, self.acks = [], []
        self.slots.settled(self.position)
        self.settle_now = False
        return deliveries

    def _publish_counts(self) -> None:
        """What ran, for ``inspect stats`` and ``successful_requests``: in the slot before
        the results leave (a client that has a result may ask for the stats at once)."""
        if self.succeeded:
            self.slots.successes.push(self.position, self.succeeded)
            self.succeeded = []
        if self.totals_changed:
            self.slots.write_totals(self.position, self.totals)
            self.totals_changed = False

    def _stores(self) -> list[tuple[tuple[Any, ...], Any]]:
        if not self.records:
            return []
        if self._backend is None:
            self._backend = self.relay.real
        backend = self._backend
        if getattr(backend, "client", None) is self.broker.client:
            return list(backend.store_commands(self.records))
        backend.store_encoded(self.records)  # another Redis: stored before the acks go
        self.records = []
        return []

    def _audit_due(self) -> None:
        """For a while after Redis came back, look at the hold once a second (between
        batches, when it holds only what this child knows of): a reserve sent before the
        outage on a connection given up since can still run when Redis resumes, after the
        first look, and its messages would sit in the hold unseen while the child lives."""
        now = time.monotonic()
        if now < self.audit_until and now >= self.next_audit:
            self.next_audit = now + 1.0
            self.hold_unknown = True

    def _give_back_unknown(self) -> None:
        """Give back what the hold has beyond the acks still to send (a lost reply's)."""
        known = {*self.acks, *self.deferred.tags(), *(d.tag for d, _ in self.dead),
                 *self.awaiting}  # fmt: skip
        unknown = [tag for tag in self.broker.held(self.consumer_id) if tag not in known]
        if unknown:
            self.broker.requeue(self.consumer_id, unknown)
        self.hold_unknown = False

    def _failed(self, exc: OperationalError) -> None:
        if not self.failures:
            logger.error("child %s: %s; retrying with backoff", self.consumer_id, exc)
        self.failures += 1
        self._pause(min(0.2 * 2 ** (self.failures - 1), MAX_BACKOFF))

    def _pause(self, seconds: float) -> None:
        """Wait, but hear the main process (a stop) meanwhile."""
        ready, _, _ = select.select([self.conn.sock], [], [], seconds)
        if ready:
            self._read_pipe()

    def _idle(self, room: int) -> list[Delivery]:
        """Nothing to run: wait for messages (with room for them), or for the next token of
        a rate-limited one, or a stop."""
        wait = self.deferred.next_in(1.0)
        if room > 0:
            return self._wait(room, wait)
        self._pause(wait)
        return []

    def _wait(
        self, room: int, timeout: float, beside: tuple[int, Callable[[], None]] | None = None
    ) -> list[Delivery]:
        """Block until a wake-up token (and the reserve chained to it) or a stop.
        ``beside``: a file descriptor watched too, and what to do when it is readable (the
        async tasks' ends, settled on the fast connection while the wait stays pending).
        Redis counts as hung at a fixed deadline, however often the rest wakes us."""
        try:
            fd = self.broker.wait_start(self.settings.queues, timeout,
                                        reserve_for=(self.consumer_id, room),
                                        after=self.news.after_reserve())  # fmt: skip
            watched = [fd, self.conn.sock, *(beside[:1] if beside else ())]
            deadline = time.monotonic() + timeout + HANG
            while True:
                left = max(deadline - time.monotonic(), 0.0)
                ready, _, _ = select.select(watched, [], [], left)
                if self.conn.sock in ready:
                    self._read_pipe()
                    if self.stopping:
                        break
                if not ready:
                    raise OperationalError("wait: Redis did not answer")
                if beside is not None and beside[0] in ready:
                    beside[1]()
                if fd in ready:
                    got = self.broker.wait_finish()  # the news read behind its reserve too
                    if got is not None:
                        return list(got)
        except OperationalError as exc:
            self._failed(exc)
        self.broker.wait_abort()  # its chained reserve may have run: the hold is checked
        self.hold_unknown = True
        return []

    # -- the pipe -------------------------------------------------------------------------
    def _poll_pipe(self) -> None:
        """Read the pipe if the main process wrote to it since the last look."""
        mail = self.slots.mail_count(self.position)
        if mail == self._mail_seen:
            return
        self._mail_seen = mail
        ready, _, _ = select.select([self.conn.sock], [], [], 0)
        if ready:
            self._read_pipe()

    def _read_pipe(self) -> None:
        try:
            frames = self.conn.recv_ready()
        except (EOFError, OSError):
            self.stopping = True  # the main process is gone
            return
        self._handle(frames)

    def _await_heard(self) -> None:
        """Wait for the main process to have run its ``task_received`` receivers, doing
        what it asks meanwhile; a main process gone (EOF) is not waited for."""
        try:
            while True:
                frame = self.conn.recv_bytes()
                if frame == HEARD:
                    break
                self._handle([frame])
        except (EOFError, OSError):
            self.stopping = True
            return
        self._handle(self.conn.buffered())  # read with it: _poll_pipe looks at the socket

    def _handle(self, frames: list[bytes]) -> None:
        for frame in frames:
            if frame == child_process.STOP:
                self.stopping = True
            elif frame[:1] == REVOKE:
                self.revoked.update(msgpack.unpackb(frame[1:]))
            elif frame[:1] == STAMPS:
                self.news.forward(*msgpack.unpackb(frame[1:]))
            elif frame[:1] == CONFIG:
                self._reconfigure(msgpack.unpackb(frame[1:]))
            elif frame[:1] == TERMINATE:
                self.terminate_async(*msgpack.unpackb(frame[1:]))

    # -- tasks ----------------------------------------------------------------------------
    def _run_batch(self, deliveries: list[Delivery]) -> None:
        """Run a batch. Its tags are published in the slot first: the main process may take
        the unstarted ones back (an idle sibling, a warm shutdown); each is claimed before
        it starts."""
        if not deliveries:
            return
        tags = [d.tag for d in deliveries]
        # A lone message starts right away: there is nothing to offer a sibling.
        must_run = set(tags) if len(tags) == 1 else set(self.slots.offer(self.position, tags))
        for i, delivery in enumerate(deliveries):
            self._poll_pipe()
            if self.stopping:
                self._give_back_rest(deliveries[i:], must_run)
                return
            if delivery.tag in must_run or self.slots.claim(self.position, delivery.tag):
                self._run_one(delivery)
                if self.settle_now:  # its result is too large to note in the slot
                    self._trip(0)
            if self._retiring():
                self._give_back_rest(deliveries[i + 1 :], must_run)
                self.stopping = True
                return

    def _give_back_rest(self, rest: list[Delivery], must_run: set[str]) -> None:
        tags = self.slots.take_batch(self.position)
        self._give_back(tags + [d.tag for d in rest if d.tag in must_run])

    def _give_back(self, tags: list[str]) -> None:
        if not tags:
            return
        try:
            self.broker.requeue(self.consumer_id, tags)
        except OperationalError:
            self.hold_unknown = True  # the main process gives the hold back when we exit

    def _retiring(self) -> bool:
        max_tasks = self.settings.max_tasks
        if max_tasks and self.done >= max_tasks:
            return True
        return child_process.over_memory_limit(self.settings.max_memory_kib)
